/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "conf/location.h"
#include "shared/util.h"

/* A store is a flat namespace of objects under one location: a local directory or an S3 bucket/prefix.
 * Names are relative to the location and use '/' as separator. Backends fill in one StoreInterface
 * (pgBackRest's StorageInterface shape), so every job works on every backend. */

typedef struct Store Store;
typedef struct StoreWriter StoreWriter;
typedef struct StoreReader StoreReader;

typedef struct StoreEntry {
        char *name;          /* relative to the store location */
        uint64_t size;
        uint64_t mtime_usec; /* 0 when unknown */
        char *etag;          /* NULL when the backend has none */
} StoreEntry;

void store_entry_done(StoreEntry *e);

/* Called for each entry in ascending byte order of name. Return < 0 to stop with that error, > 0 to stop
 * early without error. */
typedef int (*StoreListFunc)(const StoreEntry *entry, void *userdata);

typedef struct StoreInterface {
        const char *type;
        /* A writer makes its object visible only on commit; freeing an uncommitted writer aborts it and
         * leaves nothing behind (local: no temp file, S3: no unfinished multipart upload). */
        int (*writer_open)(Store *s, const char *name, StoreWriter **ret);
        int (*writer_write)(StoreWriter *w, const void *buf, size_t n);
        int (*writer_commit)(StoreWriter *w);
        void (*writer_free)(StoreWriter *w);
        /* offset > 0 starts reading there (resume after a dropped connection). */
        int (*reader_open)(Store *s, const char *name, uint64_t offset, StoreReader **ret);
        ssize_t (*reader_read)(StoreReader *r, void *buf, size_t n); /* 0 at end, < 0 errno */
        void (*reader_free)(StoreReader *r);
        int (*list)(Store *s, const char *prefix, StoreListFunc f, void *userdata);
        int (*stat)(Store *s, const char *name, StoreEntry *ret); /* -ENOENT when missing */
        int (*remove)(Store *s, const char *name);                /* missing is not an error */
        /* Removes leftovers of interrupted writes (temp files, unfinished uploads) older than
         * min_age_usec; may be NULL. */
        int (*cleanup)(Store *s, uint64_t min_age_usec);
        void (*done)(Store *s);
} StoreInterface;

struct Store {
        const StoreInterface *iface;
        char *location; /* as the operator wrote it, for messages */
        void *data;     /* the backend's */
};

/* Every backend's writer and reader starts with this header. */
struct StoreWriter {
        Store *store;
        char *name;
};
struct StoreReader {
        Store *store;
        char *name;
};

Store *store_new(const StoreInterface *iface, const char *location, void *data);
void store_free(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_free);

int store_writer_open(Store *s, const char *name, StoreWriter **ret);
int store_write(StoreWriter *w, const void *buf, size_t n);
int store_writer_commit(StoreWriter *w);
void store_writer_free(StoreWriter *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(StoreWriter *, store_writer_free);

int store_reader_open(Store *s, const char *name, uint64_t offset, StoreReader **ret);
ssize_t store_read(StoreReader *r, void *buf, size_t n);
void store_reader_free(StoreReader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(StoreReader *, store_reader_free);

int store_list(Store *s, const char *prefix, StoreListFunc f, void *userdata);
int store_stat(Store *s, const char *name, StoreEntry *ret);
int store_remove(Store *s, const char *name);
int store_cleanup(Store *s, uint64_t min_age_usec);

/* Convenience: a whole small object (manifests) in one call. */
int store_put_buffer(Store *s, const char *name, const void *data, size_t n);
int store_get_buffer(Store *s, const char *name, size_t max, char **ret, size_t *ret_len);

/* Backends. */
int store_local_open(const char *directory, Store **ret);

struct Config;
/* Opens the store for a location, resolving remotes from the configuration, for reading (and pruning):
 * nothing is created. */
int store_open_location(const struct Config *c, const char *location, Store **ret);
/* The same for a backup run that writes into it: on a remote with create_bucket = yes a missing bucket
 * is created. */
int store_open_location_for_write(const struct Config *c, const char *location, Store **ret);

struct RemoteConfig;
/* S3 backend (store/s3/): a bucket and key prefix ("" or ending in '/') on a configured remote. for_write:
 * create the bucket when missing and the remote says create_bucket = yes. */
int store_s3_open(const struct RemoteConfig *remote, const char *bucket, const char *prefix, bool for_write,
                  Store **ret);
