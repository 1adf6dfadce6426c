/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "pipe/pipe.h"

/* A tar reader on libarchive that pulls the archive from a Source (decompression and checksums are
 * upstream stages). One pass: either extract everything or pick one member. */
typedef struct TarReader TarReader;

/* The reader owns in and frees it with itself. */
int tar_reader_new(Source *in, TarReader **ret);
void tar_reader_free(TarReader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(TarReader *, tar_reader_free);

/* Extracts every member below dir (created if missing), refusing anything that could land outside it:
 * absolute names, "..", hard links, devices, and writing through any symlink (every entry is created
 * relative to its directory, opened below dir without following links). Existing files are not
 * overwritten. Symlinks that lead outside dir, judged with the symlinks extracted before and after them,
 * are skipped or removed with a warning. Files and directories lose setuid, setgid and sticky bits and
 * group and other write. The extracted names go to ret_entries (may be NULL). */
int tar_reader_extract(TarReader *r, const char *dir, char ***ret_entries);

/* Reads the regular file member name (at most max bytes) into memory; -ENOENT when it is not there. */
int tar_reader_read_member(TarReader *r, const char *name, size_t max, uint8_t **ret_data,
                           size_t *ret_size);

/* Applies the archive as one layer of a chain to the tree below root_fd (a restore in progress, which
 * nobody else writes): what it holds replaces what is there (a file over a directory removes the
 * directory), with exact modes, numeric owners (when running as root), mtimes, xattrs, POSIX ACLs, hard
 * links (within the tree) and sparse files; symlinks are restored as they are and never followed. Every
 * name is checked (no absolute paths, no "..") and every write goes through directories opened below
 * root_fd without following symlinks, so nothing lands outside it. The regular file member named
 * deleted_member (if not NULL) lists paths (NUL-terminated) that are removed instead of extracted.
 * Directories are created 0700 (their owner, mode and times are for the caller to set at the end, as
 * later entries change them). dir names root_fd in messages. */
typedef struct TarApplyStats {
        uint64_t entries;
        uint64_t bytes;
        uint64_t deleted;
} TarApplyStats;
int tar_reader_apply(TarReader *r, int root_fd, const char *dir, const char *deleted_member,
                     TarApplyStats *stats);
