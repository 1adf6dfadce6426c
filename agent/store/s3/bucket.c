/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Buckets: whether one exists, creating it only when a writer needs it, and which IAM action a request
 * needs (so an AccessDenied names the missing permission instead of blaming bucket access in general). */
#include <strings.h>
#include <sysexits.h>

#include "log/log.h"
#include "store/s3/s3-internal.h"

static bool has_param(const S3Request *req, const char *name) {
        for (size_t i = 0; i < req->n_params; i++)
                if (streq(req->params[i].name, name))
                        return true;
        return false;
}

static bool has_header(const S3Request *req, const char *name) {
        for (size_t i = 0; i < req->n_headers; i++)
                if (strcasecmp(req->headers[i].name, name) == 0)
                        return true;
        return false;
}

const char *s3_request_action(const S3Request *req) {
        const char *m = req->method;

        if (!req->bucket)
                return "s3:ListAllMyBuckets";
        if (!req->key) {
                if (streq(m, "PUT"))
                        return "s3:CreateBucket";
                if (streq(m, "POST") && has_param(req, "delete"))
                        return "s3:DeleteObject";
                if (streq(m, "GET") && has_param(req, "uploads"))
                        return "s3:ListBucketMultipartUploads";
                if (streq(m, "DELETE"))
                        return "s3:DeleteBucket";
                return "s3:ListBucket"; /* GET (ListObjectsV2) and HEAD (HeadBucket) */
        }
        if (streq(m, "GET") && has_param(req, "uploadId"))
                return "s3:ListMultipartUploadParts";
        if (streq(m, "GET") || streq(m, "HEAD"))
                return "s3:GetObject";
        if (streq(m, "DELETE"))
                return has_param(req, "uploadId") ? "s3:AbortMultipartUpload" : "s3:DeleteObject";
        if (streq(m, "PUT") && (has_header(req, "x-amz-copy-source")))
                return "s3:PutObject (and s3:GetObject on the source)";
        return "s3:PutObject"; /* PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload */
}

int s3_head_bucket(S3Client *c, const char *bucket) {
        _cleanup_(s3_response_done) S3Response resp = {};
        S3Request req = { .method = "HEAD", .bucket = bucket };

        return s3_request(c, &req, &resp);
}

int s3_ensure_bucket(S3Client *c, const char *bucket) {
        int r;

        r = s3_head_bucket(c, bucket);
        if (r >= 0)
                return 0;
        if (r == -EACCES)
                /* Without s3:ListBucket the key cannot tell (and some servers answer 403 for a missing
                 * bucket): creating is the only way to find out. An existing bucket of ours answers
                 * BucketAlreadyOwnedByYou, which is success. */
                log_debug("cannot tell whether bucket %s exists (%s); trying to create it.", bucket,
                          strna(err_message()));
        else if (r != -ENOENT)
                return r;
        else
                log_info("Creating bucket %s on remote \"%s\" (create_bucket = yes).", bucket,
                         s3_client_remote(c));
        err_clear();
        r = s3_create_bucket(c, bucket);
        if (r == -EACCES) {
                _cleanup_free_ char *why = xstrdup(strna(err_message()));
                return err_set(r, EX_NOPERM,
                               "AccessDenied on CreateBucket for bucket %s: the key of remote \"%s\" lacks "
                               "s3:CreateBucket; create the bucket or set create_bucket = no (%s)",
                               bucket, s3_client_remote(c), why);
        }
        return r;
}
