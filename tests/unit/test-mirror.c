/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "jobs/mirror-record.h"
#include "jobs/mirror.h"
#include "sys/progress.h"
#include "store/s3/s3.h"

static void filters_select_by_key_or_bucket_key(void **state) {
        char *inc[] = { "*.zst", "logs/*", NULL }, *exc[] = { "*/tmp/*", "skip-*", NULL };
        char *all[] = { NULL };

        assert_true(mirror_key_selected(NULL, NULL, "b", "anything"));
        assert_true(mirror_key_selected(all, all, "b", "anything"));
        assert_true(mirror_key_selected(inc, NULL, "b", "a/b/c.zst")); /* * crosses / */
        assert_false(mirror_key_selected(inc, NULL, "b", "a/b/c.gz"));
        assert_true(mirror_key_selected(inc, NULL, "logs", "x")); /* bucket/key form */
        assert_false(mirror_key_selected(inc, exc, "b", "x/tmp/y.zst"));
        assert_false(mirror_key_selected(NULL, exc, "b", "skip-me"));
        assert_false(mirror_key_selected(NULL, exc, "skip-bucket", "key"));
        assert_true(mirror_key_selected(NULL, exc, "b", "keep/me"));
}

static void metadata_replaces_our_names_and_keeps_the_rest(void **state) {
        char *src[] = { "owner", "ops", "skyforge-etag", "old", "skyforge-sha256", "oldsha", NULL };
        char **md = mirror_metadata(src, true, "abc", "0123");

        assert_int_equal(strv_length(md), 6);
        assert_string_equal(md[0], "owner");
        assert_string_equal(md[1], "ops");
        assert_string_equal(md[2], "skyforge-etag");
        assert_string_equal(md[3], "abc");
        assert_string_equal(md[4], "skyforge-sha256");
        assert_string_equal(md[5], "0123");
        strv_free(md);

        md = mirror_metadata(NULL, true, "e-2", NULL);
        assert_int_equal(strv_length(md), 2);
        assert_string_equal(md[1], "e-2");
        strv_free(md);
}

static void restore_writes_no_bookkeeping_and_drops_ours(void **state) {
        char *src[] = { "owner", "ops", "skyforge-etag", "old", "skyforge-sha256", "oldsha", NULL };
        char **md = mirror_metadata(src, false, "abc", "0123");

        assert_int_equal(strv_length(md), 2);
        assert_string_equal(md[0], "owner");
        assert_string_equal(md[1], "ops");
        strv_free(md);
}

/* S3 counts names (without x-amz-meta-) and values; a copy must stay within 2048 bytes. */
static void bookkeeping_stays_within_the_metadata_limit(void **state) {
        static const char etag[] = "0123456789abcdef0123456789abcdef"; /* 32 */
        static const char sha[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        const size_t bk_etag = strlen("skyforge-etag") + 32, bk_sha = strlen("skyforge-sha256") + 64;
        char value[2100];
        char *src[] = { "big", value, NULL };
        char **md;

        /* The object: 1,993 bytes of metadata grew to 2,117 with both records. */
        memset(value, 'v', sizeof value);
        value[1993 - 3] = 0;
        assert_int_equal(s3_metadata_size(src), 1993);
        assert_int_equal(1993 + bk_etag + bk_sha, 2117);
        md = mirror_metadata(src, true, etag, sha);
        assert_true(s3_metadata_size(md) <= S3_METADATA_MAX);
        assert_int_equal(strv_length(md), 4); /* the ETag record fits, the SHA-256 does not */
        assert_string_equal(md[2], "skyforge-etag");
        strv_free(md);

        /* Exactly at the limit with both. */
        value[S3_METADATA_MAX - 3 - bk_etag - bk_sha] = 0;
        md = mirror_metadata(src, true, etag, sha);
        assert_int_equal(s3_metadata_size(md), S3_METADATA_MAX);
        assert_int_equal(strv_length(md), 6);
        strv_free(md);

        /* No room even for the ETag record: none, and the object compares by size and ETag. */
        memset(value, 'v', sizeof value - 1);
        value[S3_METADATA_MAX - 3 - bk_etag + 1] = 0;
        md = mirror_metadata(src, true, etag, sha);
        assert_int_equal(strv_length(md), 2);
        assert_int_equal(s3_metadata_size(md), S3_METADATA_MAX - bk_etag + 1);
        strv_free(md);

        /* More than S3 takes at the source already: passed on as is (the client refuses to send it). */
        memset(value, 'v', sizeof value - 1);
        value[sizeof value - 1] = 0;
        md = mirror_metadata(src, true, etag, sha);
        assert_int_equal(strv_length(md), 2);
        strv_free(md);
}

/* The decision needs no request: equal versions skip, other sizes copy, same size and another ETag asks
 * the recorded source ETag (a multipart copy), and a side without an ETag compares by time. */
static void decide_needs_no_request_for_unchanged_objects(void **state) {
        const uint64_t t = 1700000000ULL * 1000000 + 123456;
        MirrorEntry s3 = { 10, t, "abc" }, same = { 10, t + 5000000, "abc" }, multi = { 10, t, "def-2" };
        MirrorEntry bigger = { 11, t, "abc" }, file = { 10, t, NULL };
        MirrorEntry uploaded_after = { 10, t + 1000000, "md5" }, uploaded_before = { 10, t - 2000000, "md5" };
        MirrorEntry same_second = { 10, t - 100000, "md5" };
        _cleanup_free_ char *v = mirror_version(NULL, 10, t);
        MirrorEntry local_copy = { 10, 0, v }, local_plain = { 10, t / 1000000 * 1000000, NULL };

        assert_int_equal(mirror_decide(&s3, NULL), MIRROR_COPY);
        assert_int_equal(mirror_decide(&s3, &same), MIRROR_SKIP);
        assert_int_equal(mirror_decide(&s3, &bigger), MIRROR_COPY);
        assert_int_equal(mirror_decide(&s3, &multi), MIRROR_CHECK);
        /* A local destination lists with the ETag it recorded. */
        assert_int_equal(mirror_decide(&multi, &(MirrorEntry){ 10, 0, "def-2" }), MIRROR_SKIP);
        /* A local source file without an ETag: current when copied after the second it changed; within
         * that second the recorded version decides. */
        assert_int_equal(mirror_decide(&file, &uploaded_after), MIRROR_SKIP);
        assert_int_equal(mirror_decide(&file, &same_second), MIRROR_CHECK);
        assert_int_equal(mirror_decide(&file, &uploaded_before), MIRROR_CHECK);
        assert_int_equal(mirror_decide(&file, &local_copy), MIRROR_SKIP);
        /* A local copy without extended attributes keeps the source's time (S3's, in seconds). */
        assert_int_equal(mirror_decide(&s3, &local_plain), MIRROR_SKIP);
        assert_string_equal(v, "size-10-mtime-1700000000123456");
        free(TAKE_PTR(v));
        v = mirror_version("e-1", 10, t);
        assert_string_equal(v, "e-1");
}

/* Which ETags name a multipart object, and which part sizes rebuild one: a copy in the same parts gets
 * the same ETag, so later runs need no request for it. */
static void multipart_etags_and_their_part_layouts(void **state) {
        const uint64_t MiB = 1024 * 1024;

        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789ABCDEF-8"), 8);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef-1"), 1);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef-10000"), 10000);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef-10001"), 0);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef"), 0);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef-0"), 0);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef-"), 0);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef-8x"), 0);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdef-+8"), 0);
        assert_int_equal(mirror_etag_parts("0123456789abcdef0123456789abcdeg-8"), 0);
        assert_int_equal(mirror_etag_parts("abc-2"), 0);
        assert_int_equal(mirror_etag_parts("size-10-mtime-5"), 0);
        assert_int_equal(mirror_etag_parts(NULL), 0);

        assert_true(mirror_part_layout_valid(64 * MiB, 8 * MiB, 8));
        assert_true(mirror_part_layout_valid(64 * MiB + 1, 8 * MiB, 9));
        assert_true(mirror_part_layout_valid(12 * MiB, 5 * MiB, 3));
        assert_true(mirror_part_layout_valid(100, 100, 1)); /* one part may be small */
        assert_false(mirror_part_layout_valid(64 * MiB, 8 * MiB, 9));
        assert_false(mirror_part_layout_valid(12 * MiB, 6 * MiB, 3)); /* parts of other sizes */
        assert_false(mirror_part_layout_valid(8 * MiB, 4 * MiB, 2));  /* below S3's 5 MiB */
        assert_false(mirror_part_layout_valid(0, 0, 1));
        assert_false(mirror_part_layout_valid(100, 0, 1));
        assert_false(mirror_part_layout_valid(6ULL << 30, 6ULL << 30, 1)); /* past 5 GiB */
        assert_false(mirror_part_layout_valid(10001 * 5 * MiB, 5 * MiB, 10001));
}

static void progress_shows_objects_and_bytes(void **state) {
        Progress p;
        char *s;

        progress_init(&p, "mirroring", 0, NULL, NULL);
        p.tty = p.notify = false;
        p.count_objects = true;
        p.objects_done = 3;
        p.objects_total = 10;
        p.done = 2048;
        p.total_estimate = 4096;
        s = progress_format(&p, p.start_usec);
        assert_non_null(strstr(s, "mirroring: 3/10 objects, 2.0 KiB/4.0 KiB"));
        free(s);
        progress_done(&p);
}

static char *records_path(void) {
        char dir[] = "/tmp/test-mirror-records.XXXXXX";

        assert_non_null(mkdtemp(dir));
        return path_join(dir, "mirror-records");
}

static void records_remove(char *path) {
        unlink(path);
        *strrchr(path, '/') = '\0';
        rmdir(path);
        free(path);
}

static void records_match_only_both_etags_as_noted(void **state) {
        char *path = records_path();
        MirrorRecords *r = mirror_records_load(path, "offsite:b/"); /* no file yet: empty */

        assert_false(mirror_records_match(r, "bk", "k", "aaa-2", "bbb"));
        mirror_records_note(r, "bk", "k", "aaa-2", "bbb");
        mirror_records_note(r, "bk", "same", "ccc", "ccc"); /* equal ETags need no record */
        mirror_records_note(r, "bk", "empty", "", "bbb");
        mirror_records_note(r, "bk", "odd", "a b\n\"c\"", "bbb"); /* any bytes: only its digest is kept */
        assert_true(mirror_records_match(r, "bk", "k", "aaa-2", "bbb"));
        assert_false(mirror_records_match(r, "bk", "k", "aaa-3", "bbb")); /* the source changed */
        assert_false(mirror_records_match(r, "bk", "k", "aaa-2", "bbc")); /* the copy changed */
        assert_false(mirror_records_match(r, "bk2", "k", "aaa-2", "bbb"));
        assert_false(mirror_records_match(r, "b", "kk", "aaa-2", "bbb"));
        assert_false(mirror_records_match(r, "bk", "same", "ccc", "ccc"));
        assert_false(mirror_records_match(r, "bk", "empty", "", "bbb"));
        assert_true(mirror_records_match(r, "bk", "odd", "a b\n\"c\"", "bbb"));
        assert_int_equal(mirror_records_save(r), 0);
        mirror_records_free(r);

        /* Read back; another destination's records never answer. */
        r = mirror_records_load(path, "offsite:b/");
        assert_true(mirror_records_match(r, "bk", "k", "aaa-2", "bbb"));
        mirror_records_free(r);
        r = mirror_records_load(path, "offsite:c/");
        assert_false(mirror_records_match(r, "bk", "k", "aaa-2", "bbb"));
        mirror_records_free(r);
        records_remove(path);
}

static void records_of_a_listed_bucket_keep_only_what_the_run_met(void **state) {
        char *path = records_path();
        MirrorRecords *r = mirror_records_load(path, "d");

        for (unsigned i = 0; i < 3000; i++) { /* past the first table size */
                char key[32];
                snprintf(key, sizeof key, "key-%u", i);
                mirror_records_note(r, i % 2 ? "odd" : "even", key, "v-2", "e");
        }
        assert_int_equal(mirror_records_save(r), 0);
        mirror_records_free(r);

        r = mirror_records_load(path, "d");
        assert_true(mirror_records_match(r, "even", "key-0", "v-2", "e"));
        assert_true(mirror_records_match(r, "odd", "key-1", "v-2", "e"));
        mirror_records_listed(r, "even"); /* key-2, key-4... were not met: gone or changed */
        assert_int_equal(mirror_records_save(r), 0);
        mirror_records_free(r);

        r = mirror_records_load(path, "d");
        assert_true(mirror_records_match(r, "even", "key-0", "v-2", "e"));
        assert_false(mirror_records_match(r, "even", "key-2", "v-2", "e"));
        assert_true(mirror_records_match(r, "odd", "key-1", "v-2", "e"));
        assert_true(mirror_records_match(r, "odd", "key-2999", "v-2", "e")); /* not listed: all kept */
        mirror_records_free(r);
        records_remove(path);
}

static void damaged_records_are_left_out(void **state) {
        char *path = records_path();
        MirrorRecords *r = mirror_records_load(path, "d");
        _cleanup_free_ char *text = NULL, *bad = NULL;
        char *good;

        mirror_records_note(r, "b", "k", "v-2", "e");
        assert_int_equal(mirror_records_save(r), 0);
        mirror_records_free(r);
        assert_true(read_file_string(path, 4096, &text) >= 0);
        good = strchr(text, '\n') + 1;
        /* The header, a line too long, one not hex, the good one, one with a forbidden byte, the good
         * one cut. */
        bad = xasprintf("%.*s%0*d\nzz%s%s%.*s\x01\n%.*s", (int) (good - text), text, 5000, 0, good, good,
                        (int) strlen(good) - 2, good, (int) strlen(good) - 1, good);
        assert_int_equal(write_file_atomic(path, bad, strlen(bad), 0600), 0);
        r = mirror_records_load(path, "d");
        assert_true(mirror_records_match(r, "b", "k", "v-2", "e")); /* the one good line */
        mirror_records_free(r);

        /* A line that starts with a NUL byte, then the good one. */
        free(bad);
        bad = xasprintf("%.*s@x\n%s", (int) (good - text), text, good);
        *strchr(bad, '@') = '\0';
        assert_int_equal(write_file_atomic(path, bad, (good - text) + 3 + strlen(good), 0600), 0);
        r = mirror_records_load(path, "d");
        assert_true(mirror_records_match(r, "b", "k", "v-2", "e"));
        mirror_records_free(r);

        assert_int_equal(write_file_atomic(path, "not records\n", 12, 0600), 0);
        r = mirror_records_load(path, "d");
        assert_false(mirror_records_match(r, "b", "k", "v-2", "e"));
        mirror_records_free(r);
        records_remove(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(filters_select_by_key_or_bucket_key),
                cmocka_unit_test(metadata_replaces_our_names_and_keeps_the_rest),
                cmocka_unit_test(restore_writes_no_bookkeeping_and_drops_ours),
                cmocka_unit_test(bookkeeping_stays_within_the_metadata_limit),
                cmocka_unit_test(decide_needs_no_request_for_unchanged_objects),
                cmocka_unit_test(multipart_etags_and_their_part_layouts),
                cmocka_unit_test(progress_shows_objects_and_bytes),
                cmocka_unit_test(records_match_only_both_etags_as_noted),
                cmocka_unit_test(records_of_a_listed_bucket_keep_only_what_the_run_met),
                cmocka_unit_test(damaged_records_are_left_out),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
