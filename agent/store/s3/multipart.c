/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Uploads of unknown length. Data is buffered a part at a time; the multipart upload is only created
 * once a first part is full, so small objects are one PutObject. From then on full parts are handed to a
 * few worker threads (each with its own client and connection) while the caller fills the next buffer:
 * memory stays a fixed number of parts whatever the object's size, and the caller blocks when all
 * buffers are in flight. */
#include <pthread.h>
#include <sysexits.h>

#include "log/log.h"
#include "s3-internal.h"

#define S3_PART_SIZE_MIN (8U * 1024 * 1024)
#define S3_PARTS_PER_STEP 1000U
#define S3_PARTS_MAX 10000U
#define S3_WORKERS_MAX 16U

typedef enum PartState {
        PART_FREE,
        PART_FILLING,
        PART_QUEUED,
        PART_UPLOADING,
} PartState;

typedef struct S3Part {
        uint8_t *buf;
        size_t len;
        size_t cap;
        unsigned number; /* 1-based, set when queued */
        PartState state;
} S3Part;

typedef struct S3Worker {
        S3Upload *upload;
        S3Client *client;
        pthread_t thread;
        bool started;
} S3Worker;

struct S3Upload {
        S3Client *c;
        char *bucket;
        char *key;
        char *content_type;
        char *cache_control;
        char *content_disposition;
        char *content_encoding;
        char *content_language;
        char *expires;
        char **metadata;
        size_t part_size;
        char *upload_id;
        char **etags; /* S3_PARTS_MAX slots, by part number - 1 */
        char **checksums; /* base64 SHA-256 of each part, the same way */
        unsigned n_parts; /* queued so far */
        bool committed;
        bool failed;
        bool multipart; /* even when everything fits the first part */

        /* Shared with the workers; everything below under lock. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        S3Part *parts;
        size_t n_buffers;
        S3Part *filling;
        S3Worker *workers;
        unsigned n_workers;
        bool stopping;
        ErrSaved error; /* the first worker failure */
};

static void upload_options(const S3Upload *u, S3PutOptions *ret) {
        /* Part checksums cost nothing here (each part is hashed for its signature anyway) and spare the
         * server from checksumming the whole object itself at completion. */
        *ret = (S3PutOptions){ .content_type = u->content_type,
                               .cache_control = u->cache_control,
                               .content_disposition = u->content_disposition,
                               .content_encoding = u->content_encoding,
                               .content_language = u->content_language,
                               .expires = u->expires,
                               .metadata = u->metadata,
                               .checksum_sha256 = true };
}

static unsigned upload_workers(void) {
        const char *e = getenv("SKYFORGE_S3_WORKERS"); /* tests and bench/s3: compare 1 with more */
        uint64_t v;

        if (e && parse_uint64(e, &v) >= 0 && v >= 1 && v <= S3_WORKERS_MAX)
                return (unsigned) v;
        return S3_UPLOAD_WORKERS;
}

static void part_reserve(S3Part *p, size_t size) {
        if (p->cap < size) {
                free(p->buf);
                p->buf = xmalloc(size);
                p->cap = size;
        }
        p->len = 0;
}

int s3_upload_new(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o, S3Upload **ret) {
        S3Upload *u = xcalloc(1, sizeof *u);

        u->c = c;
        u->bucket = xstrdup(bucket);
        u->key = xstrdup(key);
        if (o) {
                u->content_type = o->content_type ? xstrdup(o->content_type) : NULL;
                u->cache_control = o->cache_control ? xstrdup(o->cache_control) : NULL;
                u->content_disposition = o->content_disposition ? xstrdup(o->content_disposition) : NULL;
                u->content_encoding = o->content_encoding ? xstrdup(o->content_encoding) : NULL;
                u->content_language = o->content_language ? xstrdup(o->content_language) : NULL;
                u->expires = o->expires ? xstrdup(o->expires) : NULL;
                STRV_FOREACH(m, o->metadata)
                        strv_push(&u->metadata, xstrdup(*m));
        }
        u->part_size = S3_PART_SIZE_MIN;
        const char *e = getenv("SKYFORGE_S3_PART_SIZE"); /* tests: many parts from little data */
        uint64_t v;
        if (e && parse_size(e, &v) >= 0 && v >= 5U * 1024 * 1024)
                u->part_size = (size_t) v;
        pthread_mutex_init(&u->lock, NULL);
        pthread_cond_init(&u->cond, NULL);
        u->n_workers = upload_workers();
        /* One buffer per worker plus the one being filled. */
        u->n_buffers = u->n_workers + 1;
        u->parts = xcalloc(u->n_buffers, sizeof *u->parts);
        u->filling = &u->parts[0];
        u->filling->state = PART_FILLING;
        part_reserve(u->filling, u->part_size);
        *ret = u;
        return 0;
}

void s3_upload_set_workers(S3Upload *u, unsigned n) {
        n = MAX(MIN(n, S3_WORKERS_MAX), 1U);
        if (u->upload_id || n == u->n_workers)
                return; /* the workers run already */
        if (n + 1 > u->n_buffers) {
                u->parts = xrealloc(u->parts, (n + 1) * sizeof *u->parts);
                memset(u->parts + u->n_buffers, 0, (n + 1 - u->n_buffers) * sizeof *u->parts);
                u->filling = &u->parts[0];
        }
        /* Only the first buffer holds memory yet; the others are allocated when first filled. */
        u->n_workers = n;
        u->n_buffers = n + 1;
}

typedef struct InitState {
        char *upload_id;
} InitState;

static int init_xml(const char *path, const char *text, void *userdata) {
        InitState *s = userdata;

        if (streq(path, "/InitiateMultipartUploadResult/UploadId") && !s->upload_id)
                s->upload_id = xstrdup(text);
        return 0;
}

int s3_multipart_create(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o,
                        char **ret_upload_id) {
        _cleanup_(s3_response_done) S3Response resp = {};
        _cleanup_free_ S3Header *h = NULL;
        _cleanup_strv_free_ char **names = NULL;
        const S3Param q[] = { { "uploads", "" } };
        InitState s = {};
        size_t nh;
        int r;

        r = s3_put_options_check(c, bucket, key, o);
        if (r < 0)
                return r;
        nh = s3_put_headers(o, &h, &names);
        if (o && o->checksum_sha256)
                h[nh++] = (S3Header){ "x-amz-checksum-algorithm", "SHA256" };
        else if (o && o->checksum_crc32)
                h[nh++] = (S3Header){ "x-amz-checksum-algorithm", "CRC32" };
        S3Request req = { .method = "POST", .bucket = bucket, .key = key, .params = q, .n_params = 1,
                          .headers = h, .n_headers = nh, .body = "", .body_len = 0 };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        r = s3_xml_parse(resp.body ?: "", resp.body_len, init_xml, &s);
        if (r < 0) {
                free(s.upload_id);
                return s3_reply_malformed(c, "CreateMultipartUpload", bucket, key, r);
        }
        if (isempty(s.upload_id)) {
                free(s.upload_id);
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "CreateMultipartUpload reply from %s (bucket %s, key %s) has no UploadId",
                               s3_client_endpoint(c), bucket, key);
        }
        log_debug("multipart upload %s started for %s/%s", s.upload_id, bucket, key);
        *ret_upload_id = s.upload_id;
        return 0;
}

static int upload_create(S3Upload *u) {
        S3PutOptions o;

        upload_options(u, &o);
        return s3_multipart_create(u->c, u->bucket, u->key, &o, &u->upload_id);
}

int s3_multipart_put_part_stream(S3Client *c, const char *bucket, const char *key, const char *upload_id,
                                 unsigned part_number, uint64_t size, S3ReadFunc read, void *userdata,
                                 char **ret_etag) {
        _cleanup_(s3_response_done) S3Response resp = {};
        char number[16];
        int r;

        snprintf(number, sizeof number, "%u", part_number);
        const S3Param q[] = { { "partNumber", number }, { "uploadId", upload_id } };
        S3Request req = { .method = "PUT", .bucket = bucket, .key = key, .params = q, .n_params = 2,
                          .body_len = (size_t) size, .read_body = read, .read_userdata = userdata };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        if (isempty(resp.etag))
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "UploadPart reply from %s (bucket %s, key %s) has no ETag",
                               s3_client_endpoint(c), bucket, key);
        *ret_etag = TAKE_PTR(resp.etag);
        return 0;
}

/* Runs in a worker thread, with that worker's client. */
static int part_put(S3Upload *u, S3Client *c, const S3Part *p, char **ret_etag, char **ret_checksum) {
        _cleanup_(s3_response_done) S3Response resp = {};
        char number[16], hex[65], base64[45];
        int r;

        snprintf(number, sizeof number, "%u", p->number);
        const S3Param q[] = { { "partNumber", number }, { "uploadId", u->upload_id } };
        /* The payload hash is computed over the part and signed: a part corrupted on the way is refused;
         * the same digest is the part's stored checksum. */
        s3_sha256_hex_base64(p->buf, p->len, hex, base64);
        const S3Header h[] = { { "x-amz-checksum-sha256", base64 } };
        S3Request req = { .method = "PUT", .bucket = u->bucket, .key = u->key, .params = q, .n_params = 2,
                          .headers = h, .n_headers = 1, .body = p->buf, .body_len = p->len,
                          .payload_sha256 = hex };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        if (isempty(resp.etag))
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "UploadPart reply from %s (bucket %s, key %s, part %u) has no ETag",
                               s3_client_endpoint(c), u->bucket, u->key, p->number);
        *ret_etag = TAKE_PTR(resp.etag);
        *ret_checksum = xstrdup(base64);
        return 0;
}

static S3Part *next_queued(S3Upload *u) {
        S3Part *best = NULL;

        for (size_t i = 0; i < u->n_buffers; i++)
                if (u->parts[i].state == PART_QUEUED && (!best || u->parts[i].number < best->number))
                        best = &u->parts[i];
        return best;
}

static void *worker_main(void *userdata) {
        S3Worker *w = userdata;
        S3Upload *u = w->upload;

        pthread_mutex_lock(&u->lock);
        for (;;) {
                S3Part *p = next_queued(u);
                char *etag = NULL, *checksum = NULL;
                int r;

                if (!p) {
                        if (u->stopping)
                                break;
                        pthread_cond_wait(&u->cond, &u->lock);
                        continue;
                }
                if (u->error.error < 0) {
                        /* After a failure the rest is dropped: the upload will be aborted. */
                        p->state = PART_FREE;
                        pthread_cond_broadcast(&u->cond);
                        continue;
                }
                p->state = PART_UPLOADING;
                pthread_mutex_unlock(&u->lock);

                r = part_put(u, w->client, p, &etag, &checksum);

                pthread_mutex_lock(&u->lock);
                if (r < 0)
                        err_save(&u->error, r);
                else {
                        u->etags[p->number - 1] = etag;
                        u->checksums[p->number - 1] = checksum;
                }
                p->state = PART_FREE;
                pthread_cond_broadcast(&u->cond);
        }
        pthread_mutex_unlock(&u->lock);
        return NULL;
}

static int workers_start(S3Upload *u) {
        int r = 0;

        u->etags = xcalloc(S3_PARTS_MAX, sizeof *u->etags);
        u->checksums = xcalloc(S3_PARTS_MAX, sizeof *u->checksums);
        u->workers = xcalloc(u->n_workers, sizeof *u->workers);
        for (unsigned i = 0; i < u->n_workers; i++) {
                S3Worker *w = &u->workers[i];

                w->upload = u;
                r = s3_client_clone(u->c, &w->client);
                if (r < 0)
                        break;
                r = thread_start(&w->thread, worker_main, w);
                if (r < 0) {
                        r = err_set(r, EX_OSERR, "cannot start an upload thread: %s", strerror(-r));
                        break;
                }
                w->started = true;
        }
        return r;
}

static void workers_stop(S3Upload *u) {
        if (!u->workers)
                return;
        pthread_mutex_lock(&u->lock);
        u->stopping = true;
        pthread_cond_broadcast(&u->cond);
        pthread_mutex_unlock(&u->lock);
        for (unsigned i = 0; i < u->n_workers; i++) {
                if (u->workers[i].started)
                        pthread_join(u->workers[i].thread, NULL);
                s3_client_free(u->workers[i].client);
        }
        free(u->workers);
        u->workers = NULL;
}

/* Hands the filled buffer to the workers and waits for a free one to fill next. */
static int upload_submit(S3Upload *u) {
        S3Part *p = u->filling;
        int r = 0;

        if (!u->upload_id) {
                r = upload_create(u);
                if (r >= 0)
                        r = workers_start(u);
                if (r < 0)
                        return r;
        }
        if (u->n_parts >= S3_PARTS_MAX)
                return err_set(-EFBIG, EX_SOFTWARE, "object %s/%s needs more than %u parts", u->bucket,
                               u->key, S3_PARTS_MAX);
        pthread_mutex_lock(&u->lock);
        p->number = ++u->n_parts;
        /* Grow so that 10,000 parts are never reached: 8 MiB parts carry 8 GB in 1000 parts, then 16 MiB,
         * ... which reaches petabytes long before part 10,000. */
        if (u->n_parts % S3_PARTS_PER_STEP == 0)
                u->part_size *= 2;
        p->state = PART_QUEUED;
        u->filling = NULL;
        pthread_cond_broadcast(&u->cond);
        while (u->error.error == 0) {
                for (size_t i = 0; i < u->n_buffers && !u->filling; i++)
                        if (u->parts[i].state == PART_FREE)
                                u->filling = &u->parts[i];
                if (u->filling)
                        break;
                pthread_cond_wait(&u->cond, &u->lock);
        }
        if (u->error.error < 0)
                r = err_restore(&u->error);
        else
                u->filling->state = PART_FILLING;
        pthread_mutex_unlock(&u->lock);
        if (r < 0)
                return r;
        part_reserve(u->filling, u->part_size);
        return 0;
}

/* Waits until every queued part is uploaded (or one failed). */
static int upload_drain(S3Upload *u) {
        int r = 0;

        pthread_mutex_lock(&u->lock);
        for (;;) {
                bool busy = false;
                for (size_t i = 0; i < u->n_buffers; i++)
                        if (u->parts[i].state == PART_QUEUED || u->parts[i].state == PART_UPLOADING)
                                busy = true;
                if (!busy)
                        break;
                pthread_cond_wait(&u->cond, &u->lock);
        }
        if (u->error.error < 0)
                r = err_restore(&u->error);
        pthread_mutex_unlock(&u->lock);
        return r;
}

int s3_upload_write(S3Upload *u, const void *buf, size_t n) {
        const uint8_t *p = buf;

        if (u->failed || u->committed)
                return -EBADF;
        while (n > 0) {
                S3Part *f = u->filling;
                size_t k = MIN(n, u->part_size - f->len);
                memcpy(f->buf + f->len, p, k);
                f->len += k;
                p += k;
                n -= k;
                if (f->len == u->part_size) {
                        int r = upload_submit(u);
                        if (r < 0) {
                                u->failed = true;
                                return r;
                        }
                }
        }
        return 0;
}

typedef struct CompleteState {
        char *etag;
        char *code;
        char *message;
} CompleteState;

static int complete_xml(const char *path, const char *text, void *userdata) {
        CompleteState *s = userdata;

        /* S3 and MinIO name the root CompleteMultipartUploadResult, moto CompleteMultipartUploadResponse. */
        if ((streq(path, "/CompleteMultipartUploadResult/ETag") ||
             streq(path, "/CompleteMultipartUploadResponse/ETag")) && !s->etag)
                s->etag = s3_strip_quotes(text);
        else if (streq(path, "/Error/Code") && !s->code)
                s->code = xstrdup(text);
        else if (streq(path, "/Error/Message") && !s->message)
                s->message = xstrdup(text);
        return 0;
}

int s3_multipart_complete(S3Client *c, const char *bucket, const char *key, const char *upload_id,
                          char *const *etags, char *const *checksums, unsigned n_parts, char **ret_etag) {
        return s3_multipart_complete_algo(c, bucket, key, upload_id, etags, checksums, "SHA256", n_parts,
                                          ret_etag);
}

int s3_multipart_complete_algo(S3Client *c, const char *bucket, const char *key, const char *upload_id,
                               char *const *etags, char *const *checksums, const char *algo,
                               unsigned n_parts, char **ret_etag) {
        _cleanup_(s3_response_done) S3Response resp = {};
        _cleanup_free_ char *body = NULL;
        CompleteState s = {};
        size_t len = 0;
        int r;

        body = s3_strbuf_append(NULL, &len, "<CompleteMultipartUpload xmlns=\"" S3_XMLNS "\">");
        for (unsigned i = 0; i < n_parts; i++) {
                _cleanup_free_ char *sum = NULL, *part = NULL;

                if (checksums)
                        sum = xasprintf("<Checksum%s>%s</Checksum%s>", algo, checksums[i], algo);
                part = xasprintf("<Part><PartNumber>%u</PartNumber><ETag>\"%s\"</ETag>%s</Part>", i + 1,
                                 etags[i], strempty(sum));
                body = s3_strbuf_append(body, &len, part);
        }
        body = s3_strbuf_append(body, &len, "</CompleteMultipartUpload>");

        const S3Param q[] = { { "uploadId", upload_id } };
        const S3Header h[] = { { "Content-Type", "application/xml" } };
        /* CompleteMultipartUpload can fail after "200 OK" with an <Error> body (AWS: "retry"): s3_request
         * retries that like a 5xx. The server may take minutes, sending whitespace meanwhile. */
        S3Request req = { .method = "POST", .bucket = bucket, .key = key, .params = q, .n_params = 1,
                          .headers = h, .n_headers = 1, .body = body, .body_len = len, .error_in_ok = true,
                          .slow_reply = true };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        r = s3_xml_parse(resp.body ?: "", resp.body_len, complete_xml, &s);
        if (s.code)
                r = s3_fail(c, &req, 200, s.code, s.message);
        else if (r < 0)
                r = s3_reply_malformed(c, "CompleteMultipartUpload", bucket, key, r);
        else if (ret_etag)
                *ret_etag = s.etag ? TAKE_PTR(s.etag) : xstrdup("");
        free(s.etag);
        free(s.code);
        free(s.message);
        return r;
}

static int upload_complete(S3Upload *u, char **ret_etag) {
        return s3_multipart_complete(u->c, u->bucket, u->key, u->upload_id, u->etags, u->checksums,
                                     u->n_parts, ret_etag);
}

void s3_upload_force_multipart(S3Upload *u) {
        u->multipart = true;
}

int s3_upload_commit(S3Upload *u, char **ret_etag) {
        S3PutOptions o;
        int r;

        if (u->failed || u->committed)
                return -EBADF;
        if (!u->upload_id && !u->multipart) {
                upload_options(u, &o);
                r = s3_put_object(u->c, u->bucket, u->key, u->filling->buf, u->filling->len, &o, ret_etag);
        } else {
                r = u->filling->len > 0 || !u->upload_id ? upload_submit(u) : 0;
                if (r >= 0)
                        r = upload_drain(u);
                workers_stop(u);
                if (r >= 0)
                        r = upload_complete(u, ret_etag);
        }
        if (r < 0) {
                u->failed = true;
                return r;
        }
        u->committed = true;
        return 0;
}

int s3_abort_multipart_upload(S3Client *c, const char *bucket, const char *key, const char *upload_id) {
        _cleanup_(s3_response_done) S3Response resp = {};
        const S3Param q[] = { { "uploadId", upload_id } };
        S3Request req = { .method = "DELETE", .bucket = bucket, .key = key, .params = q, .n_params = 1,
                          .tidy_up = true };
        int r;

        r = s3_request(c, &req, &resp);
        if (r == -ENOENT)
                return 0; /* already gone */
        return r;
}

void s3_upload_free(S3Upload *u) {
        if (!u)
                return;
        workers_stop(u); /* parts in flight finish or fail; none start after this */
        if (u->upload_id && !u->committed) {
                /* Keep the error that made the caller give up (message and exit code), not the abort's. */
                ERR_KEEP_SCOPE();
                int r = s3_abort_multipart_upload(u->c, u->bucket, u->key, u->upload_id);
                if (r < 0)
                        log_warning("could not abort multipart upload %s of %s/%s (cleanup will remove "
                                    "it): %s", u->upload_id, u->bucket, u->key, strna(err_message()));
        }
        free(u->bucket);
        free(u->key);
        free(u->content_type);
        free(u->cache_control);
        free(u->content_disposition);
        free(u->content_encoding);
        free(u->content_language);
        free(u->expires);
        strv_free(u->metadata);
        for (size_t i = 0; i < u->n_buffers; i++)
                free(u->parts[i].buf);
        free(u->parts);
        free(u->upload_id);
        for (unsigned i = 0; u->etags && i < S3_PARTS_MAX; i++) {
                free(u->etags[i]);
                free(u->checksums[i]);
        }
        free(u->etags);
        free(u->checksums);
        err_saved_done(&u->error);
        pthread_cond_destroy(&u->cond);
        pthread_mutex_destroy(&u->lock);
        free(u);
}

int s3_put_source(S3Client *c, const char *bucket, const char *key, Source *src, const S3PutOptions *o,
                  char **ret_etag) {
        _cleanup_(s3_upload_freep) S3Upload *u = NULL;
        _cleanup_free_ uint8_t *buf = xmalloc(64 * 1024);
        int r;

        r = s3_upload_new(c, bucket, key, o, &u);
        if (r < 0)
                return r;
        for (;;) {
                /* Called through the table: pipe.c may not be linked into every user of this library. */
                ssize_t n = src->read(src, buf, 64 * 1024);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        break;
                r = s3_upload_write(u, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
        return s3_upload_commit(u, ret_etag);
}
