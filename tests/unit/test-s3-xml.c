/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The streaming XML reader under every S3 reply: element paths as S3 replies nest them, and the bounds a
 * hostile reply meets (depth, name length), in time linear in the document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "log/log.h"
#include "store/s3/s3-internal.h"

typedef struct Seen {
        char **paths; /* "path=text" */
        size_t n;
} Seen;

static int record(const char *path, const char *text, void *userdata) {
        Seen *s = userdata;

        strv_push(&s->paths, xasprintf("%s=%s", path, text));
        s->n++;
        return 0;
}

static int count(const char *path, const char *text, void *userdata) {
        (*(size_t *) userdata)++;
        return 0;
}

static void test_paths_follow_nesting(void **state) {
        const char *doc =
                "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"" S3_XMLNS "\"><Name>b</Name>"
                "<Contents><Key>k1</Key><Size>3</Size></Contents><Contents><Key>k2</Key></Contents>"
                "<IsTruncated>false</IsTruncated></ListBucketResult>";
        Seen s = {};

        assert_int_equal(s3_xml_parse(doc, strlen(doc), record, &s), 0);
        const char *want[] = { "/ListBucketResult/Name=b",
                               "/ListBucketResult/Contents/Key=k1",
                               "/ListBucketResult/Contents/Size=3",
                               "/ListBucketResult/Contents=",
                               "/ListBucketResult/Contents/Key=k2",
                               "/ListBucketResult/Contents=",
                               "/ListBucketResult/IsTruncated=false",
                               "/ListBucketResult=" };
        assert_int_equal(s.n, ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                assert_string_equal(s.paths[i], want[i]);
        strv_free(s.paths);
}

static char *nested(size_t depth) {
        char *doc = xmalloc(depth * 7 + 1), *p = doc;

        for (size_t i = 0; i < depth; i++)
                p = stpcpy(p, "<a>");
        for (size_t i = 0; i < depth; i++)
                p = stpcpy(p, "</a>");
        return doc;
}

static void test_depth_32_is_read_33_refused(void **state) {
        _cleanup_free_ char *ok = nested(32), *deep = nested(33);
        size_t n = 0;

        assert_int_equal(s3_xml_parse(ok, strlen(ok), count, &n), 0);
        assert_int_equal(n, 32);
        err_clear();
        assert_int_equal(s3_xml_parse(deep, strlen(deep), count, &n), -EBADMSG);
        assert_string_equal(err_message(), "it nests elements deeper than 32 levels");
}

/* 200,000 levels: refused at level 33, without walking the rest (the old reader grew a path string and
 * searched it backwards at every end tag: quadratic, minutes for this document). */
static void test_200000_deep_is_refused(void **state) {
        _cleanup_free_ char *deep = nested(200000);
        size_t n = 0;

        assert_int_equal(s3_xml_parse(deep, strlen(deep), count, &n), -EBADMSG);
        assert_int_equal(n, 0);
}

static void test_long_element_name_is_refused(void **state) {
        _cleanup_free_ char *name = xmalloc(1001), *doc = NULL;

        memset(name, 'n', 1000);
        name[1000] = 0;
        doc = xasprintf("<R><%s>x</%s></R>", name, name);
        assert_int_equal(s3_xml_parse(doc, strlen(doc), count, &(size_t){ 0 }), -EBADMSG);
        assert_string_equal(err_message(), "it has an element name longer than 256 bytes");
}

static void test_malformed_names_the_expat_error(void **state) {
        const char *doc = "<R><a></b></R>";

        assert_int_equal(s3_xml_parse(doc, strlen(doc), count, &(size_t){ 0 }), -EBADMSG);
        assert_string_equal(err_message(), "mismatched tag");
}

/* Many siblings, fed in small pieces as a listing arrives: every element seen once, the path back to the
 * parent after each. */
static void test_many_siblings_fed_in_pieces(void **state) {
        _cleanup_(s3_xml_freep) S3Xml *x = NULL;
        size_t n = 0;
        const char *head = "<ListBucketResult>", *item = "<Contents><Key>k</Key></Contents>",
                   *tail = "</ListBucketResult>";

        x = s3_xml_new(count, &n);
        assert_int_equal(s3_xml_feed(x, head, strlen(head), false), 0);
        for (size_t i = 0; i < 100000; i++)
                assert_int_equal(s3_xml_feed(x, item, strlen(item), false), 0);
        assert_int_equal(s3_xml_feed(x, tail, strlen(tail), true), 0);
        assert_int_equal(n, 100000 * 2 + 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_paths_follow_nesting),
                cmocka_unit_test(test_depth_32_is_read_33_refused),
                cmocka_unit_test(test_200000_deep_is_refused),
                cmocka_unit_test(test_long_element_name_is_refused),
                cmocka_unit_test(test_malformed_names_the_expat_error),
                cmocka_unit_test(test_many_siblings_fed_in_pieces),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
