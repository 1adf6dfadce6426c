/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The SigV4 signer against AWS's published S3 examples ("Signature Calculations for the Authorization
 * Header: Transferring Payload in a Single Chunk") and against requests botocore signed for odd keys and
 * query strings (s3-vectors.h, made by gen-s3-vectors.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/s3/sign.h"

#define AWS_ACCESS "AKIAIOSFODNN7EXAMPLE"
#define AWS_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AWS_DATE "20130524T000000Z"
#define AWS_HOST "examplebucket.s3.amazonaws.com"

static void check_sign(const char *method, const char *path, const char *query, const S3Header *h,
                       size_t n, const char *payload, const char *want_cr, const char *want_sts,
                       const char *want_sig) {
        S3Signature sig = {};
        S3SignInput in = {
                .method = method,
                .path = path,
                .query = query,
                .headers = h,
                .n_headers = n,
                .payload_hash = payload,
                .amz_date = AWS_DATE,
                .region = "us-east-1",
                .access_key_id = AWS_ACCESS,
                .secret_access_key = AWS_SECRET,
        };
        _cleanup_free_ char *auth = NULL;

        assert_int_equal(s3_sign(&in, &sig), 0);
        assert_string_equal(sig.canonical_request, want_cr);
        assert_string_equal(sig.string_to_sign, want_sts);
        assert_string_equal(sig.signature, want_sig);
        assert_non_null(
                strstr(sig.authorization, "Credential=" AWS_ACCESS "/20130524/us-east-1/s3/aws4_request,"));
        auth = xasprintf("Signature=%s", want_sig);
        assert_non_null(endswith(sig.authorization, auth));
        s3_signature_done(&sig);
}

static void sign_matches_aws_get_object_with_range(void **state) {
        const S3Header h[] = {
                { "Host", AWS_HOST },
                { "Range", "bytes=0-9" },
                { "x-amz-content-sha256", S3_EMPTY_SHA256 },
                { "x-amz-date", AWS_DATE },
        };
        check_sign("GET", "/test.txt", "", h, ELEMENTSOF(h), S3_EMPTY_SHA256,
                   "GET\n/test.txt\n\n"
                   "host:examplebucket.s3.amazonaws.com\n"
                   "range:bytes=0-9\n"
                   "x-amz-content-sha256:" S3_EMPTY_SHA256 "\n"
                   "x-amz-date:20130524T000000Z\n\n"
                   "host;range;x-amz-content-sha256;x-amz-date\n" S3_EMPTY_SHA256,
                   "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                   "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
                   "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        /* The full header as in the example. */
        S3Signature sig = {};
        S3SignInput in = { "GET", "/test.txt", "", h, ELEMENTSOF(h), S3_EMPTY_SHA256, AWS_DATE, "us-east-1",
                           AWS_ACCESS, AWS_SECRET };
        assert_int_equal(s3_sign(&in, &sig), 0);
        assert_string_equal(sig.authorization,
                            "AWS4-HMAC-SHA256 "
                            "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        s3_signature_done(&sig);
}

static void sign_matches_aws_put_object(void **state) {
        char payload[65];
        _cleanup_free_ char *path = NULL;

        s3_sha256_hex("Welcome to Amazon S3.", strlen("Welcome to Amazon S3."), payload);
        assert_string_equal(payload, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        const S3Header h[] = {
                { "Host", AWS_HOST },
                { "Date", "Fri, 24 May 2013 00:00:00 GMT" },
                { "x-amz-date", AWS_DATE },
                { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
                { "x-amz-content-sha256", payload },
        };
        path = s3_uri_encode("/test$file.text", true);
        assert_string_equal(path, "/test%24file.text");
        check_sign("PUT", path, "", h, ELEMENTSOF(h), payload,
                   "PUT\n/test%24file.text\n\n"
                   "date:Fri, 24 May 2013 00:00:00 GMT\n"
                   "host:examplebucket.s3.amazonaws.com\n"
                   "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
                   "x-amz-date:20130524T000000Z\n"
                   "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
                   "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
                   "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                   "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                   "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
                   "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void sign_matches_aws_get_bucket_lifecycle(void **state) {
        const S3Param q[] = { { "lifecycle", "" } };
        _cleanup_free_ char *query = s3_canonical_query(q, ELEMENTSOF(q));
        const S3Header h[] = {
                { "Host", AWS_HOST },
                { "x-amz-date", AWS_DATE },
                { "x-amz-content-sha256", S3_EMPTY_SHA256 },
        };
        assert_string_equal(query, "lifecycle=");
        check_sign("GET", "/", query, h, ELEMENTSOF(h), S3_EMPTY_SHA256,
                   "GET\n/\nlifecycle=\n"
                   "host:examplebucket.s3.amazonaws.com\n"
                   "x-amz-content-sha256:" S3_EMPTY_SHA256 "\n"
                   "x-amz-date:20130524T000000Z\n\n"
                   "host;x-amz-content-sha256;x-amz-date\n" S3_EMPTY_SHA256,
                   "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                   "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
                   "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void sign_matches_aws_list_objects(void **state) {
        /* Given out of order on purpose: the canonical query sorts them. */
        const S3Param q[] = { { "prefix", "J" }, { "max-keys", "2" } };
        _cleanup_free_ char *query = s3_canonical_query(q, ELEMENTSOF(q));
        const S3Header h[] = {
                { "Host", AWS_HOST },
                { "x-amz-date", AWS_DATE },
                { "x-amz-content-sha256", S3_EMPTY_SHA256 },
        };
        assert_string_equal(query, "max-keys=2&prefix=J");
        check_sign("GET", "/", query, h, ELEMENTSOF(h), S3_EMPTY_SHA256,
                   "GET\n/\nmax-keys=2&prefix=J\n"
                   "host:examplebucket.s3.amazonaws.com\n"
                   "x-amz-content-sha256:" S3_EMPTY_SHA256 "\n"
                   "x-amz-date:20130524T000000Z\n\n"
                   "host;x-amz-content-sha256;x-amz-date\n" S3_EMPTY_SHA256,
                   "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                   "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
                   "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

typedef struct S3Vector {
        const char *name, *method, *host, *bucket, *key;
        S3Param params[4];
        size_t n_params;
        S3Header headers[4];
        size_t n_headers;
        const char *body;
        size_t body_len;
        bool signed_payload;
        const char *path, *query, *canonical_request, *signature;
} S3Vector;

#include "s3-vectors.h"

static void sign_matches_botocore_for_odd_keys_and_queries(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(s3_vectors); i++) {
                const S3Vector *v = &s3_vectors[i];
                _cleanup_free_ char *path = NULL, *query = NULL;
                S3Header h[8];
                size_t n = 0;
                char payload[65];
                S3Signature sig = {};

                print_message("vector %s\n", v->name);
                /* The client's own path builder: what it signs is what botocore signs. */
                path = v->bucket ? s3_request_uri("", v->bucket, v->key) : xstrdup("/");
                assert_string_equal(path, v->path);
                query = s3_canonical_query(v->params, v->n_params);
                assert_string_equal(query, v->query);

                if (v->signed_payload)
                        s3_sha256_hex(v->body, v->body_len, payload);
                else
                        strcpy(payload, S3_UNSIGNED_PAYLOAD);
                h[n++] = (S3Header){ "host", v->host };
                h[n++] = (S3Header){ "x-amz-date", S3V_DATE };
                h[n++] = (S3Header){ "x-amz-content-sha256", payload };
                for (size_t j = 0; j < v->n_headers; j++)
                        h[n++] = v->headers[j];

                S3SignInput in = { v->method, path, query, h, n, payload, S3V_DATE, "us-east-1", S3V_ACCESS,
                                   S3V_SECRET };
                assert_int_equal(s3_sign(&in, &sig), 0);
                assert_string_equal(sig.canonical_request, v->canonical_request);
                assert_string_equal(sig.signature, v->signature);
                s3_signature_done(&sig);
        }
}

static void uri_encode_follows_sigv4_rules(void **state) {
        _cleanup_free_ char *a = s3_uri_encode("a b/c~d-e_f.g+h%i&j=k#l", true);
        _cleanup_free_ char *b = s3_uri_encode("a b/c", false);
        _cleanup_free_ char *c = s3_uri_encode("\xc3\xbc", true);

        assert_string_equal(a, "a%20b/c~d-e_f.g%2Bh%25i%26j%3Dk%23l");
        assert_string_equal(b, "a%20b%2Fc");
        assert_string_equal(c, "%C3%BC");
}

static void request_uri_never_lets_a_name_change_bucket_or_prefix(void **state) {
        static const struct {
                const char *base, *bucket, *key, *uri;
        } cases[] = {
                /* Key segments are kept literally, never resolved: the server sees the same key. */
                { "", "offsite", "off/src/../../../victim3/k", "/offsite/off/src/../../../victim3/k" },
                { "", "b", "a/./b", "/b/a/./b" },
                { "", "b", "a/../b", "/b/a/../b" },
                { "", "b", "x/.", "/b/x/." },
                { "", "b", "a//b", "/b/a//b" },
                { "", "b", "/lead", "/b//lead" },
                { "", "b", "..", "/b/.." },
                { "", "b", "?x#y%z", "/b/%3Fx%23y%25z" },
                /* A bucket is one segment whatever it holds. */
                { "", "../victim", "k", "/..%2Fvictim/k" },
                { "", "a/b", NULL, "/a%2Fb" },
                { "", "b?list-type=2", NULL, "/b%3Flist-type%3D2" },
                /* The endpoint's path comes first; virtual-host requests have no bucket segment. */
                { "/s3", "b", "k/../l", "/s3/b/k/../l" },
                { "", NULL, "a/../b", "/a/../b" },
                { "/s3", NULL, NULL, "/s3/" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *u = s3_request_uri(cases[i].base, cases[i].bucket, cases[i].key);
                print_message("%s %s %s\n", cases[i].base, strna(cases[i].bucket), strna(cases[i].key));
                assert_string_equal(u, cases[i].uri);
        }
}

static void bucket_names_that_are_not_one_segment_are_unsafe(void **state) {
        assert_true(s3_bucket_name_safe("skyforge-backups"));
        assert_true(s3_bucket_name_safe("a.b-c_D")); /* legacy names still address one bucket */
        assert_true(s3_bucket_name_safe("a..b"));
        assert_false(s3_bucket_name_safe(NULL));
        assert_false(s3_bucket_name_safe(""));
        assert_false(s3_bucket_name_safe("."));
        assert_false(s3_bucket_name_safe(".."));
        assert_false(s3_bucket_name_safe("../victim"));
        assert_false(s3_bucket_name_safe("a/b"));
        assert_false(s3_bucket_name_safe("a b"));
        assert_false(s3_bucket_name_safe("a%2Fb"));
        assert_false(s3_bucket_name_safe("a?b"));
        assert_false(s3_bucket_name_safe("a~b"));
        assert_false(s3_bucket_name_safe("evil.com:80@x"));
}

static void sign_rejects_bad_date(void **state) {
        const S3Header h[] = { { "host", "x" } };
        S3SignInput in = { "GET", "/", "", h, 1, S3_EMPTY_SHA256, "2013", "us-east-1", "a", "b" };
        S3Signature sig = {};

        assert_int_equal(s3_sign(&in, &sig), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sign_matches_aws_get_object_with_range),
                cmocka_unit_test(sign_matches_aws_put_object),
                cmocka_unit_test(sign_matches_aws_get_bucket_lifecycle),
                cmocka_unit_test(sign_matches_aws_list_objects),
                cmocka_unit_test(sign_matches_botocore_for_odd_keys_and_queries),
                cmocka_unit_test(uri_encode_follows_sigv4_rules),
                cmocka_unit_test(request_uri_never_lets_a_name_change_bucket_or_prefix),
                cmocka_unit_test(bucket_names_that_are_not_one_segment_are_unsafe),
                cmocka_unit_test(sign_rejects_bad_date),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
