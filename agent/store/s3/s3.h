/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "conf/conf.h"
#include "shared/stream.h"
#include "shared/util.h"

/* An S3 client for one configured remote: SigV4-signed requests over one kept libcurl handle (so
 * connections and TLS sessions are reused), bounded retries with exponential backoff and jitter, and
 * errors set with err_set() naming the endpoint, bucket, key, the S3 code and the fix.
 *
 * A client is used by one thread at a time; threads that work in parallel make one client each. */

typedef struct S3Client S3Client;

/* Resolves credentials (secret_access_key_file, else $CREDENTIALS_DIRECTORY/<remote name>, else
 * AWS_SECRET_ACCESS_KEY; access_key_id, else AWS_ACCESS_KEY_ID). Makes no request. */
int s3_client_new(const RemoteConfig *remote, S3Client **ret);
/* A second client for the same remote with its own connection, for another thread. Makes no request. */
int s3_client_clone(const S3Client *c, S3Client **ret);
void s3_client_free(S3Client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(S3Client *, s3_client_free);
const char *s3_client_endpoint(const S3Client *c);
const char *s3_client_remote(const S3Client *c);
/* retry_time of the remote: how long one operation may keep failing before it gives up. */
uint64_t s3_client_retry_time_usec(const S3Client *c);

typedef struct S3Object {
        const char *key;
        uint64_t size;
        uint64_t mtime_usec;
        const char *etag; /* with the quotes removed */
} S3Object;

/* Return < 0 to stop with that error, > 0 to stop early without error. */
typedef int (*S3ObjectFunc)(const S3Object *o, void *userdata);

/* ListObjectsV2 over every page (continuation tokens), parsed as it arrives; keys in ascending byte
 * order. start_after may be NULL. */
int s3_list_objects(S3Client *c, const char *bucket, const char *prefix, const char *start_after,
                    S3ObjectFunc f, void *userdata);

/* Names of the CommonPrefixes under prefix up to the delimiter ("p/a/", "p/b/"), as listed. */
int s3_list_common_prefixes(S3Client *c, const char *bucket, const char *prefix, const char *delimiter,
                            char ***ret);

/* The same listing pulled one object at a time, one page (at most 1000 keys) in memory, so two listings
 * can be merged side by side. s3_lister_next() returns 1 with *ret valid until the next call, 0 at the
 * end of the listing, < 0 when a page could not be read (the listing is then incomplete: never act on
 * what is missing from it). */
typedef struct S3Lister S3Lister;
int s3_lister_new(S3Client *c, const char *bucket, const char *prefix, S3Lister **ret);
int s3_lister_next(S3Lister *l, const S3Object **ret);
void s3_lister_free(S3Lister *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(S3Lister *, s3_lister_free);

/* Names of all buckets the credentials own, sorted. */
int s3_list_buckets(S3Client *c, char ***ret);

typedef struct S3ObjectInfo {
        uint64_t size;
        uint64_t mtime_usec;
        char *etag; /* without quotes */
        /* The standard headers S3 stores with an object and sends back; NULL when not set. */
        char *content_type;
        char *cache_control;
        char *content_disposition;
        char *content_encoding;
        char *content_language;
        char *expires;
        char **metadata; /* pairs: name (lower case, without "x-amz-meta-"), value; NULL when none */
} S3ObjectInfo;

void s3_object_info_done(S3ObjectInfo *i);

/* -ENOENT when the object does not exist. */
int s3_head_object(S3Client *c, const char *bucket, const char *key, S3ObjectInfo *ret);

/* Streams the object from offset (length bytes, UINT64_MAX: to the end) into sink; does not finish the
 * sink. When the connection drops mid-body the rest is requested again with a Range and If-Match on the
 * ETag of the first response, so a changed object is never spliced. if_match may be NULL. */
int s3_get_object(S3Client *c, const char *bucket, const char *key, uint64_t offset, uint64_t length,
                  const char *if_match, Sink *sink);

/* s3_get_object() that also reports the headers of the first reply: on_info is called once, before the
 * first body byte reaches the sink, with the object's ETag, Content-Type, Cache-Control, user metadata
 * and whole size (also for a range). Every later request of the transfer is pinned to that ETag, so what
 * on_info saw describes every byte, and a range past the object's end ends at its end. on_info returns
 * < 0 to stop the transfer with that error. */
typedef int (*S3InfoFunc)(const S3ObjectInfo *info, void *userdata);
int s3_get_object_with_info(S3Client *c, const char *bucket, const char *key, uint64_t offset,
                            uint64_t length, const char *if_match, Sink *sink, S3InfoFunc on_info,
                            void *userdata);

/* GetObject of an object of at most max bytes into memory, with its headers (ETag, Content-Type,
 * Cache-Control, user metadata) in ret_info. -EFBIG when it is larger. */
int s3_get_object_buffer(S3Client *c, const char *bucket, const char *key, size_t max, void **ret_data,
                         size_t *ret_len, S3ObjectInfo *ret_info);

/* S3 refuses more user metadata than this: the bytes of every name (without "x-amz-meta-") and value. */
#define S3_METADATA_MAX 2048U
/* The size S3 counts for metadata pairs as in S3PutOptions. */
size_t s3_metadata_size(char *const *metadata);

typedef struct S3PutOptions {
        const char *content_type;
        const char *cache_control;
        const char *content_disposition;
        const char *content_encoding;
        const char *content_language;
        const char *expires;
        /* pairs: name without "x-amz-meta-", value; at most S3_METADATA_MAX bytes (a request with more
         * is refused here, before it is sent) */
        char **metadata;
        /* Multipart only: the server keeps a SHA-256 checksum of every part (x-amz-checksum-algorithm),
         * so each part must carry x-amz-checksum-sha256 and CompleteMultipartUpload lists them. */
        bool checksum_sha256;
        /* Multipart only: the same with CRC32 (x-amz-checksum-crc32 per part, here in a trailer). */
        bool checksum_crc32;
} S3PutOptions;

int s3_put_object(S3Client *c, const char *bucket, const char *key, const void *data, size_t n,
                  const S3PutOptions *o, char **ret_etag);

/* Pulls up to n bytes; returns the count, 0 at the end, < 0 on error (with err_set()). */
typedef ssize_t (*S3ReadFunc)(void *buf, size_t n, void *userdata);

/* PutObject of exactly size bytes pulled from read, without holding them: the body goes unsigned
 * (UNSIGNED-PAYLOAD) and a failure after the first byte is returned, not retried; the caller starts the
 * object over. */
int s3_put_object_stream(S3Client *c, const char *bucket, const char *key, uint64_t size, S3ReadFunc read,
                         void *userdata, const S3PutOptions *o, char **ret_etag);

/* Multipart upload by parts, for callers that upload parts from several threads (one client each). */
int s3_multipart_create(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o,
                        char **ret_upload_id);
/* UploadPart pulled from read, like s3_put_object_stream(). */
int s3_multipart_put_part_stream(S3Client *c, const char *bucket, const char *key, const char *upload_id,
                                 unsigned part_number, uint64_t size, S3ReadFunc read, void *userdata,
                                 char **ret_etag);
/* etags[i] is the ETag of part i + 1, checksums[i] its base64 SHA-256 (NULL: created without
 * checksum_sha256). */
int s3_multipart_complete(S3Client *c, const char *bucket, const char *key, const char *upload_id,
                          char *const *etags, char *const *checksums, unsigned n_parts, char **ret_etag);
/* The same with checksums of the algorithm algo ("SHA256", "CRC32"). */
int s3_multipart_complete_algo(S3Client *c, const char *bucket, const char *key, const char *upload_id,
                               char *const *etags, char *const *checksums, const char *algo,
                               unsigned n_parts, char **ret_etag);

/* An upload of unknown length: buffered into parts; a single PutObject when everything fits in the first
 * part, multipart otherwise. Part size doubles every 1000 parts so the 10,000-part limit is never hit.
 * Parts go up S3_UPLOAD_WORKERS at a time (threads with a cloned client each) while the caller fills the
 * next one, so memory is (S3_UPLOAD_WORKERS + 1) parts whatever the object's size.
 * Freeing an uncommitted upload aborts the multipart upload. */
#define S3_UPLOAD_WORKERS 3U
typedef struct S3Upload S3Upload;
int s3_upload_new(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o, S3Upload **ret);
/* n part workers (and n + 1 part buffers) instead of S3_UPLOAD_WORKERS; only before the first part is
 * sent. */
void s3_upload_set_workers(S3Upload *u, unsigned n);
/* A multipart upload even when everything fits the first part (a copy of a multipart object). */
void s3_upload_force_multipart(S3Upload *u);
int s3_upload_write(S3Upload *u, const void *buf, size_t n);
int s3_upload_commit(S3Upload *u, char **ret_etag);
void s3_upload_free(S3Upload *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(S3Upload *, s3_upload_free);
/* Reads source to its end into an upload and commits it. */
int s3_put_source(S3Client *c, const char *bucket, const char *key, Source *src, const S3PutOptions *o,
                  char **ret_etag);

/* S3's limit on the parts of one upload. */
#define S3_PARTS_LIMIT 10000U

/* How a multipart object was uploaded: HEAD with partNumber=1 gives the first part's size and the number of
 * parts (*ret_parts 0: the server did not say, e.g. the object is not multipart). */
int s3_head_part_layout(S3Client *c, const char *bucket, const char *key, uint64_t *ret_part_size,
                        unsigned *ret_parts);
/* A multipart upload of exactly size bytes in parts of part_size (the last one the rest), each part streamed
 * (UNSIGNED-PAYLOAD) as write() brings its bytes, nothing held beyond a small ring; two part PUTs take
 * turns, each on a client of its own. The upload is created at the first write; o must live as long as
 * the stream. Freeing an uncommitted stream aborts the upload. A part that fails after its first byte is
 * not retried: the caller starts the object over. */
typedef struct S3PartStream S3PartStream;
int s3_part_stream_new(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o, uint64_t size,
                       uint64_t part_size, S3PartStream **ret);
int s3_part_stream_write(S3PartStream *ps, const void *buf, size_t n);
int s3_part_stream_commit(S3PartStream *ps, char **ret_etag);
void s3_part_stream_free(S3PartStream *ps);

typedef struct S3UploadInfo {
        const char *key;
        const char *upload_id;
        uint64_t initiated_usec;
} S3UploadInfo;
typedef int (*S3UploadFunc)(const S3UploadInfo *u, void *userdata);
int s3_list_multipart_uploads(S3Client *c, const char *bucket, const char *prefix, S3UploadFunc f,
                              void *userdata);
int s3_abort_multipart_upload(S3Client *c, const char *bucket, const char *key, const char *upload_id);

/* A missing object is not an error. */
int s3_delete_object(S3Client *c, const char *bucket, const char *key);
/* DeleteObjects in batches of 1000. */
int s3_delete_objects(S3Client *c, const char *bucket, char *const *keys, size_t n);
/* An existing bucket owned by us is not an error. */
int s3_create_bucket(S3Client *c, const char *bucket);
/* HeadBucket: 0 when the bucket exists, -ENOENT when it does not, -EACCES when the key may not tell. */
int s3_head_bucket(S3Client *c, const char *bucket);
/* For a writer on a remote with create_bucket = yes: creates the bucket only when HeadBucket says it is
 * missing (a key without s3:CreateBucket works on an existing bucket); a refused CreateBucket names the
 * missing permission and the fix. */
int s3_ensure_bucket(S3Client *c, const char *bucket);
