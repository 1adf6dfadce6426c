/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "shared/util.h"

/* AWS Signature Version 4 for S3 (header authentication, service "s3"). Pure functions, no I/O, so the
 * unit tests can pin them against AWS's published examples and botocore. */

#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

typedef struct S3Header {
        const char *name; /* any case; signed lower-cased */
        const char *value;
} S3Header;

typedef struct S3Param {
        const char *name; /* raw, not encoded */
        const char *value; /* raw; "" for flags like "uploads" */
} S3Param;

/* SigV4 URI encoding: everything but A-Z a-z 0-9 - _ . ~ is %XX (upper case hex); '/' stays when
 * keep_slash (object key paths) and is encoded otherwise (query names and values). */
char *s3_uri_encode(const char *s, bool keep_slash);
/* The request path, which is also the canonical URI: base_path ("" or "/path" of the endpoint), then
 * "/" and the bucket (path-style requests; NULL when the bucket is in the host name or for the
 * service), then "/" and the key. Bucket and key are URI-encoded, the bucket's '/' too: a name can never
 * add a path segment. The key's own '/' stay, and its ".", ".." and empty segments stay as they are: S3
 * keeps them literally (and so must the HTTP client: libcurl's CURLOPT_PATH_AS_IS). */
char *s3_request_uri(const char *base_path, const char *bucket, const char *key);
/* Whether a bucket name can be put in a request at all: 1..255 of A-Z a-z 0-9 . - _ (S3's legacy
 * rules, a superset of today's), and not "." or "..", so it is always exactly one path segment or host
 * label run. */
bool s3_bucket_name_safe(const char *name);
/* The canonical query string: every name and value encoded, sorted by name then value, joined by '&'.
 * It is also sent as-is on the wire, so what is signed is exactly what the server sees. */
char *s3_canonical_query(const S3Param *params, size_t n);

/* Appends s to the heap string buf of length *len, returning the (moved) buffer. */
char *s3_strbuf_append(char *buf, size_t *len, const char *s);

void s3_sha256_hex(const void *p, size_t n, char ret[static 65]);
/* The same digest as hex (for x-amz-content-sha256) and base64 (for x-amz-checksum-sha256). */
void s3_sha256_hex_base64(const void *p, size_t n, char ret_hex[static 65], char ret_base64[static 45]);

typedef struct S3SignInput {
        const char *method;
        const char *path;  /* encoded canonical URI, e.g. "/bucket/a%20b" */
        const char *query; /* canonical query string, "" when none */
        const S3Header *headers; /* every header to sign, including host, x-amz-date, x-amz-content-sha256 */
        size_t n_headers;
        const char *payload_hash; /* hex SHA-256 of the body, or S3_UNSIGNED_PAYLOAD */
        const char *amz_date;     /* "YYYYMMDDTHHMMSSZ" */
        const char *region;
        const char *access_key_id;
        const char *secret_access_key;
} S3SignInput;

typedef struct S3Signature {
        char *canonical_request;
        char *string_to_sign;
        char signature[65];
        char *authorization; /* the Authorization header's value */
} S3Signature;

int s3_sign(const S3SignInput *in, S3Signature *ret);
void s3_signature_done(S3Signature *s);
