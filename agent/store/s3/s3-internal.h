/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <inttypes.h>

#include "s3.h"
#include "sign.h"

#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"

typedef struct S3Response S3Response;

/* One S3 call. The body to send is in memory (parts are buffered anyway); the response body of a
 * successful call goes to on_body, or is collected (bounded) into S3Response.body when on_body is NULL. */
typedef struct S3Request {
        const char *method;
        const char *bucket; /* NULL: the service (ListBuckets) */
        const char *key;    /* NULL: the bucket */
        const S3Param *params;
        size_t n_params;
        const S3Header *headers; /* extra headers, all signed */
        size_t n_headers;
        const void *body;
        size_t body_len;
        /* Hex SHA-256 of body when the caller already has it (parts are hashed once for the payload
         * signature and their checksum); NULL: computed here. With read_body: the x-amz-content-sha256
         * of the streamed body (STREAMING-UNSIGNED-PAYLOAD-TRAILER); NULL: UNSIGNED-PAYLOAD. */
        const char *payload_sha256;
        /* Returns < 0 to abort the transfer with that error. */
        int (*on_body)(const void *p, size_t n, void *userdata);
        /* Called before a retry when on_body already got bytes of a failed attempt; NULL: such an
         * attempt is not retried here, and the call fails with S3Response.body_bytes > 0. */
        int (*on_retry)(void *userdata);
        /* Called once per attempt when the headers of a 2xx reply are complete, before its first body
         * byte; returns < 0 to abort the transfer with that error. */
        int (*on_headers)(const S3Response *resp, void *userdata);
        void *userdata;
        /* Set: the body (body_len bytes) is pulled from here, sent as UNSIGNED-PAYLOAD, and an attempt
         * that already pulled bytes is not retried (they cannot be pulled again). */
        S3ReadFunc read_body;
        void *read_userdata;
        /* A 2xx reply may carry an <Error> document instead of the result (CompleteMultipartUpload,
         * DeleteObjects, CopyObject: the server answers 200 before it knows the outcome). Such a reply is a
         * failure, retried like a 5xx unless its code says retrying cannot help. Needs on_body NULL. */
        bool error_in_ok;
        /* The server may rightly take minutes to answer, trickling whitespace meanwhile
         * (CompleteMultipartUpload): any byte counts as progress, and the attempt is capped instead. */
        bool slow_reply;
        /* The monotonic time the operation this request belongs to first failed (0: not yet), shared by
         * the requests of one operation (a GET and its resumes) so that retry_time bounds the operation,
         * not each request. NULL: the request is the whole operation. */
        uint64_t *failing_since;
        /* Tidying up after a failure (AbortMultipartUpload): still sent once after SIGTERM, without
         * retries, so a cancelled job leaves no upload behind when the server answers. */
        bool tidy_up;
} S3Request;

typedef struct S3Response {
        long status;
        char *body; /* collected body (on_body NULL) */
        size_t body_len;
        uint64_t body_bytes; /* bytes given to on_body in the last attempt */
        uint64_t sent_bytes; /* bytes pulled from read_body in the last attempt */
        char *etag;          /* without quotes */
        char *content_type;
        char *cache_control;
        char *content_disposition;
        char *content_encoding;
        char *content_language;
        char *expires;
        uint64_t content_length;
        uint64_t range_total; /* the object's size from Content-Range (206 replies); 0: none */
        uint64_t mtime_usec;
        char **metadata;
        unsigned parts_count; /* x-amz-mp-parts-count (a GET or HEAD with partNumber); 0: none */
} S3Response;

void s3_response_done(S3Response *r);

/* Whether the server takes a body in aws-chunked encoding with a trailing checksum; false once
 * s3_client_refuse_trailers() was called on the client or any of its clones. */
bool s3_client_trailers(const S3Client *c);
void s3_client_refuse_trailers(S3Client *c);

/* Sends the request with retries. Returns 0 for a 2xx reply, a negative errno with err_set() otherwise
 * (-ENOENT for 404, -EACCES for auth errors, -ECONNREFUSED etc. for transport failures). */
int s3_request(S3Client *c, const S3Request *req, S3Response *ret);

/* Adds "gave up after N s (retry_time ...)" to the failure r of an operation that has been failing for
 * spent_usec. */
int s3_fail_retry_time(S3Client *c, int r, uint64_t spent_usec);
/* The IAM action a request needs ("s3:PutObject"), for AccessDenied messages (bucket.c). */
const char *s3_request_action(const S3Request *req);

/* Error text for a request, for callers that find a failure inside a 200 reply. */
int s3_fail(S3Client *c, const S3Request *req, long status, const char *code, const char *message);

/* A streaming XML reader: calls f at every element end with the element path ("/A/B/C", namespaces
 * dropped) and its text. */
typedef struct S3Xml S3Xml;
typedef int (*S3XmlFunc)(const char *path, const char *text, void *userdata);
S3Xml *s3_xml_new(S3XmlFunc f, void *userdata);
int s3_xml_feed(S3Xml *x, const void *p, size_t n, bool final);
void s3_xml_free(S3Xml *x);
DEFINE_TRIVIAL_CLEANUP_FUNC(S3Xml *, s3_xml_free);
/* Parses a whole small document. Both return -EBADMSG with err_set() saying what is wrong for a document
 * that is not well-formed or exceeds the limits (32 levels, 256-byte names). */
int s3_xml_parse(const char *p, size_t n, S3XmlFunc f, void *userdata);
/* The error for a reply that s3_xml_feed()/s3_xml_parse() refused with r, naming the operation, the server
 * and what is wrong; other errors (a callback's) are returned unchanged. bucket and key may be NULL. */
int s3_reply_malformed(S3Client *c, const char *what, const char *bucket, const char *key, int r);

char *s3_xml_escape(const char *s);
/* Base64 of the MD5 of data, for Content-MD5. */
char *s3_content_md5(const void *data, size_t n);
/* Headers for PutObject / CreateMultipartUpload from options; names allocated into *ret_names. */
size_t s3_put_headers(const S3PutOptions *o, S3Header **ret, char ***ret_names);
/* -EMSGSIZE (with err_set()) when the options carry more user metadata than S3 takes. */
int s3_put_options_check(S3Client *c, const char *bucket, const char *key, const S3PutOptions *o);

static inline char *mfree_str(char *p) {
        free(p);
        return NULL;
}
char *s3_strip_quotes(const char *etag);
int s3_parse_iso8601(const char *s, uint64_t *ret_usec);
