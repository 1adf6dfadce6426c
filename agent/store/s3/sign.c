/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>

#include "sign.h"

static bool unreserved(unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.' || c == '~';
}

char *s3_uri_encode(const char *s, bool keep_slash) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *r = xmalloc(n * 3 + 1), *p = r;

        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if (unreserved(*c) || (keep_slash && *c == '/'))
                        *p++ = (char) *c;
                else {
                        *p++ = '%';
                        *p++ = hex[*c >> 4];
                        *p++ = hex[*c & 15];
                }
        }
        *p = 0;
        return r;
}

char *s3_request_uri(const char *base_path, const char *bucket, const char *key) {
        _cleanup_free_ char *b = bucket ? s3_uri_encode(bucket, false) : NULL;
        _cleanup_free_ char *k = key ? s3_uri_encode(key, true) : NULL;

        if (b && k)
                return xasprintf("%s/%s/%s", strempty(base_path), b, k);
        if (b)
                return xasprintf("%s/%s", strempty(base_path), b);
        return xasprintf("%s/%s", strempty(base_path), strempty(k));
}

bool s3_bucket_name_safe(const char *name) {
        size_t n = name ? strlen(name) : 0;

        if (n < 1 || n > 255 || streq(name, ".") || streq(name, ".."))
                return false;
        for (const char *c = name; *c; c++)
                if (!unreserved((unsigned char) *c) || *c == '~')
                        return false;
        return true;
}

typedef struct EncodedParam {
        char *name;
        char *value;
} EncodedParam;

static int encoded_param_cmp(const void *a, const void *b) {
        const EncodedParam *x = a, *y = b;
        int r = strcmp(x->name, y->name);
        return r != 0 ? r : strcmp(x->value, y->value);
}

char *s3_canonical_query(const S3Param *params, size_t n) {
        _cleanup_free_ EncodedParam *e = NULL;
        char *r;
        size_t len = 1;

        if (n == 0)
                return xstrdup("");
        e = xcalloc(n, sizeof *e);
        for (size_t i = 0; i < n; i++) {
                e[i].name = s3_uri_encode(params[i].name, false);
                e[i].value = s3_uri_encode(strempty(params[i].value), false);
                len += strlen(e[i].name) + strlen(e[i].value) + 2;
        }
        qsort(e, n, sizeof *e, encoded_param_cmp);
        r = xmalloc(len);
        r[0] = 0;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        strcat(r, "&");
                strcat(r, e[i].name);
                strcat(r, "=");
                strcat(r, e[i].value);
                free(e[i].name);
                free(e[i].value);
        }
        return r;
}

static void hex_encode(const uint8_t *md, size_t n, char *ret) {
        for (size_t i = 0; i < n; i++)
                sprintf(ret + 2 * i, "%02x", md[i]);
}

void s3_sha256_hex(const void *p, size_t n, char ret[static 65]) {
        uint8_t md[SHA256_DIGEST_LENGTH];

        SHA256(p, n, md);
        hex_encode(md, sizeof md, ret);
}

void s3_sha256_hex_base64(const void *p, size_t n, char ret_hex[static 65], char ret_base64[static 45]) {
        uint8_t md[SHA256_DIGEST_LENGTH];

        SHA256(p, n, md);
        hex_encode(md, sizeof md, ret_hex);
        EVP_EncodeBlock((unsigned char *) ret_base64, md, sizeof md);
}

/* ret may be the key buffer itself: the key is copied out first. */
static void hmac_sha256(const void *key, size_t key_len, const char *msg, uint8_t ret[static 32]) {
        uint8_t out[32];
        unsigned len = sizeof out;

        HMAC(EVP_sha256(), key, (int) key_len, (const unsigned char *) msg, strlen(msg), out, &len);
        memcpy(ret, out, sizeof out);
}

typedef struct CanonicalHeader {
        char *name;
        char *value;
} CanonicalHeader;

static int canonical_header_cmp(const void *a, const void *b) {
        return strcmp(((const CanonicalHeader *) a)->name, ((const CanonicalHeader *) b)->name);
}

/* Lower-case name; value with leading/trailing blanks removed and inner runs of blanks collapsed
 * ("Trimall" in the SigV4 documentation). */
static void canonical_header(const S3Header *h, CanonicalHeader *ret) {
        char *name = xstrdup(h->name), *value = xmalloc(strlen(h->value) + 1), *p = value;
        bool blank = false;

        for (char *c = name; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        for (const char *c = h->value; *c; c++) {
                if (*c == ' ' || *c == '\t') {
                        blank = p > value;
                        continue;
                }
                if (blank)
                        *p++ = ' ';
                blank = false;
                *p++ = *c;
        }
        *p = 0;
        *ret = (CanonicalHeader){ name, value };
}

char *s3_strbuf_append(char *buf, size_t *len, const char *s) {
        size_t n = strlen(s);

        buf = xrealloc(buf, *len + n + 1);
        memcpy(buf + *len, s, n + 1);
        *len += n;
        return buf;
}

int s3_sign(const S3SignInput *in, S3Signature *ret) {
        _cleanup_free_ CanonicalHeader *hs = NULL;
        _cleanup_free_ char *cr = NULL, *signed_headers = NULL, *sts = NULL, *scope = NULL, *key0 = NULL;
        size_t cr_len = 0, sh_len = 0;
        char date[9], cr_hash[65], sig[65];
        uint8_t k[32];

        if (!in->amz_date || strlen(in->amz_date) != 16 || in->n_headers == 0)
                return -EINVAL;
        memcpy(date, in->amz_date, 8);
        date[8] = 0;

        hs = xcalloc(in->n_headers, sizeof *hs);
        for (size_t i = 0; i < in->n_headers; i++)
                canonical_header(&in->headers[i], &hs[i]);
        qsort(hs, in->n_headers, sizeof *hs, canonical_header_cmp);

        cr = s3_strbuf_append(cr, &cr_len, in->method);
        cr = s3_strbuf_append(cr, &cr_len, "\n");
        cr = s3_strbuf_append(cr, &cr_len, in->path);
        cr = s3_strbuf_append(cr, &cr_len, "\n");
        cr = s3_strbuf_append(cr, &cr_len, strempty(in->query));
        cr = s3_strbuf_append(cr, &cr_len, "\n");
        for (size_t i = 0; i < in->n_headers; i++) {
                cr = s3_strbuf_append(cr, &cr_len, hs[i].name);
                cr = s3_strbuf_append(cr, &cr_len, ":");
                cr = s3_strbuf_append(cr, &cr_len, hs[i].value);
                cr = s3_strbuf_append(cr, &cr_len, "\n");
                if (i > 0)
                        signed_headers = s3_strbuf_append(signed_headers, &sh_len, ";");
                signed_headers = s3_strbuf_append(signed_headers, &sh_len, hs[i].name);
                free(hs[i].name);
                free(hs[i].value);
        }
        cr = s3_strbuf_append(cr, &cr_len, "\n");
        cr = s3_strbuf_append(cr, &cr_len, signed_headers);
        cr = s3_strbuf_append(cr, &cr_len, "\n");
        cr = s3_strbuf_append(cr, &cr_len, in->payload_hash);

        s3_sha256_hex(cr, cr_len, cr_hash);
        scope = xasprintf("%s/%s/s3/aws4_request", date, in->region);
        sts = xasprintf("AWS4-HMAC-SHA256\n%s\n%s\n%s", in->amz_date, scope, cr_hash);

        key0 = xasprintf("AWS4%s", in->secret_access_key);
        hmac_sha256(key0, strlen(key0), date, k);
        explicit_bzero(key0, strlen(key0));
        hmac_sha256(k, sizeof k, in->region, k);
        hmac_sha256(k, sizeof k, "s3", k);
        hmac_sha256(k, sizeof k, "aws4_request", k);
        hmac_sha256(k, sizeof k, sts, k);
        for (size_t i = 0; i < sizeof k; i++)
                sprintf(sig + 2 * i, "%02x", k[i]);

        *ret = (S3Signature){
                .canonical_request = TAKE_PTR(cr),
                .string_to_sign = TAKE_PTR(sts),
                .authorization = xasprintf("AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=%s,Signature=%s",
                                           in->access_key_id, scope, signed_headers, sig),
        };
        memcpy(ret->signature, sig, sizeof sig);
        return 0;
}

void s3_signature_done(S3Signature *s) {
        if (!s)
                return;
        free(s->canonical_request);
        free(s->string_to_sign);
        free(s->authorization);
        *s = (S3Signature){};
}
