/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "pipe/pipe.h"

/* A tar (pax) writer on libarchive whose output goes into a Sink, so compression, encryption and upload
 * are downstream stages and nothing is staged in a file. Entries are added in a stable order (directory
 * trees sorted by name), so the same input gives the same archive listing. */
typedef struct TarWriter TarWriter;

/* The writer owns out and frees it with itself. */
int tar_writer_new(Sink *out, TarWriter **ret);
void tar_writer_free(TarWriter *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(TarWriter *, tar_writer_free);

/* Adds dir and everything below it as prefix/... (prefix NULL: the basename of dir): regular files,
 * directories and symlinks (not followed) with their modes and mtimes; sockets and devices are skipped. */
int tar_writer_add_tree(TarWriter *w, const char *dir, const char *prefix);
/* Adds one regular file from memory, mtime "now". */
int tar_writer_add_data(TarWriter *w, const char *name, const void *data, size_t size, mode_t mode);
/* Writes the end-of-archive blocks and finishes the sink. */
int tar_writer_finish(TarWriter *w);

/* What went in so far: entry names in order, and the bytes of file data. */
char *const *tar_writer_entries(const TarWriter *w);
uint64_t tar_writer_data_bytes(const TarWriter *w);
