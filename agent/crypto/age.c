/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <sysexits.h>

#include "crypto/age.h"
#include "crypto/bech32.h"
#include "log/log.h"

#define RECIPIENT_HRP "age"
#define IDENTITY_HRP "age-secret-key-"
#define X25519_LABEL "age-encryption.org/v1/X25519"
#define BODY_COLUMNS 64
#define BODY_LINE_BYTES 48
#define MAC_SIZE 32

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *age_b64_encode(const uint8_t *data, size_t n) {
        char *s = xmalloc((n + 2) / 3 * 4 + 1), *p = s;

        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) data[i] << 16;
                size_t left = n - i;
                if (left > 1)
                        v |= (uint32_t) data[i + 1] << 8;
                if (left > 2)
                        v |= data[i + 2];
                *p++ = b64_alphabet[(v >> 18) & 63];
                *p++ = b64_alphabet[(v >> 12) & 63];
                if (left > 1)
                        *p++ = b64_alphabet[(v >> 6) & 63];
                if (left > 2)
                        *p++ = b64_alphabet[v & 63];
        }
        *p = 0;
        return s;
}

static int b64_value(char c) {
        const char *p = c ? strchr(b64_alphabet, c) : NULL;
        return p ? (int) (p - b64_alphabet) : -1;
}

/* Strict: no padding, no whitespace, and the unused low bits of the last character must be zero, so
 * every byte string has exactly one accepted encoding (age rejects the others). */
int age_b64_decode(const char *s, size_t len, uint8_t *out, size_t max, size_t *ret_len) {
        uint32_t acc = 0;
        unsigned bits = 0;
        size_t k = 0;

        if (len % 4 == 1)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                int v = b64_value(s[i]);
                if (v < 0)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (k >= max)
                                return -ENOBUFS;
                        out[k++] = (uint8_t) (acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        if (acc != 0)
                return -EINVAL;
        *ret_len = k;
        return 0;
}

static int bech32_key_parse(const char *s, const char *want_hrp, uint8_t ret[static AGE_KEY_SIZE]) {
        _cleanup_free_ char *hrp = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t n;
        int r;

        r = bech32_decode(s, &hrp, &data, &n);
        if (r < 0)
                return r;
        if (!streq(hrp, want_hrp) || n != AGE_KEY_SIZE) {
                OPENSSL_cleanse(data, n);
                return -EINVAL;
        }
        memcpy(ret, data, AGE_KEY_SIZE);
        OPENSSL_cleanse(data, n);
        return 0;
}

int age_recipient_parse(const char *s, uint8_t ret_public[static AGE_KEY_SIZE]) {
        int r = bech32_key_parse(s, RECIPIENT_HRP, ret_public);
        if (r < 0)
                return err_set(r, EX_CONFIG,
                               "'%s' is not an age X25519 recipient: expected 'age1' followed by 58 bech32 "
                               "characters (age-keygen -y or skyforge-agent keygen -y prints one)", s);
        return 0;
}

int age_recipient_format(const uint8_t public[static AGE_KEY_SIZE], char **ret) {
        return bech32_encode(RECIPIENT_HRP, public, AGE_KEY_SIZE, false, ret);
}

int age_identity_parse(const char *s, uint8_t ret_secret[static AGE_KEY_SIZE]) {
        return bech32_key_parse(s, IDENTITY_HRP, ret_secret);
}

int age_identity_format(const uint8_t secret[static AGE_KEY_SIZE], char **ret) {
        return bech32_encode(IDENTITY_HRP, secret, AGE_KEY_SIZE, true, ret);
}

int age_identity_generate(uint8_t ret_secret[static AGE_KEY_SIZE]) {
        if (RAND_bytes(ret_secret, AGE_KEY_SIZE) != 1)
                return err_set(-EIO, EX_SOFTWARE, "cannot generate an age identity: the OpenSSL random "
                               "generator failed (is /dev/urandom available?)");
        return 0;
}

static void evp_pkey_freep(EVP_PKEY **p) {
        EVP_PKEY_free(*p);
}

int age_x25519_public(const uint8_t secret[static AGE_KEY_SIZE], uint8_t ret_public[static AGE_KEY_SIZE]) {
        _cleanup_(evp_pkey_freep) EVP_PKEY *k = NULL;
        size_t n = AGE_KEY_SIZE;

        k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, AGE_KEY_SIZE);
        if (!k || EVP_PKEY_get_raw_public_key(k, ret_public, &n) != 1 || n != AGE_KEY_SIZE)
                return -EIO;
        return 0;
}

/* X25519(secret, peer); fails for low-order peers, whose shared secret is all zeros. */
static int x25519_shared(const uint8_t secret[static AGE_KEY_SIZE], const uint8_t peer[static AGE_KEY_SIZE],
                         uint8_t ret[static AGE_KEY_SIZE]) {
        _cleanup_(evp_pkey_freep) EVP_PKEY *k = NULL, *p = NULL;
        EVP_PKEY_CTX *ctx = NULL;
        uint8_t zero[AGE_KEY_SIZE] = {};
        size_t n = AGE_KEY_SIZE;
        int ok;

        k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, AGE_KEY_SIZE);
        p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, AGE_KEY_SIZE);
        if (!k || !p)
                return -EIO;
        ctx = EVP_PKEY_CTX_new(k, NULL);
        if (!ctx)
                return -ENOMEM;
        ok = EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, p) == 1 &&
             EVP_PKEY_derive(ctx, ret, &n) == 1 && n == AGE_KEY_SIZE;
        EVP_PKEY_CTX_free(ctx);
        if (!ok || CRYPTO_memcmp(ret, zero, AGE_KEY_SIZE) == 0)
                return -EINVAL;
        return 0;
}

static int hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                       const char *info, uint8_t *out, size_t out_len) {
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        OSSL_PARAM params[5], *p = params;
        int ok;

        EVP_KDF_free(kdf);
        if (!ctx)
                return -EIO;
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) ikm, ikm_len);
        /* An empty salt means HMAC's all-zero key, which is also what OpenSSL does without one. */
        if (salt_len > 0)
                *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *) salt, salt_len);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *) info, strlen(info));
        *p = OSSL_PARAM_construct_end();
        ok = EVP_KDF_derive(ctx, out, out_len, params) == 1;
        EVP_KDF_CTX_free(ctx);
        return ok ? 0 : -EIO;
}

/* One-shot ChaCha20-Poly1305 with an all-zero nonce: each wrapping key is used exactly once. */
static int aead_zero_nonce(bool encrypt, const uint8_t key[static 32], const uint8_t *in, size_t n,
                           uint8_t *out) {
        static const uint8_t nonce[12] = {};
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int len, ok;

        if (!ctx)
                return -ENOMEM;
        if (encrypt)
                ok = EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, nonce) == 1 &&
                     EVP_EncryptUpdate(ctx, out, &len, in, (int) n) == 1 &&
                     EVP_EncryptFinal_ex(ctx, out + len, &len) == 1 &&
                     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, AGE_TAG_SIZE, out + n) == 1;
        else
                ok = n >= AGE_TAG_SIZE &&
                     EVP_DecryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, nonce) == 1 &&
                     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, AGE_TAG_SIZE,
                                         (void *) (in + n - AGE_TAG_SIZE)) == 1 &&
                     EVP_DecryptUpdate(ctx, out, &len, in, (int) (n - AGE_TAG_SIZE)) == 1 &&
                     EVP_DecryptFinal_ex(ctx, out + len, &len) == 1;
        EVP_CIPHER_CTX_free(ctx);
        return ok ? 0 : -EBADMSG;
}

static int x25519_wrap_key(const uint8_t shared[static AGE_KEY_SIZE],
                           const uint8_t share[static AGE_KEY_SIZE],
                           const uint8_t recipient[static AGE_KEY_SIZE], uint8_t ret[static 32]) {
        uint8_t salt[2 * AGE_KEY_SIZE];

        memcpy(salt, share, AGE_KEY_SIZE);
        memcpy(salt + AGE_KEY_SIZE, recipient, AGE_KEY_SIZE);
        return hkdf_sha256(shared, AGE_KEY_SIZE, salt, sizeof salt, X25519_LABEL, ret, 32);
}

static int header_mac(const uint8_t file_key[static AGE_FILE_KEY_SIZE], const char *header, size_t len,
                      uint8_t ret[static MAC_SIZE]) {
        uint8_t key[32];
        unsigned n = MAC_SIZE;
        int r;

        r = hkdf_sha256(file_key, AGE_FILE_KEY_SIZE, NULL, 0, "header", key, sizeof key);
        if (r < 0)
                return r;
        r = HMAC(EVP_sha256(), key, sizeof key, (const uint8_t *) header, len, ret, &n) ? 0 : -EIO;
        OPENSSL_cleanse(key, sizeof key);
        return r;
}

void age_identities_free(AgeIdentities *ids) {
        if (!ids)
                return;
        if (ids->secret)
                OPENSSL_cleanse(ids->secret, ids->n * AGE_KEY_SIZE);
        free(ids->secret);
        free(ids);
}

int age_identities_parse(const char *text, const char *origin, AgeIdentities **ret) {
        _cleanup_(age_identities_freep) AgeIdentities *ids = xcalloc(1, sizeof *ids);
        unsigned lineno = 0;

        for (const char *p = text; *p;) {
                const char *eol = strchrnul(p, '\n');
                size_t len = (size_t) (eol - p);
                uint8_t key[AGE_KEY_SIZE];

                lineno++;
                /* Like age: comments and empty lines are skipped, and a CRLF file is fine. */
                if (len > 0 && p[len - 1] == '\r')
                        len--;
                if (len > 0 && p[0] != '#') {
                        _cleanup_free_ char *line = xstrndup(p, len);
                        int r = age_identity_parse(line, key);
                        OPENSSL_cleanse(line, len);
                        if (r < 0)
                                return err_set(-EINVAL, EX_CONFIG,
                                               "%s, line %u: not an age identity: expected "
                                               "'AGE-SECRET-KEY-1...' (age plugin and SSH keys are not "
                                               "supported; create one with skyforge-agent keygen)",
                                               origin, lineno);
                        ids->secret = xrealloc(ids->secret, (ids->n + 1) * AGE_KEY_SIZE);
                        memcpy(ids->secret[ids->n++], key, AGE_KEY_SIZE);
                        OPENSSL_cleanse(key, sizeof key);
                }
                p = *eol ? eol + 1 : eol;
        }
        if (ids->n == 0)
                return err_set(-EINVAL, EX_CONFIG,
                               "%s: no age identity (AGE-SECRET-KEY-1...) found in the file; create one "
                               "with skyforge-agent keygen", origin);
        *ret = TAKE_PTR(ids);
        return 0;
}

int age_identities_load(const char *path, AgeIdentities **ret) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = read_file_string(path, 1024 * 1024, &text);
        if (r < 0)
                return err_set(r, r == -ENOENT ? EX_NOINPUT : r == -EACCES ? EX_NOPERM : EX_IOERR,
                               "cannot read the age identity file %s: %s (check identity_file)", path,
                               strerror(-r));
        r = age_identities_parse(text, path, ret);
        OPENSSL_cleanse(text, strlen(text));
        return r;
}

static void append(char **buf, size_t *len, const char *s, size_t n) {
        *buf = xrealloc(*buf, *len + n + 1);
        memcpy(*buf + *len, s, n);
        *len += n;
        (*buf)[*len] = 0;
}

static void append_str(char **buf, size_t *len, const char *s) {
        append(buf, len, s, strlen(s));
}

/* A body is base64 in lines of 64 columns, always ending with a shorter (possibly empty) line. */
static void append_body(char **buf, size_t *len, const uint8_t *body, size_t n) {
        _cleanup_free_ char *b = age_b64_encode(body, n);
        size_t bl = strlen(b);

        for (size_t i = 0;; i += BODY_COLUMNS) {
                size_t k = bl - i < BODY_COLUMNS ? bl - i : BODY_COLUMNS;
                append(buf, len, b + i, k);
                append_str(buf, len, "\n");
                if (k < BODY_COLUMNS)
                        break;
        }
}

static int x25519_stanza(const uint8_t recipient[static AGE_KEY_SIZE],
                         const uint8_t file_key[static AGE_FILE_KEY_SIZE], char **buf, size_t *len) {
        uint8_t eph[AGE_KEY_SIZE], share[AGE_KEY_SIZE], shared[AGE_KEY_SIZE], wrap[32];
        uint8_t body[AGE_FILE_KEY_SIZE + AGE_TAG_SIZE];
        _cleanup_free_ char *share_b64 = NULL;
        int r;

        r = age_identity_generate(eph);
        if (r < 0)
                return r;
        r = age_x25519_public(eph, share);
        if (r >= 0)
                r = x25519_shared(eph, recipient, shared);
        OPENSSL_cleanse(eph, sizeof eph);
        if (r < 0)
                return err_set(r, EX_CONFIG, "cannot encrypt to an age recipient: the X25519 key agreement "
                               "failed (is the recipient a valid public key?)");
        r = x25519_wrap_key(shared, share, recipient, wrap);
        OPENSSL_cleanse(shared, sizeof shared);
        if (r >= 0)
                r = aead_zero_nonce(true, wrap, file_key, AGE_FILE_KEY_SIZE, body);
        OPENSSL_cleanse(wrap, sizeof wrap);
        if (r < 0)
                return err_set(-EIO, EX_SOFTWARE, "cannot wrap the age file key: OpenSSL failed");

        share_b64 = age_b64_encode(share, sizeof share);
        append_str(buf, len, "-> X25519 ");
        append_str(buf, len, share_b64);
        append_str(buf, len, "\n");
        append_body(buf, len, body, sizeof body);
        return 0;
}

int age_header_build(const uint8_t (*recipients)[AGE_KEY_SIZE], size_t n,
                     const uint8_t file_key[static AGE_FILE_KEY_SIZE], char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL, *mac_b64 = NULL;
        uint8_t mac[MAC_SIZE];
        size_t len = 0;
        int r;

        if (n == 0)
                return err_set(-EINVAL, EX_CONFIG, "cannot encrypt: no age recipients given");
        append_str(&buf, &len, AGE_VERSION_LINE "\n");
        for (size_t i = 0; i < n; i++) {
                r = x25519_stanza(recipients[i], file_key, &buf, &len);
                if (r < 0)
                        return r;
        }
        append_str(&buf, &len, "---");
        r = header_mac(file_key, buf, len, mac);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "cannot compute the age header MAC: OpenSSL failed");
        mac_b64 = age_b64_encode(mac, sizeof mac);
        append_str(&buf, &len, " ");
        append_str(&buf, &len, mac_b64);
        append_str(&buf, &len, "\n");
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

ssize_t age_header_find_end(const char *buf, size_t len) {
        for (size_t pos = 0; pos < len;) {
                const char *nl = memchr(buf + pos, '\n', len - pos);
                if (len - pos >= 3 && memcmp(buf + pos, "---", 3) == 0) {
                        if (nl)
                                return nl - buf + 1;
                        break;
                }
                if (!nl)
                        break;
                pos = (size_t) (nl - buf) + 1;
        }
        if (len >= AGE_HEADER_MAX)
                return err_set(-EBADMSG, EX_DATAERR,
                               "not an age file: no header end within %d bytes", AGE_HEADER_MAX);
        return 0;
}

typedef struct Stanza {
        char **args; /* args[0] is the type */
        uint8_t *body;
        size_t body_len;
} Stanza;

typedef struct Header {
        Stanza *stanzas;
        size_t n;
        size_t mac_input_len; /* through "---" */
        uint8_t mac[MAC_SIZE];
} Header;

static void header_free(Header *h) {
        for (size_t i = 0; i < h->n; i++) {
                strv_free(h->stanzas[i].args);
                free(h->stanzas[i].body);
        }
        free(h->stanzas);
}

static bool valid_arg(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < 33 || *s > 126)
                        return false;
        return true;
}

/* Splits on single spaces as age does, so empty arguments (double spaces, trailing space) show up. */
static char **split_args(const char *line, size_t len) {
        char **l = NULL;

        for (size_t i = 0;;) {
                const char *sp = memchr(line + i, ' ', len - i);
                size_t e = sp ? (size_t) (sp - line) : len;
                strv_push(&l, xstrndup(line + i, e - i));
                if (!sp)
                        break;
                i = e + 1;
        }
        return l;
}

static int header_fail(const char *what) {
        return err_set(-EBADMSG, EX_DATAERR, "the age header is malformed: %s (is this file corrupt?)",
                       what);
}

static int parse_stanza(const char *line, size_t len, const char **pos, const char *end, Stanza *ret) {
        _cleanup_strv_free_ char **args = NULL;
        _cleanup_free_ uint8_t *body = NULL;
        size_t body_len = 0;

        if (len < 2 || memcmp(line, "->", 2) != 0)
                return header_fail("a line is neither a recipient stanza nor the MAC line");
        args = split_args(line, len);
        if (!streq(args[0], "->") || strv_length(args) < 2)
                return header_fail("a stanza opening line has no type");
        STRV_FOREACH(a, args + 1)
                if (!valid_arg(*a))
                        return header_fail("a stanza argument is empty or has invalid characters");

        for (;;) {
                const char *l = *pos, *nl = memchr(l, '\n', (size_t) (end - l));
                size_t ll, k;
                if (!nl)
                        return header_fail("a stanza body is not terminated");
                ll = (size_t) (nl - l);
                *pos = nl + 1;
                if (ll > BODY_COLUMNS)
                        return header_fail("a stanza body line is longer than 64 columns");
                body = xrealloc(body, body_len + BODY_LINE_BYTES);
                if (age_b64_decode(l, ll, body + body_len, BODY_LINE_BYTES, &k) < 0)
                        return header_fail(ll >= 2 && (memcmp(l, "--", 2) == 0) ?
                                           "a stanza body ended without a short final line" :
                                           "a stanza body line is not canonical base64");
                body_len += k;
                if (k < BODY_LINE_BYTES)
                        break;
        }
        STRV_FOREACH(a, args + 1)
                strv_push(&ret->args, xstrdup(*a));
        ret->body = TAKE_PTR(body);
        ret->body_len = body_len;
        return 0;
}

static int header_parse(const char *buf, size_t len, Header *h) {
        const char *pos = buf, *end = buf + len;

        for (bool first = true;; first = false) {
                const char *nl = memchr(pos, '\n', (size_t) (end - pos));
                const char *line = pos;
                size_t ll;
                int r;

                if (!nl)
                        return header_fail("the header is truncated");
                ll = (size_t) (nl - pos);
                pos = nl + 1;
                if (first) {
                        if (ll != strlen(AGE_VERSION_LINE) || memcmp(line, AGE_VERSION_LINE, ll) != 0)
                                return err_set(-EBADMSG, EX_DATAERR,
                                               "not an age v1 file: the first line is not '%s' (an "
                                               "unsupported version, or not age at all)", AGE_VERSION_LINE);
                        continue;
                }
                if (ll >= 3 && memcmp(line, "---", 3) == 0) {
                        size_t k;
                        if (ll < 4 || line[3] != ' ' || memchr(line + 4, ' ', ll - 4) ||
                            age_b64_decode(line + 4, ll - 4, h->mac, sizeof h->mac, &k) < 0 || k != MAC_SIZE)
                                return header_fail("the MAC line is not '--- ' and 43 base64 characters");
                        if (pos != end)
                                return header_fail("data follows the MAC line");
                        h->mac_input_len = (size_t) (line - buf) + 3;
                        return 0;
                }
                h->stanzas = xrealloc(h->stanzas, (h->n + 1) * sizeof *h->stanzas);
                h->stanzas[h->n] = (Stanza){};
                r = parse_stanza(line, ll, &pos, end, &h->stanzas[h->n]);
                if (r < 0)
                        return r;
                h->n++;
        }
}

/* 1 with the file key, 0 if this stanza is not for this identity, <0 if the stanza is malformed. Like
 * age, a malformed X25519 stanza is fatal rather than skipped. */
static int x25519_unwrap(const Stanza *s, const uint8_t secret[static AGE_KEY_SIZE],
                         uint8_t ret[static AGE_FILE_KEY_SIZE]) {
        uint8_t share[AGE_KEY_SIZE], pub[AGE_KEY_SIZE], shared[AGE_KEY_SIZE], wrap[32];
        uint8_t out[AGE_FILE_KEY_SIZE + AGE_TAG_SIZE];
        size_t k;
        int r;

        if (!streq(s->args[0], "X25519"))
                return 0;
        if (strv_length(s->args) != 2 ||
            age_b64_decode(s->args[1], strlen(s->args[1]), share, sizeof share, &k) < 0 || k != AGE_KEY_SIZE)
                return header_fail("an X25519 stanza does not have exactly one 32-byte share");
        if (s->body_len != AGE_FILE_KEY_SIZE + AGE_TAG_SIZE)
                return header_fail("an X25519 stanza does not wrap a 16-byte file key");
        r = age_x25519_public(secret, pub);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "cannot derive the public key of an age identity");
        r = x25519_shared(secret, share, shared);
        if (r < 0)
                return header_fail("an X25519 share is a low-order point");
        r = x25519_wrap_key(shared, share, pub, wrap);
        OPENSSL_cleanse(shared, sizeof shared);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "cannot derive the age wrapping key: OpenSSL failed");
        r = aead_zero_nonce(false, wrap, s->body, s->body_len, out);
        OPENSSL_cleanse(wrap, sizeof wrap);
        if (r < 0)
                return 0;
        memcpy(ret, out, AGE_FILE_KEY_SIZE);
        OPENSSL_cleanse(out, sizeof out);
        return 1;
}

int age_header_unwrap(const char *header, size_t len, const AgeIdentities *ids,
                      uint8_t ret_file_key[static AGE_FILE_KEY_SIZE]) {
        _cleanup_(header_free) Header h = {};
        uint8_t file_key[AGE_FILE_KEY_SIZE], mac[MAC_SIZE];
        bool found = false;
        int r;

        r = header_parse(header, len, &h);
        if (r < 0)
                return r;
        for (size_t i = 0; i < h.n; i++)
                if (streq(h.stanzas[i].args[0], "scrypt") && h.n != 1)
                        return header_fail("an scrypt stanza is not the only one");

        for (size_t i = 0; i < ids->n && !found; i++)
                for (size_t j = 0; j < h.n && !found; j++) {
                        r = x25519_unwrap(&h.stanzas[j], ids->secret[i], file_key);
                        if (r < 0)
                                return r;
                        found = r > 0;
                }
        if (!found)
                return err_set(-ENOKEY, EX_DATAERR,
                               "none of the %zu age identities can decrypt this file: it was encrypted to "
                               "other recipients (check identity_file)", ids->n);

        r = header_mac(file_key, header, h.mac_input_len, mac);
        if (r < 0) {
                OPENSSL_cleanse(file_key, sizeof file_key);
                return err_set(r, EX_SOFTWARE, "cannot compute the age header MAC: OpenSSL failed");
        }
        if (CRYPTO_memcmp(mac, h.mac, MAC_SIZE) != 0) {
                OPENSSL_cleanse(file_key, sizeof file_key);
                return err_set(-EKEYREJECTED, EX_DATAERR,
                               "the age header MAC does not match: the header was modified");
        }
        memcpy(ret_file_key, file_key, AGE_FILE_KEY_SIZE);
        OPENSSL_cleanse(file_key, sizeof file_key);
        return 0;
}

struct AgeStream {
        EVP_CIPHER_CTX *ctx;
        uint64_t counter;
        bool encrypt;
};

void age_stream_free(AgeStream *s) {
        if (!s)
                return;
        EVP_CIPHER_CTX_free(s->ctx); /* cleanses the key schedule */
        free(s);
}

int age_stream_new(const uint8_t file_key[static AGE_FILE_KEY_SIZE],
                   const uint8_t nonce[static AGE_NONCE_SIZE],
                   bool encrypt, AgeStream **ret) {
        _cleanup_(age_stream_freep) AgeStream *s = xcalloc(1, sizeof *s);
        uint8_t key[32];
        int r, ok;

        r = hkdf_sha256(file_key, AGE_FILE_KEY_SIZE, nonce, AGE_NONCE_SIZE, "payload", key, sizeof key);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "cannot derive the age payload key: OpenSSL failed");
        s->encrypt = encrypt;
        s->ctx = EVP_CIPHER_CTX_new();
        ok = s->ctx && (encrypt ? EVP_EncryptInit_ex(s->ctx, EVP_chacha20_poly1305(), NULL, key, NULL)
                                : EVP_DecryptInit_ex(s->ctx, EVP_chacha20_poly1305(), NULL, key, NULL)) == 1;
        OPENSSL_cleanse(key, sizeof key);
        if (!ok)
                return err_set(-EIO, EX_SOFTWARE, "cannot set up ChaCha20-Poly1305: OpenSSL failed");
        *ret = TAKE_PTR(s);
        return 0;
}

uint64_t age_stream_counter(const AgeStream *s) {
        return s->counter;
}

int age_stream_clone(const AgeStream *s, AgeStream **ret) {
        _cleanup_(age_stream_freep) AgeStream *c = xcalloc(1, sizeof *c);

        c->encrypt = s->encrypt;
        c->counter = s->counter;
        c->ctx = EVP_CIPHER_CTX_new();
        if (!c->ctx || EVP_CIPHER_CTX_copy(c->ctx, s->ctx) != 1)
                return err_set(-EIO, EX_SOFTWARE,
                               "cannot copy the ChaCha20-Poly1305 context: OpenSSL failed");
        *ret = TAKE_PTR(c);
        return 0;
}

void age_stream_set_counter(AgeStream *s, uint64_t counter) {
        s->counter = counter;
}

static void stream_nonce(const AgeStream *s, bool last, uint8_t nonce[static 12]) {
        memset(nonce, 0, 12);
        for (unsigned i = 0; i < 8; i++)
                nonce[10 - i] = (uint8_t) (s->counter >> (8 * i));
        nonce[11] = last ? 1 : 0;
}

int age_stream_seal(AgeStream *s, const uint8_t *in, size_t n, bool last, uint8_t *out) {
        uint8_t nonce[12];
        int len;

        assert(s->encrypt && n <= AGE_CHUNK_SIZE);
        stream_nonce(s, last, nonce);
        if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 ||
            EVP_EncryptUpdate(s->ctx, out, &len, in, (int) n) != 1 ||
            EVP_EncryptFinal_ex(s->ctx, out + len, &len) != 1 ||
            EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_GET_TAG, AGE_TAG_SIZE, out + n) != 1)
                return err_set(-EIO, EX_SOFTWARE, "ChaCha20-Poly1305 encryption failed in OpenSSL");
        s->counter++;
        return 0;
}

int age_stream_open(AgeStream *s, const uint8_t *in, size_t n, bool last, uint8_t *out) {
        uint8_t nonce[12];
        int len;

        assert(!s->encrypt);
        if (n < AGE_TAG_SIZE || n > AGE_CHUNK_SIZE + AGE_TAG_SIZE)
                return -EPROTO;
        stream_nonce(s, last, nonce);
        if (EVP_DecryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 ||
            EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_SET_TAG, AGE_TAG_SIZE,
                                (void *) (in + n - AGE_TAG_SIZE)) != 1 ||
            EVP_DecryptUpdate(s->ctx, out, &len, in, (int) (n - AGE_TAG_SIZE)) != 1 ||
            EVP_DecryptFinal_ex(s->ctx, out + len, &len) != 1)
                return -EPROTO;
        s->counter++;
        return 0;
}
