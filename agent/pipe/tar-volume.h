/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <sys/stat.h>

#include "pipe/pipe.h"

/* The tar writer of the volumes job: full pax (nanosecond mtimes), numeric owners only, xattrs and POSIX
 * ACLs (SCHILY.xattr.*, SCHILY.acl.*, which GNU tar reads with --xattrs --acls), sparse files (GNU sparse
 * 1.0), hard links (the first name carries the data, later ones link to it). Output goes into a Sink. */
typedef struct VolumeTar VolumeTar;

#define VOLUME_TAR_READS_MAX 3

int volume_tar_new(Sink *out, VolumeTar **ret);
void volume_tar_free(VolumeTar *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(VolumeTar *, volume_tar_free);

/* Called after each read of a file's data, before it is checked for changes (tests make a writer append
 * there, deterministically). */
typedef void (*VolumeTarReadHook)(const char *source_path, void *userdata);

typedef struct VolumeTarResult {
        struct stat st; /* what the stored copy was read as (the stat before its read) */
        unsigned reads; /* how often the data was read */
        bool changed; /* still changing after VOLUME_TAR_READS_MAX reads: stored as last read */
} VolumeTarResult;

/* Adds one entry named name. fd: the open file (regular file, for its data; directory, for its xattrs and
 * ACLs) or -1 (symlink); source_path: its absolute path (symlink targets, symlink xattrs); st: its stat.
 * A regular file is stat'ed before and after each read; when it changed while read, it is read again and
 * stored again under the same name (a later member replaces an earlier one on extraction), up to
 * VOLUME_TAR_READS_MAX reads. */
int volume_tar_add(VolumeTar *t, const char *name, int fd, const char *source_path, const struct stat *st,
                   VolumeTarReadHook hook, void *hook_userdata, VolumeTarResult *ret);
/* Adds a regular file member of size bytes read from fd (from its offset 0), mode 0644, owner 0. */
int volume_tar_add_fd(VolumeTar *t, const char *name, int fd, uint64_t size);
int volume_tar_finish(VolumeTar *t);
uint64_t volume_tar_data_bytes(const VolumeTar *t);
/* The size of the archive written so far. */
uint64_t volume_tar_bytes(const VolumeTar *t);
