/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "sys/progress.h"

typedef enum MirrorDirection {
        MIRROR_FORWARD, /* [mirror] source -> destination */
        MIRROR_REVERSE, /* destination -> source: `restore mirror` */
} MirrorDirection;

typedef struct MirrorOptions {
        MirrorDirection direction;
        bool dry_run;      /* list and decide, change nothing */
        const char *bucket; /* NULL: the configured buckets */
} MirrorOptions;

typedef struct MirrorStats {
        uint64_t copied, copied_bytes;
        uint64_t skipped, skipped_bytes;
        uint64_t deleted, deleted_bytes;
        uint64_t failed, failed_bytes;
        uint64_t kept; /* only at the destination, kept because delete = no */
        uint64_t vanished; /* listed at the source, then confirmed gone before it could be read */
        uint64_t refused_buckets; /* names that are not valid S3 bucket names */
} MirrorStats;

/* Syncs every configured bucket. Memory does not grow with the number or size of objects: the two
 * listings of a bucket are merged page by page, objects stream GET -> PUT, and deletes wait in a file
 * in work_dir until both listings were read to their end. A failed object makes this fail after all
 * others were tried. progress may be NULL. */
int mirror_run(const Config *c, const MirrorOptions *o, Progress *progress, MirrorStats *ret_stats);

void mirror_stats_print(const MirrorStats *s, bool dry_run, FILE *f);

/* Include/exclude globs against the key and "bucket/key". */
bool mirror_key_selected(char *const *include, char *const *exclude, const char *bucket, const char *key);

/* Destination user metadata for a copy: the source's, without our own names (skyforge-*), plus with
 * bookkeeping skyforge-etag (and skyforge-sha256 when known) as far as they fit in S3's 2 KB of user
 * metadata: skyforge-sha256 is left out first, then skyforge-etag. Pairs as in S3PutOptions. */
char **mirror_metadata(char *const *source_metadata, bool bookkeeping, const char *etag, const char *sha256);
