/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "conf/location.h"
#include "shared/util.h"

/* A store is a flat namespace of objects under one location: a local directory or an S3 bucket/prefix.
 * Names are relative to the location and use '/' as separator. Backends fill in one StoreInterface
 * (pgBackRest's StorageInterface shape), so every job works on every backend. */

struct Config;
struct RemoteConfig;

typedef struct Store Store;
typedef struct StoreWriter StoreWriter;
typedef struct StoreReader StoreReader;
typedef struct StoreLister StoreLister;

typedef struct StoreEntry {
        char *name;          /* relative to the store location */
        uint64_t size;
        uint64_t mtime_usec; /* 0 when unknown */
        char *etag;          /* NULL when the backend has none */
} StoreEntry;

void store_entry_done(StoreEntry *e);

/* What S3 keeps with an object besides its bytes: its identity (ETag, size, time) and the headers it gives
 * back. The local backend keeps the headers, the user metadata and the ETag a writer was given in extended
 * attributes (user.skyforge.*), since a file has none of its own; where the file system has no extended
 * attributes they are left out, and the file's ETag is NULL. */
typedef struct StoreAttrs {
        uint64_t size;
        uint64_t mtime_usec; /* 0 when unknown */
        char *etag;          /* NULL when the object has none */
        char *content_type;
        char *cache_control;
        char *content_disposition;
        char *content_encoding;
        char *content_language;
        char *expires;
        char **metadata; /* pairs: name (lower case, without "x-amz-meta-"), value; NULL when none */
} StoreAttrs;

void store_attrs_done(StoreAttrs *a);
void store_attrs_copy(StoreAttrs *ret, const StoreAttrs *a);

/* S3 refuses more user metadata than this: the bytes of every name and value. Every backend keeps to it,
 * so a copy between any two fits either. */
#define STORE_METADATA_MAX 2048U
size_t store_metadata_size(char *const *metadata);
const char *store_metadata_get(char *const *metadata, const char *name);

#define STORE_SIZE_UNKNOWN UINT64_MAX

typedef struct StoreWriteOptions {
        const StoreAttrs *attrs; /* headers and user metadata to keep with the object (size, mtime and
                                  * etag: local only, the source's, so that a copy lists like it); NULL */
        uint64_t size;           /* the exact size, or STORE_SIZE_UNKNOWN */
        bool multipart;          /* S3: a multipart upload even when the object fits one part */
        /* With multipart and a known size: parts of exactly this size (the last one the rest), each
         * streamed as it comes, none held in memory; a copy sent in the source's part sizes gets the
         * source's ETag (store_part_layout()). 0: the backend's own part size. */
        uint64_t part_size;
} StoreWriteOptions;

typedef struct StoreReadOptions {
        uint64_t offset;
        uint64_t length; /* UINT64_MAX: to the end */
} StoreReadOptions;

/* Called for each entry in ascending byte order of name. Return < 0 to stop with that error, > 0 to stop
 * early without error. */
typedef int (*StoreListFunc)(const StoreEntry *entry, void *userdata);
/* Whether the leftover of an interrupted write of the object name may be removed. */
typedef bool (*StoreLeftoverFilter)(const char *name, void *userdata);

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
         * min_age_usec, of the objects the filter accepts (all without one); may be NULL. */
        int (*cleanup)(Store *s, uint64_t min_age_usec, StoreLeftoverFilter filter, void *userdata);
        void (*done)(Store *s);

        /* For copying between stores (the mirror). */
        /* A writer that keeps attrs with the object. With a known size S3 sends it the cheapest way: in
         * memory up to STORE_BUFFER_MAX (one signed PUT), else one streamed PUT, or with multipart a
         * multipart upload through multipart.c's part workers. Nothing is sent before the first write. */
        int (*writer_open_with)(Store *s, const char *name, const StoreWriteOptions *o, StoreWriter **ret);
        /* A reader of a byte range that makes no request of its own before the transfer: the attributes
         * come with the reply (reader_attrs waits for them), so a copy costs one GET and no HEAD. A
         * missing object fails in reader_attrs or the first read with -ENOENT. It borrows the store's
         * connection (S3): the caller uses the store for nothing else until the reader is freed (a
         * thread of its own takes a store_clone()). The same holds for writer_open_with's writer. */
        int (*reader_open_with)(Store *s, const char *name, const StoreReadOptions *o, StoreReader **ret);
        int (*reader_attrs)(StoreReader *r, const StoreAttrs **ret);
        /* The listing pulled one entry at a time, a bounded page (S3) or one directory level (local) in
         * memory: next returns 1 with *ret valid until the next call, 0 at the end, < 0 when the listing
         * could not be read (then incomplete: never act on what is missing from it). A missing bucket or
         * directory: -ENOENT. The local backend's entries carry the ETag kept with the file, if any. */
        int (*lister_open)(Store *s, const char *prefix, StoreLister **ret);
        int (*lister_next)(StoreLister *l, const StoreEntry **ret);
        void (*lister_free)(StoreLister *l);
        /* The attributes without the bytes (S3: one HEAD). -ENOENT when missing. */
        int (*stat_attrs)(Store *s, const char *name, StoreAttrs *ret);
        /* Removes many (S3: DeleteObjects, 1000 a request). */
        int (*remove_many)(Store *s, char *const *names, size_t n);
        /* Whether name can be stored as itself, not as some other name: a local directory cannot hold
         * "a/../b", "a//b", "a/" or names longer than the file system allows. */
        bool (*name_valid)(Store *s, const char *name);
        /* A second handle on the same store for another thread (S3: its own connection). No request. */
        int (*clone)(Store *s, Store **ret);
        /* How long one operation may keep failing before it gives up (S3: retry_time); 0: none. */
        uint64_t (*retry_time_usec)(Store *s);
        /* How a multipart object was uploaded (S3: one HEAD with partNumber=1): the size of its first part
         * and how many parts it has. -ENOENT when missing; NULL where objects have no parts (local). */
        int (*part_layout)(Store *s, const char *name, uint64_t *ret_part_size, unsigned *ret_parts);
        /* A multipart object's ETag here is the MD5 of its parts' MD5s and their count (S3): a copy sent
         * in the source's part sizes lists with the source's ETag, and later runs need no request. */
        bool etag_of_parts;
} StoreInterface;

struct Store {
        const StoreInterface *iface;
        char *location; /* as the operator wrote it, for messages */
        void *data;     /* the backend's */
};

/* Every backend's writer, reader and lister starts with this header. */
struct StoreWriter {
        Store *store;
        char *name;
        char *etag; /* after a commit: the object's ETag where the backend's reply tells it, else NULL */
};
struct StoreReader {
        Store *store;
        char *name;
};
struct StoreLister {
        Store *store;
};

/* In-memory below this size: a copy of a small object is one GET and one signed PUT. */
#define STORE_BUFFER_MAX (1024U * 1024)

Store *store_new(const StoreInterface *iface, const char *location, void *data);
void store_free(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_free);

/* A writer for a backup object: its Content-Type follows from its name (store_content_type()). */
int store_writer_open(Store *s, const char *name, StoreWriter **ret);
/* By the name's last suffix: .age application/age-encrypted, .zst application/zstd, .tar application/x-tar,
 * .json application/json; NULL for others (the server's default). */
const char *store_content_type(const char *name);
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
int store_cleanup_matching(Store *s, uint64_t min_age_usec, StoreLeftoverFilter filter, void *userdata);

int store_writer_open_with(Store *s, const char *name, const StoreWriteOptions *o, StoreWriter **ret);
int store_reader_open_with(Store *s, const char *name, const StoreReadOptions *o, StoreReader **ret);
int store_reader_attrs(StoreReader *r, const StoreAttrs **ret);
int store_lister_open(Store *s, const char *prefix, StoreLister **ret);
int store_lister_next(StoreLister *l, const StoreEntry **ret);
void store_lister_free(StoreLister *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(StoreLister *, store_lister_free);
int store_stat_attrs(Store *s, const char *name, StoreAttrs *ret);
int store_remove_many(Store *s, char *const *names, size_t n);
bool store_name_valid(Store *s, const char *name);
int store_clone(Store *s, Store **ret);
uint64_t store_retry_time_usec(Store *s);
int store_part_layout(Store *s, const char *name, uint64_t *ret_part_size, unsigned *ret_parts);
bool store_etag_of_parts(Store *s);

/* A set of buckets, each a store: every bucket of a remote, the prefixes PREFIX<bucket>/ under a location
 * on a remote, or the subdirectories of a local directory (MinIO's on-disk layout, or DEST/<bucket>/). */
typedef struct StoreRoot StoreRoot;
typedef struct StoreRootInterface {
        /* Sorted. Names are as found: the caller checks them before they become a bucket elsewhere. */
        int (*list_buckets)(StoreRoot *r, char ***ret);
        /* for_write: create what is missing (a remote's bucket only where create_bucket = yes says so);
         * else nothing is created, and a missing bucket fails at its listing with -ENOENT. */
        int (*open_bucket)(StoreRoot *r, const char *bucket, bool for_write, Store **ret);
        /* For messages: "bucket \"b\" of remote \"minio\"", "prefix \"off/b/\" in offsite:x". */
        char *(*describe_bucket)(StoreRoot *r, const char *bucket);
        void (*done)(StoreRoot *r);
} StoreRootInterface;

struct StoreRoot {
        const StoreRootInterface *iface;
        char *location; /* "offsite:x/off/", "/srv/minio", for messages */
        char *what;     /* "remote \"minio\"", "directory /srv/minio" */
        bool remote;    /* S3: a missing bucket may be created where create_bucket = yes */
        bool create_bucket;
        void *data;
};

StoreRoot *store_root_new(const StoreRootInterface *iface, const char *location, const char *what, void *data);
void store_root_free(StoreRoot *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(StoreRoot *, store_root_free);
int store_root_list_buckets(StoreRoot *r, char ***ret);
int store_root_open_bucket(StoreRoot *r, const char *bucket, bool for_write, Store **ret);
char *store_root_describe_bucket(StoreRoot *r, const char *bucket);

/* An absolute path: its subdirectories; "REMOTE:bucket/prefix": the prefixes under it. */
int store_root_open_location(const struct Config *c, const char *location, StoreRoot **ret);
/* A remote name: its buckets; an absolute path: its subdirectories. */
int store_root_open_source(const struct Config *c, const char *source, StoreRoot **ret);
int store_root_local_open(const char *directory, StoreRoot **ret);

/* Convenience: a whole small object (manifests) in one call. */
int store_put_buffer(Store *s, const char *name, const void *data, size_t n);
int store_get_buffer(Store *s, const char *name, size_t max, char **ret, size_t *ret_len);

/* Backends. */
int store_local_open(const char *directory, Store **ret); /* creates the directory when missing */
/* For reading: a missing directory is -ENOENT ("no backups yet: DIR does not exist"), never created. */
int store_local_open_existing(const char *directory, Store **ret);

struct Config;
/* Opens the store for a location, resolving remotes from the configuration, for reading (and pruning):
 * nothing is created; a local directory that does not exist is -ENOENT (store_local_open_existing()). */
int store_open_location(const struct Config *c, const char *location, Store **ret);
/* The same for a backup run that writes into it: on a remote with create_bucket = yes a missing bucket
 * is created. */
int store_open_location_for_write(const struct Config *c, const char *location, Store **ret);

struct RemoteConfig;
/* S3 backend (store/s3/): a bucket and key prefix ("" or ending in '/') on a configured remote. for_write:
 * create the bucket when missing and the remote says create_bucket = yes. */
int store_s3_open(const struct RemoteConfig *remote, const char *bucket, const char *prefix, bool for_write,
                  Store **ret);
/* Every bucket of a remote (bucket NULL), or the prefixes PREFIX<name>/ in one bucket. */
int store_s3_root_open(const struct RemoteConfig *remote, const char *bucket, const char *prefix,
                       StoreRoot **ret);
