/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sysexits.h>

#include "crypto/age.h"
#include "log/log.h"
#include "pipe/pipe.h"

#define CIPHER_CHUNK_SIZE (AGE_CHUNK_SIZE + AGE_TAG_SIZE)

static void *fail_with(int *ret_error, int r) {
        *ret_error = r;
        return NULL;
}

/* Encryption. The header and payload nonce go out with the first write (or at finish), so a sink that
 * fails to set up writes nothing. A full chunk is held back until more data arrives, because only then
 * do we know it is not the last one. */
typedef struct AgeSink {
        Sink base;
        char *pending; /* header + payload nonce, not written yet */
        size_t pending_len;
        AgeStream *stream;
        uint8_t *buf; /* AGE_CHUNK_SIZE plaintext + tag room */
        size_t fill;
        int error; /* sticky: once a write failed, the stream is broken for good */
        bool finished;
} AgeSink;

static int age_sink_flush_pending(AgeSink *a) {
        int r;

        if (!a->pending)
                return 0;
        r = sink_write(a->base.next, a->pending, a->pending_len);
        free(a->pending);
        a->pending = NULL;
        return r;
}

static int age_sink_seal(AgeSink *a, bool last) {
        int r;

        r = age_sink_flush_pending(a);
        if (r < 0)
                return r;
        r = age_stream_seal(a->stream, a->buf, a->fill, last, a->buf);
        if (r < 0)
                return r;
        r = sink_write(a->base.next, a->buf, a->fill + AGE_TAG_SIZE);
        a->fill = 0;
        return r;
}

static int age_sink_write(Sink *s, const void *buf, size_t n) {
        AgeSink *a = (AgeSink *) s;
        const uint8_t *p = buf;

        if (a->error < 0)
                return a->error;
        if (a->finished)
                return -ESTALE;
        while (n > 0) {
                size_t k;
                if (a->fill == AGE_CHUNK_SIZE) {
                        int r = age_sink_seal(a, false);
                        if (r < 0)
                                return a->error = r;
                }
                k = AGE_CHUNK_SIZE - a->fill < n ? AGE_CHUNK_SIZE - a->fill : n;
                memcpy(a->buf + a->fill, p, k);
                a->fill += k;
                p += k;
                n -= k;
        }
        return 0;
}

static int age_sink_finish(Sink *s) {
        AgeSink *a = (AgeSink *) s;
        int r;

        if (a->error < 0)
                return a->error;
        if (a->finished)
                return 0;
        /* Only an empty payload has an empty final chunk. */
        r = age_sink_seal(a, true);
        if (r < 0)
                return a->error = r;
        a->finished = true;
        return sink_finish(a->base.next);
}

static void age_sink_free(Sink *s) {
        AgeSink *a = (AgeSink *) s;

        age_stream_free(a->stream);
        if (a->buf)
                OPENSSL_cleanse(a->buf, CIPHER_CHUNK_SIZE);
        free(a->buf);
        free(a->pending);
        free(a);
}

Sink *sink_age_new(Sink *next, char *const *recipients, int *ret_error) {
        _cleanup_free_ uint8_t (*keys)[AGE_KEY_SIZE] = NULL;
        _cleanup_free_ char *header = NULL;
        uint8_t file_key[AGE_FILE_KEY_SIZE], nonce[AGE_NONCE_SIZE];
        size_t n = strv_length(recipients), header_len;
        AgeStream *stream = NULL;
        AgeSink *a;
        int r;

        if (n == 0)
                return fail_with(ret_error, err_set(-EINVAL, EX_CONFIG,
                                                    "cannot encrypt: no age recipients configured"));
        keys = xcalloc(n, AGE_KEY_SIZE);
        for (size_t i = 0; i < n; i++) {
                r = age_recipient_parse(recipients[i], keys[i]);
                if (r < 0)
                        return fail_with(ret_error, r);
        }
        if (RAND_bytes(file_key, sizeof file_key) != 1 || RAND_bytes(nonce, sizeof nonce) != 1)
                return fail_with(ret_error, err_set(-EIO, EX_SOFTWARE,
                                                    "cannot encrypt: the OpenSSL random generator failed"));
        r = age_header_build((const uint8_t(*)[AGE_KEY_SIZE]) keys, n, file_key, &header, &header_len);
        if (r >= 0)
                r = age_stream_new(file_key, nonce, true, &stream);
        OPENSSL_cleanse(file_key, sizeof file_key);
        if (r < 0)
                return fail_with(ret_error, r);

        header = xrealloc(header, header_len + AGE_NONCE_SIZE);
        memcpy(header + header_len, nonce, AGE_NONCE_SIZE);

        a = xcalloc(1, sizeof *a);
        a->base = (Sink){ .write = age_sink_write, .finish = age_sink_finish, .free = age_sink_free,
                          .next = next };
        a->pending = TAKE_PTR(header);
        a->pending_len = header_len + AGE_NONCE_SIZE;
        a->stream = stream;
        a->buf = xmalloc(CIPHER_CHUNK_SIZE);
        return &a->base;
}

/* Decryption. The header is read and checked when the source is created, so a wrong identity or a
 * corrupt header fails before any plaintext exists. Plaintext is released one authenticated chunk at a
 * time. */
typedef struct AgeSource {
        Source base;
        AgeStream *stream;
        uint8_t *carry; /* bytes read past the header, consumed before upstream */
        size_t carry_pos, carry_len;
        uint8_t *cipher; /* one encrypted chunk */
        uint8_t *plain;
        size_t pos, len; /* unread plaintext in plain[] */
        bool last_seen, eof;
        int error;
} AgeSource;

/* Reads up to n bytes, short only at the end of the input. */
static ssize_t age_source_fill(AgeSource *a, uint8_t *buf, size_t n) {
        size_t done = 0;

        if (a->carry_pos < a->carry_len) {
                size_t k = a->carry_len - a->carry_pos < n ? a->carry_len - a->carry_pos : n;
                memcpy(buf, a->carry + a->carry_pos, k);
                a->carry_pos += k;
                done = k;
        }
        while (done < n) {
                ssize_t k = source_read(a->base.upstream, buf + done, n - done);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        return (ssize_t) done;
}

static int payload_fail(const char *what) {
        return err_set(-EPROTO, EX_DATAERR, "the age payload %s (the file is truncated or corrupt)", what);
}

static int age_source_next_chunk(AgeSource *a) {
        uint64_t counter = age_stream_counter(a->stream);
        ssize_t n;
        uint8_t extra;

        if (a->last_seen) {
                /* Like age: the last chunk was released; anything after it is an error, not ignored. */
                n = age_source_fill(a, &extra, 1);
                if (n < 0)
                        return (int) n;
                if (n > 0)
                        return payload_fail("has trailing data after the final chunk");
                a->eof = true;
                return 0;
        }

        n = age_source_fill(a, a->cipher, CIPHER_CHUNK_SIZE);
        if (n < 0)
                return (int) n;
        if (n == 0)
                return payload_fail(counter == 0 ? "has no chunks" : "ends without a final chunk");
        if ((size_t) n < CIPHER_CHUNK_SIZE) {
                if ((size_t) n == AGE_TAG_SIZE && counter > 0)
                        return payload_fail("has an empty final chunk after data");
                if (age_stream_open(a->stream, a->cipher, (size_t) n, true, a->plain) < 0)
                        return payload_fail(counter == 0 && (size_t) n < AGE_TAG_SIZE ?
                                            "is shorter than one chunk" : "does not authenticate");
                a->last_seen = true;
        } else if (age_stream_open(a->stream, a->cipher, (size_t) n, false, a->plain) < 0) {
                /* A full-size chunk may also be the final one. */
                if (age_stream_open(a->stream, a->cipher, (size_t) n, true, a->plain) < 0)
                        return payload_fail("does not authenticate");
                a->last_seen = true;
        }
        a->pos = 0;
        a->len = (size_t) n - AGE_TAG_SIZE;
        return 0;
}

static ssize_t age_source_read(Source *s, void *buf, size_t n) {
        AgeSource *a = (AgeSource *) s;
        size_t k;

        if (a->error < 0)
                return a->error;
        while (a->pos == a->len) {
                int r;
                if (a->eof)
                        return 0;
                r = age_source_next_chunk(a);
                if (r < 0)
                        return a->error = r;
        }
        k = a->len - a->pos < n ? a->len - a->pos : n;
        memcpy(buf, a->plain + a->pos, k);
        a->pos += k;
        return (ssize_t) k;
}

static void age_source_free(Source *s) {
        AgeSource *a = (AgeSource *) s;

        age_stream_free(a->stream);
        if (a->plain)
                OPENSSL_cleanse(a->plain, AGE_CHUNK_SIZE);
        free(a->plain);
        free(a->cipher);
        free(a->carry);
        free(a);
}

/* Reads the header into a buffer of its own; what was read past it goes to *ret_carry. */
static int age_source_read_header(Source *upstream, char **ret_header, size_t *ret_header_len,
                                  uint8_t **ret_carry, size_t *ret_carry_len) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t end, k;
                if (len == cap) {
                        cap = cap ? cap * 2 : 16384;
                        buf = xrealloc(buf, cap);
                }
                k = source_read(upstream, buf + len, cap - len);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        return err_set(-EBADMSG, EX_DATAERR, len == 0 ? "the age input is empty" :
                                       "the age header is truncated (is this an age file?)");
                len += (size_t) k;
                end = age_header_find_end(buf, len);
                if (end < 0)
                        return (int) end;
                if (end > 0) {
                        *ret_carry_len = len - (size_t) end;
                        *ret_carry = xmalloc(*ret_carry_len + 1);
                        memcpy(*ret_carry, buf + end, *ret_carry_len);
                        *ret_header_len = (size_t) end;
                        *ret_header = TAKE_PTR(buf);
                        return 0;
                }
        }
}

Source *source_age_new(Source *upstream, const char *identity_file, int *ret_error) {
        _cleanup_(age_identities_freep) AgeIdentities *ids = NULL;
        _cleanup_free_ char *header = NULL;
        _cleanup_free_ uint8_t *carry = NULL;
        uint8_t file_key[AGE_FILE_KEY_SIZE], nonce[AGE_NONCE_SIZE];
        size_t header_len = 0, carry_len = 0;
        AgeStream *stream = NULL;
        AgeSource *a;
        ssize_t n;
        int r;

        r = age_identities_load(identity_file, &ids);
        if (r < 0)
                return fail_with(ret_error, r);
        r = age_source_read_header(upstream, &header, &header_len, &carry, &carry_len);
        if (r < 0)
                return fail_with(ret_error, r);
        r = age_header_unwrap(header, header_len, ids, file_key);
        if (r < 0)
                return fail_with(ret_error, r);

        a = xcalloc(1, sizeof *a);
        a->base = (Source){ .read = age_source_read, .free = age_source_free, .upstream = upstream };
        a->carry = TAKE_PTR(carry);
        a->carry_len = carry_len;
        n = age_source_fill(a, nonce, sizeof nonce);
        /* Like age, a missing nonce counts as a bad header: it is read before any STREAM chunk. */
        if (n < 0)
                r = (int) n;
        else if ((size_t) n < sizeof nonce)
                r = err_set(-EBADMSG, EX_DATAERR,
                            "the age file ends before its payload nonce (is it truncated?)");
        else
                r = 0;
        if (r >= 0)
                r = age_stream_new(file_key, nonce, false, &stream);
        OPENSSL_cleanse(file_key, sizeof file_key);
        if (r < 0) {
                age_source_free(&a->base); /* not source_free(): upstream stays the caller's */
                return fail_with(ret_error, r);
        }
        a->stream = stream;
        a->cipher = xmalloc(CIPHER_CHUNK_SIZE);
        a->plain = xmalloc(AGE_CHUNK_SIZE);
        return &a->base;
}
