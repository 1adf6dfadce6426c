/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "crypto/age.h"
#include "crypto/bech32.h"
#include "log/log.h"
#include "pipe/pipe.h"

/* The identity of the age test vectors and its recipient (as age-keygen -y prints it). */
#define TEST_IDENTITY "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"
#define TEST_RECIPIENT "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryef"
#define OTHER_IDENTITY "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6"
#define SHORT_RECIPIENT "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqar9jk6" /* valid, 31 bytes */

/* In-memory ends of a pipe. */
typedef struct MemSink {
        Sink base;
        uint8_t *data;
        size_t len;
        int fail_after; /* writes that succeed before an error; -1 = never fail */
        bool finished;
} MemSink;

static int mem_sink_write(Sink *s, const void *buf, size_t n) {
        MemSink *m = (MemSink *) s;
        if (m->fail_after == 0)
                return -ENOSPC;
        if (m->fail_after > 0)
                m->fail_after--;
        m->data = xrealloc(m->data, m->len + n);
        memcpy(m->data + m->len, buf, n);
        m->len += n;
        return 0;
}

static int mem_sink_finish(Sink *s) {
        ((MemSink *) s)->finished = true;
        return 0;
}

static void mem_sink_free(Sink *s) {
        /* Owned by the test, which reads it after the pipe is gone. */
}

static void mem_sink_init(MemSink *m) {
        *m = (MemSink){ .base = { .write = mem_sink_write, .finish = mem_sink_finish,
                                  .free = mem_sink_free },
                        .fail_after = -1 };
}

typedef struct MemSource {
        Source base;
        const uint8_t *data;
        size_t len, pos, step;
} MemSource;

static ssize_t mem_source_read(Source *s, void *buf, size_t n) {
        MemSource *m = (MemSource *) s;
        size_t k = m->len - m->pos;
        if (k > n)
                k = n;
        if (m->step && k > m->step)
                k = m->step;
        memcpy(buf, m->data + m->pos, k);
        m->pos += k;
        return (ssize_t) k;
}

static void mem_source_free(Source *s) {
        free(s);
}

/* step > 0 hands out at most step bytes per read, to cross every buffer boundary. */
static Source *mem_source_new(const uint8_t *data, size_t len, size_t step) {
        MemSource *m = xcalloc(1, sizeof *m);
        m->base = (Source){ .read = mem_source_read, .free = mem_source_free };
        m->data = data;
        m->len = len;
        m->step = step;
        return &m->base;
}

static char *write_temp(const char *text) {
        char *path = xstrdup("/tmp/test-age-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write_full(fd, text, strlen(text)), 0);
        close(fd);
        return path;
}

static void unlink_freep(char **p) {
        if (*p) {
                unlink(*p);
                free(*p);
        }
}
#define _cleanup_unlink_ _cleanup_(unlink_freep)

/* Decrypts data with the identities in identity_text: returns what the source ended with (0 or the error)
 * and everything it released in *ret_out. */
static int decrypt(const uint8_t *data, size_t len, size_t step, const char *identity_text,
                   uint8_t **ret_out, size_t *ret_len) {
        _cleanup_unlink_ char *id = write_temp(identity_text);
        _cleanup_(source_freep) Source *src = NULL;
        Source *up;
        uint8_t *out = NULL, buf[10000];
        size_t n = 0;
        int r;

        up = mem_source_new(data, len, step);
        src = source_age_new(up, id, &r);
        if (!src)
                source_free(up); /* still ours on failure */
        else
                for (;;) {
                        ssize_t k = source_read(src, buf, step ? step : sizeof buf);
                        if (k <= 0) {
                                r = (int) k;
                                break;
                        }
                        out = xrealloc(out, n + (size_t) k);
                        memcpy(out + n, buf, (size_t) k);
                        n += (size_t) k;
                }
        *ret_out = out;
        *ret_len = n;
        return r;
}

static void encrypt(const uint8_t *data, size_t len, size_t step, char **recipients, MemSink *out) {
        _cleanup_(sink_freep) Sink *s = NULL;
        int r;

        mem_sink_init(out);
        s = sink_age_new(&out->base, recipients, &r);
        assert_non_null(s);
        for (size_t i = 0; i < len; i += step)
                assert_int_equal(sink_write(s, data + i, len - i < step ? len - i : step), 0);
        assert_int_equal(sink_finish(s), 0);
        assert_true(out->finished);
}

static void bech32_round_trips(void **state) {
        _cleanup_free_ char *hrp = NULL, *again = NULL, *lower = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t n;

        assert_int_equal(bech32_decode(TEST_IDENTITY, &hrp, &data, &n), 0);
        assert_string_equal(hrp, "age-secret-key-");
        assert_int_equal(n, 32);
        assert_int_equal(bech32_encode("AGE-SECRET-KEY-", data, n, true, &again), 0);
        assert_string_equal(again, TEST_IDENTITY);

        /* Lower case is the same key; age's identities are upper case, recipients lower case. */
        lower = xstrdup(TEST_IDENTITY);
        for (char *p = lower; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        free(data);
        free(hrp);
        data = NULL;
        hrp = NULL;
        assert_int_equal(bech32_decode(lower, &hrp, &data, &n), 0);
        assert_string_equal(hrp, "age-secret-key-");
}

static void bech32_accepts_bip173_vectors(void **state) {
        static const char *const valid[] = {
                "A12UEL5L",
                "a12uel5l",
                "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
                "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
                "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        };
        for (size_t i = 0; i < ELEMENTSOF(valid); i++) {
                _cleanup_free_ char *hrp = NULL, *again = NULL;
                _cleanup_free_ uint8_t *data = NULL;
                size_t n;
                assert_int_equal(bech32_decode(valid[i], &hrp, &data, &n), 0);
                bool upper = isupper((unsigned char) valid[i][0]);
                assert_int_equal(bech32_encode(hrp, data, n, upper, &again), 0);
                assert_string_equal(again, valid[i]);
        }
}

static void bech32_rejects_invalid(void **state) {
        static const char *const invalid[] = {
                "pzry9x0s0muk",    /* no separator */
                "1pzry9x0s0muk",   /* empty hrp */
                "x1b4n0q5v",       /* 'b' is not in the alphabet */
                "li1dgmt3",        /* checksum too short */
                "A1G7SGD8",        /* checksum computed over an upper-case hrp */
                "10a06t8",         /* empty hrp */
                "a12UEL5L",        /* mixed case */
                "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryeg", /* checksum */
                "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryef ", /* space */
                "",
        };
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                char *hrp = NULL;
                uint8_t *data = NULL;
                size_t n;
                assert_int_equal(bech32_decode(invalid[i], &hrp, &data, &n), -EINVAL);
                assert_null(hrp);
                assert_null(data);
        }
}

static void age_keys_parse_and_format(void **state) {
        uint8_t secret[AGE_KEY_SIZE], pub[AGE_KEY_SIZE], pub2[AGE_KEY_SIZE];
        _cleanup_free_ char *recipient = NULL, *identity = NULL;

        assert_int_equal(age_identity_parse(TEST_IDENTITY, secret), 0);
        assert_int_equal(age_x25519_public(secret, pub), 0);
        assert_int_equal(age_recipient_format(pub, &recipient), 0);
        assert_string_equal(recipient, TEST_RECIPIENT);
        assert_int_equal(age_identity_format(secret, &identity), 0);
        assert_string_equal(identity, TEST_IDENTITY);
        assert_int_equal(age_recipient_parse(TEST_RECIPIENT, pub2), 0);
        assert_memory_equal(pub, pub2, AGE_KEY_SIZE);

        /* An identity is not a recipient and vice versa; a short key is neither. */
        assert_int_equal(age_recipient_parse(TEST_IDENTITY, pub2), -EINVAL);
        assert_non_null(strstr(err_message(), "not an age X25519 recipient"));
        assert_int_equal(age_identity_parse(TEST_RECIPIENT, secret), -EINVAL);
        {
                _cleanup_free_ char *hrp = NULL;
                _cleanup_free_ uint8_t *data = NULL;
                size_t n;
                assert_int_equal(bech32_decode(SHORT_RECIPIENT, &hrp, &data, &n), 0);
                assert_int_equal(n, 31);
        }
        assert_int_equal(age_recipient_parse(SHORT_RECIPIENT, pub2), -EINVAL);
}

static void age_identity_files_parse(void **state) {
        _cleanup_(age_identities_freep) AgeIdentities *ids = NULL;
        AgeIdentities *bad = NULL;

        assert_int_equal(age_identities_parse("# created: 2026-01-01T00:00:00Z\r\n"
                                              "# public key: " TEST_RECIPIENT "\r\n"
                                              "\n" TEST_IDENTITY "\r\n"
                                              "# second key\n"
                                              OTHER_IDENTITY,
                                              "keys.txt", &ids),
                         0);
        assert_int_equal(ids->n, 2);

        assert_int_equal(age_identities_parse("# only a comment\n\n", "empty.txt", &bad), -EINVAL);
        assert_non_null(strstr(err_message(), "empty.txt: no age identity"));
        assert_int_equal(age_identities_parse(TEST_IDENTITY "\nage1notakey\n", "bad.txt", &bad), -EINVAL);
        assert_non_null(strstr(err_message(), "bad.txt, line 2"));
        /* age does not trim spaces around keys either. */
        assert_int_equal(age_identities_parse(" " TEST_IDENTITY "\n", "space.txt", &bad), -EINVAL);
        assert_null(bad);
        assert_int_equal(age_identities_load("/nonexistent/keys.txt", &bad), -ENOENT);
        assert_non_null(strstr(err_message(), "/nonexistent/keys.txt"));
}

static void age_base64_is_canonical(void **state) {
        uint8_t out[8];
        size_t n;
        _cleanup_free_ char *e = age_b64_encode((const uint8_t *) "age", 3);

        assert_string_equal(e, "YWdl");
        assert_int_equal(age_b64_decode("YWc", 3, out, sizeof out, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(out, "ag", 2);
        assert_int_equal(age_b64_decode("YWd", 3, out, sizeof out, &n), -EINVAL);  /* non-zero spare bits */
        assert_int_equal(age_b64_decode("YWc=", 4, out, sizeof out, &n), -EINVAL); /* padding */
        assert_int_equal(age_b64_decode("YWdlY", 5, out, sizeof out, &n), -EINVAL); /* impossible length */
        assert_int_equal(age_b64_decode("YW-l", 4, out, sizeof out, &n), -EINVAL);  /* url alphabet */
}

typedef struct Vector {
        char *expect;
        char *payload_hex;
        char *identities; /* newline-separated, as an identity file */
        bool unsupported;
        uint8_t *file;
        size_t header_len, len;
} Vector;

static void vector_done(Vector *v) {
        free(v->expect);
        free(v->payload_hex);
        free(v->identities);
        free(v->file);
}

static void vector_load(const char *path, Vector *v) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        long size;
        char *p, *end;

        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        size = ftell(f);
        rewind(f);
        v->file = xmalloc((size_t) size + 1);
        assert_int_equal(fread(v->file, 1, (size_t) size, f), (size_t) size);
        v->len = (size_t) size;
        v->identities = xstrdup("");

        for (p = (char *) v->file;; p = end + 1) {
                end = memchr(p, '\n', v->len - (size_t) (p - (char *) v->file));
                assert_non_null(end);
                if (end == p)
                        break;
                *end = 0;
                if (startswith(p, "expect: "))
                        v->expect = xstrdup(p + 8);
                else if (startswith(p, "payload: "))
                        v->payload_hex = xstrdup(p + 9);
                else if (startswith(p, "identity: ")) {
                        char *s = xasprintf("%s%s\n", v->identities, p + 10);
                        free(v->identities);
                        v->identities = s;
                } else if (startswith(p, "passphrase: ") || startswith(p, "armored: ") ||
                           startswith(p, "compressed: "))
                        v->unsupported = true;
        }
        v->header_len = (size_t) (end + 1 - (char *) v->file);
        assert_non_null(v->expect);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static void sha256_hex(const uint8_t *data, size_t n, char ret[static 65]) {
        uint8_t md[32];
        unsigned mdlen;

        assert_int_equal(EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL), 1);
        for (unsigned i = 0; i < 32; i++)
                sprintf(ret + 2 * i, "%02x", md[i]);
}

static int vector_run(const char *name, const Vector *v, size_t step) {
        _cleanup_free_ uint8_t *out = NULL;
        char hex[65];
        size_t n;
        int r, want;

        /* "empty" has no identity line; any identity will do there. */
        r = decrypt(v->file + v->header_len, v->len - v->header_len, step,
                    isempty(v->identities) ? TEST_IDENTITY "\n" : v->identities, &out, &n);
        if (streq(v->expect, "success") || streq(v->expect, "payload failure")) {
                want = streq(v->expect, "success") ? 0 : -EPROTO;
                sha256_hex(out ?: (const uint8_t *) "", n, hex);
                if (r != want || !streq(hex, v->payload_hex)) {
                        print_error("%s (step %zu): got %d (%s) and %zu bytes, want %s\n", name, step, r,
                                    strempty(err_message()), n, v->expect);
                        return -1;
                }
                return 0;
        }
        want = streq(v->expect, "header failure") ? -EBADMSG :
               streq(v->expect, "no match")       ? -ENOKEY :
               streq(v->expect, "HMAC failure")   ? -EKEYREJECTED : 1;
        if (r != want || n != 0) {
                print_error("%s (step %zu): got %d (%s), want %s\n", name, step, r, strempty(err_message()),
                            v->expect);
                return -1;
        }
        return 0;
}

/* Every vector, read whole and in 7-byte pieces; the failure class must match what the vector says, and
 * the plaintext released must hash to its payload value even when decryption fails half way. */
static void age_test_vectors_pass(void **state) {
        _cleanup_(closedirp) DIR *d = opendir(AGE_VECTORS_DIR);
        unsigned ran = 0, failed = 0;
        struct dirent *de;

        assert_non_null(d);
        while ((de = readdir(d))) {
                _cleanup_(vector_done) Vector v = {};
                _cleanup_free_ char *path = NULL;
                if (de->d_name[0] == '.' || endswith(de->d_name, ".md"))
                        continue;
                path = path_join(AGE_VECTORS_DIR, de->d_name);
                vector_load(path, &v);
                if (v.unsupported)
                        continue;
                failed += vector_run(de->d_name, &v, 0) < 0;
                failed += vector_run(de->d_name, &v, 7) < 0;
                ran++;
        }
        print_message("ran %u age test vectors\n", ran);
        assert_int_equal(failed, 0);
        assert_true(ran >= 59);
}

static uint8_t *pattern(size_t n) {
        uint8_t *p = xmalloc(n + 1);
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (i * 7 + i / 65536);
        return p;
}

typedef struct Keys {
        char *identity_file_text[3];
        char *recipient[4];
} Keys;

static void keys_make(Keys *k) {
        for (unsigned i = 0; i < 3; i++) {
                uint8_t secret[AGE_KEY_SIZE], pub[AGE_KEY_SIZE];
                _cleanup_free_ char *id = NULL;
                assert_int_equal(age_identity_generate(secret), 0);
                assert_int_equal(age_x25519_public(secret, pub), 0);
                assert_int_equal(age_identity_format(secret, &id), 0);
                assert_int_equal(age_recipient_format(pub, &k->recipient[i]), 0);
                k->identity_file_text[i] = xasprintf("# public key: %s\n%s\n", k->recipient[i], id);
        }
        k->recipient[3] = NULL;
}

static void keys_done(Keys *k) {
        for (unsigned i = 0; i < 3; i++) {
                free(k->identity_file_text[i]);
                free(k->recipient[i]);
        }
}

static size_t chunks_for(size_t n) {
        return n == 0 ? 1 : (n + AGE_CHUNK_SIZE - 1) / AGE_CHUNK_SIZE;
}

/* Sizes around the 64 KiB chunk boundary, three recipients, each identity alone decrypts; the ciphertext
 * has exactly one chunk per started 64 KiB (a full last chunk is the final one, never an empty extra). */
static void age_round_trips_across_chunk_boundaries(void **state) {
        static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 3 * 65536 };
        _cleanup_(keys_done) Keys k = {};

        keys_make(&k);
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                _cleanup_free_ uint8_t *plain = pattern(sizes[i]);
                MemSink c;
                size_t header_end;

                encrypt(plain, sizes[i], i % 2 ? 4093 : 65536 * 2, k.recipient, &c);
                header_end = (size_t) age_header_find_end((const char *) c.data, c.len);
                assert_true(header_end > 0);
                assert_int_equal(c.len, header_end + AGE_NONCE_SIZE + sizes[i] +
                                                chunks_for(sizes[i]) * AGE_TAG_SIZE);

                for (unsigned j = 0; j < 3; j++) {
                        _cleanup_free_ uint8_t *out = NULL;
                        size_t n;
                        size_t step = j == 1 ? 1000 : 0;
                        assert_int_equal(decrypt(c.data, c.len, step, k.identity_file_text[j], &out, &n), 0);
                        assert_int_equal(n, sizes[i]);
                        assert_true(n == 0 || memcmp(out, plain, n) == 0);
                }
                free(c.data);
        }
}

static void age_rejects_tampering(void **state) {
        _cleanup_(keys_done) Keys k = {};
        _cleanup_free_ uint8_t *plain = pattern(3 * 65536 + 10);
        /* Two recipients, so one stanza can be changed without touching the one that is used. */
        size_t len = 3 * 65536 + 10, chunk = AGE_CHUNK_SIZE + AGE_TAG_SIZE;
        size_t header_end, first, second, payload;
        _cleanup_free_ uint8_t *copy = NULL;
        MemSink c;

        keys_make(&k);
        encrypt(plain, len, 65536, (char *[]){ k.recipient[0], k.recipient[2], NULL }, &c);
        header_end = (size_t) age_header_find_end((const char *) c.data, c.len);
        first = (uint8_t *) memmem(c.data, header_end, "-> X25519 ", 10) - c.data;
        second = (size_t) ((uint8_t *) memmem(c.data + first + 1, header_end - first - 1, "-> X25519 ", 10) -
                           c.data);
        payload = header_end + AGE_NONCE_SIZE;
        copy = xmalloc(c.len);

        struct {
                const char *what;
                size_t flip;      /* byte to flip (XOR 1), or SIZE_MAX */
                size_t truncate;  /* new length, or SIZE_MAX */
                bool swap;        /* swap the first two chunks */
                int want;
                size_t released;
        } cases[] = {
                { "flipped share", 30, SIZE_MAX, false, -ENOKEY, 0 },
                { "flipped other recipient's stanza", second + 20, SIZE_MAX, false, -EKEYREJECTED, 0 },
                { "flipped MAC", header_end - 5, SIZE_MAX, false, -EKEYREJECTED, 0 },
                { "flipped nonce", header_end + 3, SIZE_MAX, false, -EPROTO, 0 },
                { "flipped first chunk", payload + 100, SIZE_MAX, false, -EPROTO, 0 },
                { "flipped last tag", c.len - 1, SIZE_MAX, false, -EPROTO, 3 * 65536 },
                { "last byte missing", SIZE_MAX, c.len - 1, false, -EPROTO, 3 * 65536 },
                { "final chunk missing", SIZE_MAX, payload + 3 * chunk, false, -EPROTO, 3 * 65536 },
                { "payload missing", SIZE_MAX, payload, false, -EPROTO, 0 },
                { "header cut", SIZE_MAX, header_end - 1, false, -EBADMSG, 0 },
                { "chunks reordered", SIZE_MAX, SIZE_MAX, true, -EPROTO, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ uint8_t *out = NULL;
                size_t n, l = c.len;
                int r;

                memcpy(copy, c.data, c.len);
                if (cases[i].flip == header_end - 5)
                        /* In the base64 MAC, stay in the alphabet: else the header just fails to parse. */
                        copy[cases[i].flip] = copy[cases[i].flip] == 'A' ? 'B' : 'A';
                else if (cases[i].flip != SIZE_MAX)
                        copy[cases[i].flip] ^= 0x01;
                if (cases[i].truncate != SIZE_MAX)
                        l = cases[i].truncate;
                if (cases[i].swap) {
                        memcpy(copy + payload, c.data + payload + chunk, chunk);
                        memcpy(copy + payload + chunk, c.data + payload, chunk);
                }
                r = decrypt(copy, l, 0, k.identity_file_text[0], &out, &n);
                if (r != cases[i].want || n != cases[i].released)
                        fail_msg("%s: got %d and %zu bytes (%s)", cases[i].what, r, n,
                                 strempty(err_message()));
                assert_true(n == 0 || memcmp(out, plain, n) == 0);
        }

        /* The wrong identity unwraps nothing. */
        {
                _cleanup_free_ uint8_t *out = NULL;
                size_t n;
                assert_int_equal(decrypt(c.data, c.len, 0, k.identity_file_text[1], &out, &n), -ENOKEY);
                assert_int_equal(n, 0);
                assert_non_null(strstr(err_message(), "none of the 1 age identities"));
        }
        free(c.data);
}

/* The sink lends its plaintext round to a producer (pipe_pump reads straight into it): the free space is
 * contiguous and shrinks by what was committed, a full round is sealed before more is lent, writes and
 * commits mix, and the result decrypts at every size around chunks and rounds (up to and past the ring of
 * rounds in flight, ending on a full round, whose last chunk is sealed again as the final one). */
static void age_sink_lends_its_buffer(void **state) {
        static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 2 * 65536, 8 * 65536, 8 * 65536 + 1,
                                        16 * 65536 + 7, 24 * 65536, 24 * 65536 + 1, 32 * 65536,
                                        5 * 1024 * 1024 + 3 };
        static const size_t steps[] = { 1000, 65536, 100000, 8 * 65536 };
        _cleanup_(keys_done) Keys k = {};

        keys_make(&k);
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                _cleanup_free_ uint8_t *plain = pattern(sizes[i]), *out = NULL;
                _cleanup_(sink_freep) Sink *s = NULL;
                size_t step = steps[i % ELEMENTSOF(steps)], n;
                _cleanup_(source_freep) Source *src = mem_source_new(plain, sizes[i], step);
                MemSink c;
                int r;

                mem_sink_init(&c);
                s = sink_age_new(&c.base, k.recipient, &r);
                assert_non_null(s);
                assert_int_equal(pipe_pump(src, s), 0);
                assert_true(c.finished);
                r = decrypt(c.data, c.len, 0, k.identity_file_text[0], &out, &n);
                if (r < 0)
                        fprintf(stderr, "size %zu, reads of %zu: %s\n", sizes[i], step, err_message());
                assert_int_equal(r, 0);
                assert_int_equal(n, sizes[i]);
                assert_true(n == 0 || memcmp(out, plain, n) == 0);
                free(c.data);
        }

        {
                _cleanup_free_ uint8_t *plain = pattern(3 * 8 * 65536), *out = NULL;
                _cleanup_(sink_freep) Sink *s = NULL;
                size_t used = 0, n, size;
                void *buf;
                MemSink c;
                int r;

                mem_sink_init(&c);
                s = sink_age_new(&c.base, k.recipient, &r);
                assert_non_null(s);
                assert_int_equal(sink_buffer(s, &buf, &size), 0);
                assert_int_equal(size, 8 * 65536);
                memcpy(buf, plain, 1000);
                assert_int_equal(sink_commit(s, 1000), 0);
                used += 1000;
                assert_int_equal(sink_write(s, plain + used, 70000), 0);
                used += 70000;
                assert_int_equal(sink_buffer(s, &buf, &size), 0);
                assert_int_equal(size, 8 * 65536 - used);
                memcpy(buf, plain + used, size);
                assert_int_equal(sink_commit(s, size), 0);
                used += size;
                assert_int_equal(c.len, 0); /* a full round is held until we know it is not the last */
                assert_int_equal(sink_buffer(s, &buf, &size), 0);
                assert_int_equal(size, 8 * 65536);
                memcpy(buf, plain + used, 5);
                assert_int_equal(sink_commit(s, 5), 0);
                used += 5;
                assert_int_equal(sink_write(s, plain + used, sizeof plain[0] * (3 * 8 * 65536 - used)), 0);
                assert_int_equal(sink_finish(s), 0);
                assert_int_equal(sink_buffer(s, &buf, &size), -ESTALE);
                assert_int_equal(decrypt(c.data, c.len, 0, k.identity_file_text[1], &out, &n), 0);
                assert_int_equal(n, 3 * 8 * 65536);
                assert_memory_equal(out, plain, n);
                free(c.data);
        }

        {
                /* A downstream failure sticks for lenders too. */
                _cleanup_free_ uint8_t *plain = pattern(4 * 8 * 65536);
                _cleanup_(source_freep) Source *src = mem_source_new(plain, 4 * 8 * 65536, 0);
                _cleanup_(sink_freep) Sink *s = NULL;
                void *buf;
                size_t size;
                MemSink m;
                int r;

                mem_sink_init(&m);
                m.fail_after = 1;
                s = sink_age_new(&m.base, k.recipient, &r);
                assert_non_null(s);
                assert_int_equal(pipe_pump(src, s), -ENOSPC);
                assert_int_equal(sink_buffer(s, &buf, &size), -ENOSPC);
                assert_false(m.finished);
                free(m.data);
        }

        {
                /* Other stages do not lend: their producers write. */
                MemSink m;
                void *buf;
                size_t size;
                mem_sink_init(&m);
                assert_int_equal(sink_buffer(&m.base, &buf, &size), -EOPNOTSUPP);
        }
}

/* Failing closed: bad recipients give no sink (the downstream stays the caller's), nothing is written
 * before the first byte of payload, and a downstream error sticks. */
static void age_sink_fails_closed(void **state) {
        _cleanup_(keys_done) Keys k = {};
        uint8_t buf[1000] = {};
        MemSink m;
        Sink *s;
        int r = 0;

        keys_make(&k);
        mem_sink_init(&m);
        s = sink_age_new(&m.base, (char *[]){ k.recipient[0], (char *) "age1bogus", NULL }, &r);
        assert_null(s);
        assert_int_equal(r, -EINVAL);
        assert_non_null(strstr(err_message(), "age1bogus"));
        s = sink_age_new(&m.base, (char *[]){ NULL }, &r);
        assert_null(s);
        assert_int_equal(r, -EINVAL);

        s = sink_age_new(&m.base, k.recipient, &r);
        assert_non_null(s);
        assert_int_equal(m.len, 0);
        sink_free(s);
        assert_int_equal(m.len, 0);

        mem_sink_init(&m);
        m.fail_after = 1; /* the header goes out, the first round of chunks does not */
        s = sink_age_new(&m.base, k.recipient, &r);
        assert_non_null(s);
        /* The sink holds back up to two rounds of 8 chunks (one being sealed while the next one is
         * filled): write past that. */
        for (unsigned i = 0; i < 2000; i++)
                if ((r = sink_write(s, buf, sizeof buf)) < 0)
                        break;
        assert_int_equal(r, -ENOSPC);
        assert_int_equal(sink_write(s, buf, 1), -ENOSPC);
        assert_int_equal(sink_finish(s), -ENOSPC);
        assert_false(m.finished);
        sink_free(s);
        free(m.data);
}

/* Decryption reads the next round while one is opened and lends its plaintext (pipe_pump writes from it):
 * across several rounds the bytes are the same whether read or lent, and damage in a round that was read
 * ahead still releases every authenticated chunk before it, and nothing after. */
static void age_source_lends_and_reads_ahead(void **state) {
        static const size_t round = 8 * 65536, cipher_round = 8 * (65536 + AGE_TAG_SIZE);
        static const size_t sizes[] = { 1, 65536, round, round + 1, 2 * round, 3 * round + 5, 5 * round };
        _cleanup_(keys_done) Keys k = {};
        _cleanup_unlink_ char *id = NULL;

        keys_make(&k);
        id = write_temp(k.identity_file_text[0]);
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                _cleanup_free_ uint8_t *plain = pattern(sizes[i]);
                MemSink c, lent;
                size_t payload;

                encrypt(plain, sizes[i], 65536 * 3, k.recipient, &c);
                payload = (size_t) age_header_find_end((const char *) c.data, c.len) + AGE_NONCE_SIZE;
                {
                        _cleanup_(source_freep) Source *up = mem_source_new(c.data, c.len, 0), *src = NULL;
                        int r;
                        src = source_age_new(up, id, &r);
                        assert_non_null(src);
                        up = NULL;
                        mem_sink_init(&lent);
                        assert_int_equal(pipe_pump(src, &lent.base), 0);
                        assert_int_equal(lent.len, sizes[i]);
                        assert_memory_equal(lent.data, plain, sizes[i]);
                        free(lent.data);
                }
                {
                        /* Lent and read in turns, a few bytes at a time. */
                        _cleanup_(source_freep) Source *up = mem_source_new(c.data, c.len, 0), *src = NULL;
                        _cleanup_free_ uint8_t *got = xmalloc(sizes[i] + 1);
                        size_t n = 0;
                        int r;
                        src = source_age_new(up, id, &r);
                        assert_non_null(src);
                        up = NULL;
                        for (unsigned turn = 0;; turn++) {
                                const void *buf;
                                ssize_t m;
                                if (turn % 2) {
                                        m = source_lend(src, &buf, 10000);
                                        if (m > 0)
                                                memcpy(got + n, buf, (size_t) m);
                                } else
                                        m = source_read(src, got + n, 7777);
                                assert_true(m >= 0);
                                if (m == 0)
                                        break;
                                n += (size_t) m;
                        }
                        assert_int_equal(n, sizes[i]);
                        assert_memory_equal(got, plain, n);
                }
                if (sizes[i] > 2 * round) {
                        /* A flipped bit in the third round; the first two come out whole. */
                        _cleanup_free_ uint8_t *out = NULL;
                        size_t n;
                        c.data[payload + 2 * cipher_round + 100] ^= 1;
                        assert_int_equal(decrypt(c.data, c.len, 0, k.identity_file_text[0], &out, &n),
                                         -EPROTO);
                        assert_int_equal(n, 2 * round);
                        assert_memory_equal(out, plain, n);
                        c.data[payload + 2 * cipher_round + 100] ^= 1;
                        /* Cut at a round boundary: two rounds out, then "ends without a final chunk". */
                        free(TAKE_PTR(out));
                        assert_int_equal(decrypt(c.data, payload + 2 * cipher_round, 0,
                                                 k.identity_file_text[0], &out, &n), -EPROTO);
                        assert_int_equal(n, 2 * round);
                        assert_non_null(strstr(err_message(), "ends without a final chunk"));
                }
                if (sizes[i] % round == 0) {
                        /* The final chunk ends a round: a round read ahead after it is trailing data. */
                        _cleanup_free_ uint8_t *bad = xmalloc(c.len + cipher_round), *out = NULL;
                        size_t n;
                        memcpy(bad, c.data, c.len);
                        memcpy(bad + c.len, c.data + payload, cipher_round);
                        assert_int_equal(decrypt(bad, c.len + cipher_round, 0, k.identity_file_text[0], &out,
                                                 &n), -EPROTO);
                        assert_int_equal(n, sizes[i]);
                        assert_non_null(strstr(err_message(), "trailing data"));
                }
                free(c.data);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(bech32_round_trips),
                cmocka_unit_test(bech32_accepts_bip173_vectors),
                cmocka_unit_test(bech32_rejects_invalid),
                cmocka_unit_test(age_keys_parse_and_format),
                cmocka_unit_test(age_identity_files_parse),
                cmocka_unit_test(age_base64_is_canonical),
                cmocka_unit_test(age_test_vectors_pass),
                cmocka_unit_test(age_round_trips_across_chunk_boundaries),
                cmocka_unit_test(age_rejects_tampering),
                cmocka_unit_test(age_sink_fails_closed),
                cmocka_unit_test(age_sink_lends_its_buffer),
                cmocka_unit_test(age_source_lends_and_reads_ahead),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
