/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "jobs/mirror.h"
#include "shared/progress.h"

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
        char **md = mirror_metadata(src, "abc", "0123");

        assert_int_equal(strv_length(md), 6);
        assert_string_equal(md[0], "owner");
        assert_string_equal(md[1], "ops");
        assert_string_equal(md[2], "skyforge-etag");
        assert_string_equal(md[3], "abc");
        assert_string_equal(md[4], "skyforge-sha256");
        assert_string_equal(md[5], "0123");
        strv_free(md);

        md = mirror_metadata(NULL, "e-2", NULL);
        assert_int_equal(strv_length(md), 2);
        assert_string_equal(md[1], "e-2");
        strv_free(md);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(filters_select_by_key_or_bucket_key),
                cmocka_unit_test(metadata_replaces_our_names_and_keeps_the_rest),
                cmocka_unit_test(progress_shows_objects_and_bytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
