/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Copies in the source's parts. A multipart object's ETag is the MD5 of its parts' MD5s and their count,
 * so a copy uploaded in the same part sizes gets the same ETag, and later runs of the mirror decide from
 * the two listings alone. The source tells how it was uploaded (HEAD with partNumber=1: the first part's
 * size and the number of parts); the copy streams each part as it comes from the source's one GET, so no
 * part is held in memory, and two part PUTs take turns: while one waits for its reply the next one's
 * bytes already flow, so a round trip per part is not paid one after the other.
 *
 * Each part carries its CRC32, computed as its bytes stream, in a trailer (aws-chunked,
 * STREAMING-UNSIGNED-PAYLOAD-TRAILER, as the AWS SDKs send parts), and the upload declares CRC32: the server
 * checks every part against what we read from the source, and keeps per-part checksums (COMPOSITE) instead
 * of checksumming the whole object again when it completes the upload (moto does that in Python, holding
 * everything else up for seconds per 64 MiB: bench/RESULTS.md). A server that refuses the trailer (MinIO
 * before late 2022) gets the parts without checksums from then on. */
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sysexits.h>
#include <zlib.h>

#include "log/log.h"
#include "s3-internal.h"

#define PARTS_RING    (64U * 1024)
#define PARTS_SENDERS 2U

int s3_head_part_layout(S3Client *c, const char *bucket, const char *key, uint64_t *ret_part_size,
                        unsigned *ret_parts) {
        _cleanup_(s3_response_done) S3Response resp = {};
        const S3Param q[] = { { "partNumber", "1" } };
        S3Request req = { .method = "HEAD", .bucket = bucket, .key = key, .params = q, .n_params = 1 };
        int r;

        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        /* A server that ignores partNumber answers for the whole object, without a parts count. */
        *ret_part_size = resp.content_length;
        *ret_parts = resp.parts_count;
        return 0;
}

typedef struct Sender {
        S3PartStream *ps;
        S3Client *client;
        S3Client *owned; /* client, when it is not the writer's */
        pthread_t thread;
        bool started;
} Sender;

struct S3PartStream {
        S3Client *c;
        char *bucket, *key;
        const S3PutOptions *opts;
        uint64_t size, part_size;
        unsigned n_parts;
        char *upload_id;
        char **etags; /* by part number - 1 */
        char **crcs;  /* base64 CRC32 by part number - 1, with trailers */
        bool trailers;
        bool committed;
        Sender senders[PARTS_SENDERS];

        /* Shared with the senders; under lock. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint8_t *ring;
        size_t head, fill;
        uint64_t pulled; /* bytes the part PUTs took from the ring so far */
        unsigned next_part; /* the next part a sender takes, 1-based */
        unsigned done_parts;
        bool closing;
        ErrSaved error;
};

static uint64_t part_start(const S3PartStream *ps, unsigned part) {
        return (uint64_t) (part - 1) * ps->part_size;
}

static uint64_t part_end(const S3PartStream *ps, unsigned part) {
        return MIN(part_start(ps, part) + ps->part_size, ps->size);
}

typedef struct Pull {
        S3PartStream *ps;
        unsigned part;
} Pull;

/* In a sender's thread: the next bytes of its part, as the writer puts them into the ring. */
static ssize_t part_pull(void *buf, size_t n, void *userdata) {
        Pull *p = userdata;
        S3PartStream *ps = p->ps;
        uint64_t end = part_end(ps, p->part);
        ssize_t ret;

        pthread_mutex_lock(&ps->lock);
        while (ps->fill == 0 && ps->pulled < end && !ps->closing && ps->error.error == 0)
                pthread_cond_wait(&ps->cond, &ps->lock);
        if (ps->closing || ps->error.error < 0)
                ret = err_set(-ECANCELED, EX_TEMPFAIL, "upload of %s/%s was given up", ps->bucket, ps->key);
        else if (ps->pulled >= end)
                ret = 0;
        else {
                n = (size_t) MIN((uint64_t) n, end - ps->pulled);
                n = MIN(n, MIN(ps->fill, PARTS_RING - ps->head));
                memcpy(buf, ps->ring + ps->head, n);
                ps->head = (ps->head + n) % PARTS_RING;
                ps->fill -= n;
                ps->pulled += n;
                pthread_cond_broadcast(&ps->cond);
                ret = (ssize_t) n;
        }
        pthread_mutex_unlock(&ps->lock);
        return ret;
}

/* The part as one aws-chunked chunk, its CRC32 in the trailer. */
#define TRAILER_NAME "x-amz-checksum-crc32"
#define TRAILER_LEN  (strlen("\r\n0\r\n" TRAILER_NAME ":") + 8 + strlen("\r\n\r\n"))

typedef struct Framed {
        Pull pull;
        uint64_t size, sent;
        uLong crc;
        char head[24], tail[64];
        size_t head_len, head_pos, tail_len, tail_pos;
} Framed;

static ssize_t framed_pull(void *buf, size_t n, void *userdata) {
        Framed *f = userdata;
        size_t k;

        if (f->head_pos < f->head_len) {
                k = MIN(n, f->head_len - f->head_pos);
                memcpy(buf, f->head + f->head_pos, k);
                f->head_pos += k;
                return (ssize_t) k;
        }
        if (f->sent < f->size) {
                ssize_t got = part_pull(buf, (size_t) MIN((uint64_t) n, f->size - f->sent), &f->pull);
                if (got < 0)
                        return got;
                if (got == 0)
                        return err_set(-EPIPE, EX_TEMPFAIL, "part %u of %s/%s ended after %" PRIu64 " bytes",
                                       f->pull.part, f->pull.ps->bucket, f->pull.ps->key, f->sent);
                f->crc = crc32(f->crc, buf, (uInt) got);
                f->sent += (uint64_t) got;
                return got;
        }
        if (f->tail_len == 0) {
                uint8_t be[4] = { f->crc >> 24, f->crc >> 16, f->crc >> 8, f->crc };
                char b64[16];

                EVP_EncodeBlock((unsigned char *) b64, be, 4);
                f->tail_len = (size_t) snprintf(f->tail, sizeof f->tail,
                                                "\r\n0\r\n" TRAILER_NAME ":%s\r\n\r\n", b64);
        }
        k = MIN(n, f->tail_len - f->tail_pos);
        memcpy(buf, f->tail + f->tail_pos, k);
        f->tail_pos += k;
        return (ssize_t) k;
}

static int put_part_with_crc(S3Client *c, S3PartStream *ps, Pull *p, char **ret_etag, char **ret_crc) {
        _cleanup_(s3_response_done) S3Response resp = {};
        uint64_t size = part_end(ps, p->part) - part_start(ps, p->part);
        Framed f = { .pull = *p, .size = size, .crc = crc32(0, NULL, 0) };
        char number[16], decoded[24];
        int r;

        f.head_len = (size_t) snprintf(f.head, sizeof f.head, "%" PRIx64 "\r\n", size);
        snprintf(number, sizeof number, "%u", p->part);
        snprintf(decoded, sizeof decoded, "%" PRIu64, size);
        const S3Param q[] = { { "partNumber", number }, { "uploadId", ps->upload_id } };
        const S3Header h[] = { { "Content-Encoding", "aws-chunked" },
                               { "x-amz-decoded-content-length", decoded },
                               { "x-amz-trailer", TRAILER_NAME },
                               { "x-amz-sdk-checksum-algorithm", "CRC32" } };
        S3Request req = { .method = "PUT", .bucket = ps->bucket, .key = ps->key, .params = q, .n_params = 2,
                          .headers = h, .n_headers = ELEMENTSOF(h),
                          .body_len = f.head_len + (size_t) size + TRAILER_LEN, .read_body = framed_pull,
                          .read_userdata = &f, .payload_sha256 = "STREAMING-UNSIGNED-PAYLOAD-TRAILER" };
        r = s3_request(c, &req, &resp);
        pthread_mutex_lock(&ps->lock);
        bool first = ps->done_parts == 0; /* the other sender's part may be refused first */
        pthread_mutex_unlock(&ps->lock);
        if (r < 0 && first && (resp.status == 400 || resp.status == 403 || resp.status == 501)) {
                /* Refused before any part of the upload was taken: a server that does not take trailers (or
                 * a real 400 or 403: then the copy without them fails the same way, with the server's own
                 * message). */
                log_info("%s refused a part with a trailing checksum (HTTP %ld: %s); sending parts without "
                         "checksums from now on.",
                         s3_client_endpoint(c), resp.status, strna(err_message()));
                s3_client_refuse_trailers(c);
                return err_set(-EAGAIN, EX_TEMPFAIL, "%s/%s: the server refused a trailing checksum",
                               ps->bucket, ps->key);
        }
        if (r < 0)
                return r;
        if (isempty(resp.etag))
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "UploadPart reply from %s (bucket %s, key %s) has no ETag",
                               s3_client_endpoint(c), ps->bucket, ps->key);
        *ret_crc = xstrndup(f.tail + strlen("\r\n0\r\n" TRAILER_NAME ":"), 8);
        *ret_etag = TAKE_PTR(resp.etag);
        return 0;
}

static void *sender_main(void *userdata) {
        Sender *s = userdata;
        S3PartStream *ps = s->ps;

        pthread_mutex_lock(&ps->lock);
        for (;;) {
                Pull p = { .ps = ps };
                char *etag = NULL, *crc = NULL;
                int r;

                /* A part starts once the one before it took its last byte: the parts' bytes are one
                 * stream, and a request is only sent when its bytes are coming. */
                while (ps->next_part <= ps->n_parts && ps->pulled < part_start(ps, ps->next_part) &&
                       !ps->closing && ps->error.error == 0)
                        pthread_cond_wait(&ps->cond, &ps->lock);
                if (ps->next_part > ps->n_parts || ps->closing || ps->error.error < 0)
                        break;
                p.part = ps->next_part++;
                pthread_mutex_unlock(&ps->lock);

                if (ps->trailers)
                        r = put_part_with_crc(s->client, ps, &p, &etag, &crc);
                else
                        r = s3_multipart_put_part_stream(s->client, ps->bucket, ps->key, ps->upload_id,
                                                         p.part,
                                                         part_end(ps, p.part) - part_start(ps, p.part),
                                                         part_pull, &p, &etag);

                pthread_mutex_lock(&ps->lock);
                if (r < 0)
                        err_save(&ps->error, r);
                else {
                        ps->etags[p.part - 1] = etag;
                        ps->crcs[p.part - 1] = crc;
                        ps->done_parts++;
                }
                pthread_cond_broadcast(&ps->cond);
        }
        pthread_mutex_unlock(&ps->lock);
        return NULL;
}

int s3_part_stream_new(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o,
                       uint64_t size, uint64_t part_size, S3PartStream **ret) {
        S3PartStream *ps;

        if (size == 0 || part_size == 0 || (size + part_size - 1) / part_size > S3_PARTS_LIMIT)
                return err_set(-EINVAL, EX_SOFTWARE,
                               "%s/%s: %" PRIu64 " bytes cannot go in parts of %" PRIu64, bucket, key, size,
                               part_size);
        ps = xcalloc(1, sizeof *ps);
        ps->c = c;
        ps->bucket = xstrdup(bucket);
        ps->key = xstrdup(key);
        ps->opts = o;
        ps->size = size;
        ps->part_size = part_size;
        ps->n_parts = (unsigned) ((size + part_size - 1) / part_size);
        ps->next_part = 1;
        pthread_mutex_init(&ps->lock, NULL);
        pthread_cond_init(&ps->cond, NULL);
        *ret = ps;
        return 0;
}

/* At the first write: the upload and its senders. */
static int part_stream_start(S3PartStream *ps) {
        S3PutOptions o = ps->opts ? *ps->opts : (S3PutOptions){};
        int r;

        ps->trailers = s3_client_trailers(ps->c);
        o.checksum_sha256 = false;
        o.checksum_crc32 = ps->trailers;
        r = s3_multipart_create(ps->c, ps->bucket, ps->key, &o, &ps->upload_id);
        if (r < 0)
                return r;
        ps->etags = xcalloc(ps->n_parts, sizeof(char *));
        ps->crcs = xcalloc(ps->n_parts, sizeof(char *));
        ps->ring = xmalloc(PARTS_RING);
        for (unsigned i = 0; i < PARTS_SENDERS && i < ps->n_parts; i++) {
                Sender *s = &ps->senders[i];

                s->ps = ps;
                /* The first sender borrows the writer's client, idle until the Complete. */
                if (i == 0)
                        s->client = ps->c;
                else {
                        r = s3_client_clone(ps->c, &s->owned);
                        if (r < 0)
                                return r;
                        s->client = s->owned;
                }
                r = thread_start(&s->thread, sender_main, s);
                if (r < 0)
                        return err_set(r, EX_OSERR, "cannot start an upload thread: %s", strerror(-r));
                s->started = true;
        }
        return 0;
}

int s3_part_stream_write(S3PartStream *ps, const void *buf, size_t n) {
        const uint8_t *p = buf;
        int r = 0;

        if (!ps->upload_id) {
                r = part_stream_start(ps);
                if (r < 0)
                        return r;
        }
        pthread_mutex_lock(&ps->lock);
        while (n > 0) {
                if (ps->error.error < 0) {
                        r = err_restore(&ps->error);
                        break;
                }
                if (ps->fill == PARTS_RING) {
                        pthread_cond_wait(&ps->cond, &ps->lock);
                        continue;
                }
                size_t tail = (ps->head + ps->fill) % PARTS_RING;
                size_t k = MIN(n, MIN(PARTS_RING - ps->fill, PARTS_RING - tail));
                memcpy(ps->ring + tail, p, k);
                ps->fill += k;
                p += k;
                n -= k;
                pthread_cond_broadcast(&ps->cond);
        }
        pthread_mutex_unlock(&ps->lock);
        return r;
}

static void senders_stop(S3PartStream *ps, bool closing) {
        pthread_mutex_lock(&ps->lock);
        if (closing)
                ps->closing = true;
        pthread_cond_broadcast(&ps->cond);
        pthread_mutex_unlock(&ps->lock);
        for (unsigned i = 0; i < PARTS_SENDERS; i++) {
                Sender *s = &ps->senders[i];
                if (s->started)
                        pthread_join(s->thread, NULL);
                s->started = false;
                s3_client_free(s->owned);
                s->owned = s->client = NULL;
        }
}

int s3_part_stream_commit(S3PartStream *ps, char **ret_etag) {
        int r;

        if (ps->committed || !ps->upload_id)
                return err_set(-EIO, EX_SOFTWARE, "%s/%s: nothing of its %" PRIu64 " bytes was written",
                               ps->bucket, ps->key, ps->size);
        /* The senders end after the last part's reply (or at the first failure). */
        senders_stop(ps, false);
        if (ps->error.error < 0)
                return err_restore(&ps->error);
        if (ps->done_parts != ps->n_parts || ps->pulled != ps->size)
                return err_set(-EIO, EX_SOFTWARE, "%s/%s: %" PRIu64 " of its %" PRIu64 " bytes were sent",
                               ps->bucket, ps->key, ps->pulled, ps->size);
        r = s3_multipart_complete_algo(ps->c, ps->bucket, ps->key, ps->upload_id, ps->etags,
                                       ps->trailers ? ps->crcs : NULL, "CRC32", ps->n_parts, ret_etag);
        if (r < 0)
                return r;
        ps->committed = true;
        return 0;
}

void s3_part_stream_free(S3PartStream *ps) {
        if (!ps)
                return;
        senders_stop(ps, true);
        if (ps->upload_id && !ps->committed) {
                /* Keep the error that made the caller give up (message and exit code), not the abort's. */
                ERR_KEEP_SCOPE();
                int r = s3_abort_multipart_upload(ps->c, ps->bucket, ps->key, ps->upload_id);
                if (r < 0)
                        log_warning("could not abort multipart upload %s of %s/%s (cleanup will remove "
                                    "it): %s",
                                    ps->upload_id, ps->bucket, ps->key, strna(err_message()));
        }
        for (unsigned i = 0; ps->etags && i < ps->n_parts; i++) {
                free(ps->etags[i]);
                free(ps->crcs[i]);
        }
        free(ps->crcs);
        free(ps->etags);
        free(ps->upload_id);
        free(ps->ring);
        free(ps->bucket);
        free(ps->key);
        err_saved_done(&ps->error);
        pthread_cond_destroy(&ps->cond);
        pthread_mutex_destroy(&ps->lock);
        free(ps);
}
