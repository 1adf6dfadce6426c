/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "sys/progress.h"

/* Our names in a copy's user metadata. */
#define META_PREFIX "skyforge-"
#define META_ETAG META_PREFIX "etag"
#define META_SHA256 META_PREFIX "sha256"

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
        uint64_t unrepresentable; /* keys the destination cannot hold as themselves (a local directory) */
} MirrorStats;

/* Syncs every configured bucket between the two sides ([mirror] source: a remote or a directory whose
 * subdirectories are the buckets; destination: REMOTE:bucket/prefix or a directory, holding
 * <bucket>/<key>). Memory does not grow with the number or size of objects: the two listings of a bucket
 * are merged page by page, objects stream from one store into the other, and deletes wait in a file in
 * work_dir until both listings were read to their end. A failed object makes this fail after all
 * others were tried. progress may be NULL. */
int mirror_run(const Config *c, const MirrorOptions *o, Progress *progress, MirrorStats *ret_stats);

void mirror_stats_print(const MirrorStats *s, bool dry_run, FILE *f);

/* Include/exclude globs against the key and "bucket/key". */
bool mirror_key_selected(char *const *include, char *const *exclude, const char *bucket, const char *key);

/* What the decision needs of a listed object. */
typedef struct MirrorEntry {
        uint64_t size;
        uint64_t mtime_usec;
        const char *etag; /* NULL: none (a local file that carries none) */
} MirrorEntry;

typedef enum MirrorDecision {
        MIRROR_SKIP,  /* the destination holds this version */
        MIRROR_CHECK, /* same size, other ETag: the recorded source ETag decides (one HEAD on S3) */
        MIRROR_COPY,
} MirrorDecision;

/* s: the source's listing entry, d: the destination's (NULL: missing). Needs no request. */
MirrorDecision mirror_decide(const MirrorEntry *s, const MirrorEntry *d);
/* What identifies the source's content, recorded with a copy: its ETag, or its size and time. */
char *mirror_version(const char *etag, uint64_t size, uint64_t mtime_usec);

/* The number of parts of a multipart object by its ETag ("<32 hex digits>-N"), 0 for any other ETag. */
unsigned mirror_etag_parts(const char *etag);
/* Whether size bytes in parts of part_size (the last one the rest) make exactly n parts that S3 takes: at
 * least 5 MiB each but the last, at most 5 GiB, at most 10,000 of them. */
bool mirror_part_layout_valid(uint64_t size, uint64_t part_size, unsigned n);

/* The two sides as sets of buckets: the source ([mirror] source: a remote, or a directory whose
 * subdirectories are the buckets) and the destination location, whose prefixes or subdirectories hold
 * one bucket each. */
struct StoreRoot;
int mirror_resolve(const Config *c, struct StoreRoot **ret_source, struct StoreRoot **ret_offsite);
/* The buckets to mirror: --bucket, [mirror] buckets, or every bucket of src. */
int mirror_buckets(const Config *c, const MirrorOptions *o, struct StoreRoot *src, char ***ret);
/* A bucket name becomes a bucket, prefix or directory on the other side: only valid S3 bucket names may.
 * -EINVAL with err_set() naming it and the fix otherwise. */
int mirror_bucket_check(const MirrorOptions *o, struct StoreRoot *src, struct StoreRoot *dst, const char *bucket);

/* Destination user metadata for a copy: the source's, without our own names (skyforge-*), plus with
 * bookkeeping skyforge-etag (and skyforge-sha256 when known) as far as they fit in S3's 2 KB of user
 * metadata: skyforge-sha256 is left out first, then skyforge-etag. Pairs as in S3PutOptions. */
char **mirror_metadata(char *const *source_metadata, bool bookkeeping, const char *etag, const char *sha256);
