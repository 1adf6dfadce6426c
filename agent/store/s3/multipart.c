/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Uploads of unknown length. Data is buffered one part at a time (memory is one part, whatever the
 * object's size); the multipart upload is only created once a first part is full, so small objects are
 * one PutObject. */
#include <sysexits.h>

#include "log/log.h"
#include "s3-internal.h"

#define S3_PART_SIZE_MIN (8U * 1024 * 1024)
#define S3_PARTS_PER_STEP 1000U
#define S3_PARTS_MAX 10000U

struct S3Upload {
        S3Client *c;
        char *bucket;
        char *key;
        char *content_type;
        char *cache_control;
        char **metadata;
        uint8_t *buf;
        size_t buf_len;
        size_t part_size;
        char *upload_id;
        char **etags; /* one per uploaded part, in order */
        unsigned n_parts;
        bool committed;
        bool failed;
};

static void upload_options(const S3Upload *u, S3PutOptions *ret) {
        *ret = (S3PutOptions){ u->content_type, u->cache_control, u->metadata };
}

int s3_upload_new(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o, S3Upload **ret) {
        S3Upload *u = xcalloc(1, sizeof *u);

        u->c = c;
        u->bucket = xstrdup(bucket);
        u->key = xstrdup(key);
        if (o) {
                u->content_type = o->content_type ? xstrdup(o->content_type) : NULL;
                u->cache_control = o->cache_control ? xstrdup(o->cache_control) : NULL;
                STRV_FOREACH(m, o->metadata)
                        strv_push(&u->metadata, xstrdup(*m));
        }
        u->part_size = S3_PART_SIZE_MIN;
        const char *e = getenv("SKYFORGE_S3_PART_SIZE"); /* tests: many parts from little data */
        uint64_t v;
        if (e && parse_size(e, &v) >= 0 && v >= 5U * 1024 * 1024)
                u->part_size = (size_t) v;
        u->buf = xmalloc(u->part_size);
        *ret = u;
        return 0;
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

        nh = s3_put_headers(o, &h, &names);
        S3Request req = { .method = "POST", .bucket = bucket, .key = key, .params = q, .n_params = 1,
                          .headers = h, .n_headers = nh, .body = "", .body_len = 0 };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        r = s3_xml_parse(resp.body ?: "", resp.body_len, init_xml, &s);
        if (r < 0 || isempty(s.upload_id)) {
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
                return err_set(-EBADMSG, EX_PROTOCOL, "UploadPart reply from %s (bucket %s, key %s) has no ETag",
                               s3_client_endpoint(c), bucket, key);
        *ret_etag = TAKE_PTR(resp.etag);
        return 0;
}

static int upload_part(S3Upload *u) {
        _cleanup_(s3_response_done) S3Response resp = {};
        char number[16];
        int r;

        if (!u->upload_id) {
                r = upload_create(u);
                if (r < 0)
                        return r;
        }
        if (u->n_parts >= S3_PARTS_MAX)
                return err_set(-EFBIG, EX_SOFTWARE, "object %s/%s needs more than %u parts", u->bucket,
                               u->key, S3_PARTS_MAX);
        snprintf(number, sizeof number, "%u", u->n_parts + 1);
        const S3Param q[] = { { "partNumber", number }, { "uploadId", u->upload_id } };
        /* The payload hash is computed over the part and signed: a part corrupted on the way is refused. */
        S3Request req = { .method = "PUT", .bucket = u->bucket, .key = u->key, .params = q, .n_params = 2,
                          .body = u->buf, .body_len = u->buf_len };
        r = s3_request(u->c, &req, &resp);
        if (r < 0)
                return r;
        if (isempty(resp.etag))
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "UploadPart reply from %s (bucket %s, key %s) has no ETag",
                               s3_client_endpoint(u->c), u->bucket, u->key);
        strv_push(&u->etags, TAKE_PTR(resp.etag));
        u->n_parts++;
        u->buf_len = 0;
        /* Grow so that 10,000 parts are never reached: 8 MiB parts carry 8 GB in 1000 parts, then 16 MiB,
         * ... which reaches petabytes long before part 10,000. */
        if (u->n_parts % S3_PARTS_PER_STEP == 0) {
                u->part_size *= 2;
                u->buf = xrealloc(u->buf, u->part_size);
        }
        return 0;
}

int s3_upload_write(S3Upload *u, const void *buf, size_t n) {
        const uint8_t *p = buf;

        if (u->failed || u->committed)
                return -EBADF;
        while (n > 0) {
                size_t k = MIN(n, u->part_size - u->buf_len);
                memcpy(u->buf + u->buf_len, p, k);
                u->buf_len += k;
                p += k;
                n -= k;
                if (u->buf_len == u->part_size) {
                        int r = upload_part(u);
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

        if (streq(path, "/CompleteMultipartUploadResult/ETag") && !s->etag)
                s->etag = s3_strip_quotes(text);
        else if (streq(path, "/Error/Code") && !s->code)
                s->code = xstrdup(text);
        else if (streq(path, "/Error/Message") && !s->message)
                s->message = xstrdup(text);
        return 0;
}

int s3_multipart_complete(S3Client *c, const char *bucket, const char *key, const char *upload_id,
                          char *const *etags, unsigned n_parts, char **ret_etag) {
        _cleanup_(s3_response_done) S3Response resp = {};
        _cleanup_free_ char *body = NULL;
        CompleteState s = {};
        size_t len = 0;
        int r;

        body = s3_strbuf_append(NULL, &len, "<CompleteMultipartUpload xmlns=\"" S3_XMLNS "\">");
        for (unsigned i = 0; i < n_parts; i++) {
                _cleanup_free_ char *part = xasprintf(
                        "<Part><PartNumber>%u</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1, etags[i]);
                body = s3_strbuf_append(body, &len, part);
        }
        body = s3_strbuf_append(body, &len, "</CompleteMultipartUpload>");

        const S3Param q[] = { { "uploadId", upload_id } };
        const S3Header h[] = { { "Content-Type", "application/xml" } };
        S3Request req = { .method = "POST", .bucket = bucket, .key = key, .params = q, .n_params = 1,
                          .headers = h, .n_headers = 1, .body = body, .body_len = len };
        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        /* CompleteMultipartUpload can fail after "200 OK" with an <Error> body. */
        r = s3_xml_parse(resp.body ?: "", resp.body_len, complete_xml, &s);
        if (s.code)
                r = s3_fail(c, &req, 200, s.code, s.message);
        else if (r < 0)
                r = err_set(r, EX_PROTOCOL,
                            "malformed CompleteMultipartUpload reply from %s (bucket %s, key %s)",
                            s3_client_endpoint(c), bucket, key);
        else if (ret_etag)
                *ret_etag = s.etag ? TAKE_PTR(s.etag) : xstrdup("");
        free(s.etag);
        free(s.code);
        free(s.message);
        return r;
}

static int upload_complete(S3Upload *u, char **ret_etag) {
        return s3_multipart_complete(u->c, u->bucket, u->key, u->upload_id, u->etags, u->n_parts, ret_etag);
}

int s3_upload_commit(S3Upload *u, char **ret_etag) {
        S3PutOptions o;
        int r;

        if (u->failed || u->committed)
                return -EBADF;
        if (!u->upload_id) {
                upload_options(u, &o);
                r = s3_put_object(u->c, u->bucket, u->key, u->buf, u->buf_len, &o, ret_etag);
        } else {
                r = u->buf_len > 0 ? upload_part(u) : 0;
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
        S3Request req = { .method = "DELETE", .bucket = bucket, .key = key, .params = q, .n_params = 1 };
        int r;

        r = s3_request(c, &req, &resp);
        if (r == -ENOENT)
                return 0; /* already gone */
        return r;
}

void s3_upload_free(S3Upload *u) {
        if (!u)
                return;
        if (u->upload_id && !u->committed) {
                /* Keep the error that made the caller give up, not the abort's. */
                _cleanup_free_ char *saved = err_message() ? xstrdup(err_message()) : NULL;
                int saved_code = err_exit_code(-EIO);
                int r = s3_abort_multipart_upload(u->c, u->bucket, u->key, u->upload_id);
                if (r < 0)
                        log_warning("could not abort multipart upload %s of %s/%s (cleanup will remove "
                                    "it): %s", u->upload_id, u->bucket, u->key, strna(err_message()));
                if (saved)
                        (void) err_set(-EIO, saved_code, "%s", saved);
                else
                        err_clear();
        }
        free(u->bucket);
        free(u->key);
        free(u->content_type);
        free(u->cache_control);
        strv_free(u->metadata);
        free(u->buf);
        free(u->upload_id);
        strv_free(u->etags);
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
