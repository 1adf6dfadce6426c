/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sysexits.h>

#include "log/log.h"
#include "store/store.h"

static void parse_remote(const char *s, const char *remote, const char *bucket, const char *prefix) {
        Location l = {};

        assert_int_equal(location_parse(s, &l), 0);
        assert_int_equal(l.type, LOCATION_REMOTE);
        assert_string_equal(l.remote, remote);
        assert_string_equal(l.bucket, bucket);
        assert_string_equal(l.prefix, prefix);
        assert_null(l.path);
        location_done(&l);
}

static void location_remote_forms_normalise_prefix(void **state) {
        parse_remote("minio:skyforge-backups/postgres/", "minio", "skyforge-backups", "postgres/");
        parse_remote("minio:skyforge-backups/postgres", "minio", "skyforge-backups", "postgres/");
        parse_remote("minio:skyforge-backups/", "minio", "skyforge-backups", "");
        parse_remote("minio:skyforge-backups", "minio", "skyforge-backups", "");
        parse_remote("off_site-2:a.b-c/x/y/z", "off_site-2", "a.b-c", "x/y/z/");
}

static void location_local_path_drops_trailing_slash(void **state) {
        Location l = {};

        assert_int_equal(location_parse("/var/lib/skyforge-agent/backups/postgres/", &l), 0);
        assert_int_equal(l.type, LOCATION_LOCAL);
        assert_string_equal(l.path, "/var/lib/skyforge-agent/backups/postgres");
        assert_null(l.remote);
        location_done(&l);

        assert_int_equal(location_parse("/", &l), 0);
        assert_string_equal(l.path, "/");
        location_done(&l);
        location_done(&l); /* idempotent */
}

static void assert_rejected(const char *s, const char *needle) {
        Location l = {};

        err_clear();
        assert_int_equal(location_parse(s, &l), -EINVAL);
        assert_non_null(err_message());
        if (!strstr(err_message(), needle))
                fail_msg("'%s': message '%s' lacks '%s'", s, err_message(), needle);
        assert_int_equal(err_exit_code(-EINVAL), EX_CONFIG);
        assert_null(l.path);
        assert_null(l.remote);
}

static void location_rejects_bad_syntax(void **state) {
        assert_rejected("", "empty location");
        assert_rejected("backups/postgres", "absolute path");
        assert_rejected("s3://bucket/x", "is a URL");
        assert_rejected(":bucket/x", "not a remote name");
        assert_rejected("MinIO:bucket/x", "not a remote name");
        assert_rejected("minio:", "names no bucket");
        assert_rejected("minio:/x", "names no bucket");
        assert_rejected("minio:ab/x", "not a valid bucket name");
        assert_rejected("minio:Backups/x", "not a valid bucket name");
        assert_rejected("minio:bucket_x/", "not a valid bucket name");
        assert_rejected("minio:-bucket/", "not a valid bucket name");
        assert_rejected("minio:a..b/", "not a valid bucket name");
        assert_rejected("minio:bucket//x", "empty path segment");
        assert_rejected("minio:bucket/a/../b", "'..'");
        assert_rejected("minio:bucket/./b", "'.'");
}

static void location_bucket_name_limits(void **state) {
        char name[80];

        assert_true(location_bucket_name_valid("abc"));
        assert_false(location_bucket_name_valid("ab"));
        memset(name, 'a', 63);
        name[63] = 0;
        assert_true(location_bucket_name_valid(name));
        name[63] = 'a';
        name[64] = 0;
        assert_false(location_bucket_name_valid(name));
        assert_true(location_remote_name_valid("minio"));
        assert_false(location_remote_name_valid("-minio"));
        assert_false(location_remote_name_valid("mi.nio"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(location_remote_forms_normalise_prefix),
                cmocka_unit_test(location_local_path_drops_trailing_slash),
                cmocka_unit_test(location_rejects_bad_syntax),
                cmocka_unit_test(location_bucket_name_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
