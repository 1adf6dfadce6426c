/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <sys/stat.h>

#include "pipe/pipe.h"

/* A volume's catalog: one line per entry of the tree (regular files, directories, symlinks), in the
 * order of the sorted walk (catalog_path_cmp()), with what change detection compares. It is read and
 * written as a stream, so neither side ever holds more than one line: the merge of a walk with the
 * previous backup's catalog needs memory independent of the number of files.
 *
 *   skyforge-catalog 1
 *   TYPE MODE UID GID SIZE MTIME_NS CTIME_NS INO NLINK PATH
 *
 * TYPE is f, d or l; MODE octal permission bits; PATH relative to the volume's root ("." for the root
 * itself), with '%', control bytes and DEL written as %XX; every other byte (non-UTF-8 included) as is. */

#define CATALOG_LINE_MAX (64 * 1024)

typedef struct CatalogEntry {
        char *path; /* "" for the root */
        char type; /* 'f', 'd', 'l' */
        uint32_t mode;
        uint32_t uid, gid;
        uint64_t size;
        int64_t mtime_ns, ctime_ns;
        uint64_t ino, nlink;
} CatalogEntry;

void catalog_entry_done(CatalogEntry *e);
/* Fills e's metadata from st (path untouched); 0, or -EINVAL for a type a catalog does not hold. */
int catalog_entry_from_stat(CatalogEntry *e, const struct stat *st);
/* Whether two entries of one path differ in what marks a changed file: type, size, mtime, ctime, inode,
 * mode or owner. */
bool catalog_entry_changed(const CatalogEntry *old, const CatalogEntry *cur);

/* The order of the sorted walk: byte order of the names within each directory, a directory's contents
 * right after it. That is byte order of the paths with '/' sorting before every other byte. */
int catalog_path_cmp(const char *a, const char *b);

/* One line (with its '\n') for e, to free. */
char *catalog_format_line(const CatalogEntry *e);
/* Parses one line (without its '\n'); -EBADMSG when it is not one. */
int catalog_parse_line(const char *line, size_t n, CatalogEntry *ret);

typedef struct CatalogWriter CatalogWriter;
/* Takes out; writes the header line at once. */
CatalogWriter *catalog_writer_new(Sink *out);
int catalog_writer_add(CatalogWriter *w, const CatalogEntry *e);
/* Flushes and finishes the sink. */
int catalog_writer_finish(CatalogWriter *w);
void catalog_writer_free(CatalogWriter *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(CatalogWriter *, catalog_writer_free);
uint64_t catalog_writer_count(const CatalogWriter *w);

typedef struct CatalogReader CatalogReader;
/* Takes in; reads and checks the header line. */
int catalog_reader_new(Source *in, CatalogReader **ret);
/* 1 and the next entry (valid until the next call), 0 at the end. Entries out of order are an error
 * (-EBADMSG): a merge relies on the order. */
int catalog_reader_next(CatalogReader *r, const CatalogEntry **ret);
void catalog_reader_free(CatalogReader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(CatalogReader *, catalog_reader_free);
