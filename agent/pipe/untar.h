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
 * absolute names, "..", writing through symlinks, hard links, devices. Existing files are not
 * overwritten. Symlinks whose target points outside dir are skipped with a warning. The extracted names
 * go to ret_entries (may be NULL). */
int tar_reader_extract(TarReader *r, const char *dir, char ***ret_entries);

/* Reads the regular file member name (at most max bytes) into memory; -ENOENT when it is not there. */
int tar_reader_read_member(TarReader *r, const char *name, size_t max, uint8_t **ret_data,
                           size_t *ret_size);
