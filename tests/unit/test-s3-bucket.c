/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The IAM action each S3 request needs, named in AccessDenied messages instead of "bucket access". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/s3/s3-internal.h"

static const char *action(const char *method, const char *bucket, const char *key, const char *param,
                          const char *header) {
        S3Param p = { .name = param, .value = "" };
        S3Header h = { .name = header, .value = "b/k" };
        S3Request req = { .method = method,
                          .bucket = bucket,
                          .key = key,
                          .params = param ? &p : NULL,
                          .n_params = param ? 1 : 0,
                          .headers = header ? &h : NULL,
                          .n_headers = header ? 1 : 0 };
        return s3_request_action(&req);
}

static void s3_actions_of_requests(void **state) {
        assert_string_equal(action("GET", NULL, NULL, NULL, NULL), "s3:ListAllMyBuckets");
        assert_string_equal(action("PUT", "b", NULL, NULL, NULL), "s3:CreateBucket");
        assert_string_equal(action("HEAD", "b", NULL, NULL, NULL), "s3:ListBucket");
        assert_string_equal(action("GET", "b", NULL, "list-type", NULL), "s3:ListBucket");
        assert_string_equal(action("GET", "b", NULL, "uploads", NULL), "s3:ListBucketMultipartUploads");
        assert_string_equal(action("POST", "b", NULL, "delete", NULL), "s3:DeleteObject");
        assert_string_equal(action("GET", "b", "k", NULL, NULL), "s3:GetObject");
        assert_string_equal(action("HEAD", "b", "k", NULL, NULL), "s3:GetObject");
        assert_string_equal(action("GET", "b", "k", "uploadId", NULL), "s3:ListMultipartUploadParts");
        assert_string_equal(action("PUT", "b", "k", NULL, NULL), "s3:PutObject");
        assert_string_equal(action("PUT", "b", "k", "partNumber", NULL), "s3:PutObject");
        assert_string_equal(action("POST", "b", "k", "uploads", NULL), "s3:PutObject");
        assert_string_equal(action("PUT", "b", "k", NULL, "X-Amz-Copy-Source"),
                            "s3:PutObject (and s3:GetObject on the source)");
        assert_string_equal(action("DELETE", "b", "k", NULL, NULL), "s3:DeleteObject");
        assert_string_equal(action("DELETE", "b", "k", "uploadId", NULL), "s3:AbortMultipartUpload");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(s3_actions_of_requests),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
