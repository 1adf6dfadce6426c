/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "shared/util.h"

static void backup_id_round_trips(void **state) {
        char id[BACKUP_ID_LEN + 1];
        uint64_t u;

        assert_int_equal(backup_id_format(UINT64_C(1795617946) * USEC_PER_SEC, id), 0);
        assert_string_equal(id, "20261125T144546Z");
        assert_int_equal(backup_id_parse(id, &u), 0);
        assert_true(u == UINT64_C(1795617946) * USEC_PER_SEC);
        assert_false(backup_id_valid("20261125T142546"));
        assert_false(backup_id_valid("2026112XT142546Z"));
        assert_false(backup_id_valid("20261125x142546Z"));
}

static void parse_size_accepts_units(void **state) {
        uint64_t v;

        assert_int_equal(parse_size("64M", &v), 0);
        assert_true(v == 64ULL << 20);
        assert_int_equal(parse_size("1GiB", &v), 0);
        assert_true(v == 1ULL << 30);
        assert_int_equal(parse_size("4096", &v), 0);
        assert_true(v == 4096);
        assert_int_equal(parse_size("12 parsecs", &v), -EINVAL);
        assert_int_equal(parse_size("-1", &v), -EINVAL);
}

static void parse_bool_is_strict(void **state) {
        assert_int_equal(parse_bool("yes"), 1);
        assert_int_equal(parse_bool("Off"), 0);
        assert_int_equal(parse_bool("maybe"), -EINVAL);
}

static void edit_distance_counts_edits(void **state) {
        assert_int_equal(edit_distance("retention_days", "retention_day"), 1);
        assert_int_equal(edit_distance("conninfo", "conninfo"), 0);
        assert_int_equal(edit_distance("abc", "xyz"), 3);
        assert_int_equal(edit_distance("", "abc"), 3);
        assert_int_equal(edit_distance("abc", ""), 3);
        assert_int_equal(edit_distance("Status", "status"), 0);
        /* A swap of two neighbours is one edit ("josn" was two, too far for a 4-letter word). */
        assert_int_equal(edit_distance("josn", "json"), 1);
        assert_int_equal(edit_distance("stauts", "status"), 1);
        assert_int_equal(edit_distance("ab", "ba"), 1);
        assert_int_equal(edit_distance("abc", "ca"), 3);
        assert_int_equal(edit_distance("kitten", "sitting"), 3);
}

static void node_names_are_one_safe_path_segment(void **state) {
        assert_true(node_name_valid("k3s-server"));
        assert_true(node_name_valid("node-a.example.org"));
        assert_true(node_name_valid("Node_2"));
        assert_false(node_name_valid(NULL));
        assert_false(node_name_valid(""));
        assert_false(node_name_valid("."));
        assert_false(node_name_valid(".."));
        assert_false(node_name_valid("../x"));
        assert_false(node_name_valid("a/b"));
        assert_false(node_name_valid(".hidden"));
        assert_false(node_name_valid("-n"));
        assert_false(node_name_valid("a b"));
        assert_false(node_name_valid("a\nb"));
        assert_false(node_name_valid("n\xc3\xa9"));
        assert_false(node_name_valid("a+b"));
        /* DEST/<id>/ holds a backup of the shared folder: a node folder must never look like one. */
        assert_false(node_name_valid("20261202T050000Z"));
        char long_name[300];
        memset(long_name, 'x', sizeof long_name);
        long_name[253] = 0;
        assert_true(node_name_valid(long_name));
        long_name[253] = 'x';
        long_name[254] = 0;
        assert_false(node_name_valid(long_name));
}

static void path_join_normalises_slashes(void **state) {
        _cleanup_free_ char *a = path_join("/var/lib/", "/x"), *b = path_join("/a", "");
        assert_string_equal(a, "/var/lib/x");
        assert_string_equal(b, "/a");
}

static void read_only_hint_names_the_directory_to_allow(void **state) {
        _cleanup_free_ char *none = read_only_hint(-EACCES, "/srv/x"), *a = NULL, *b = NULL, *c = NULL;

        assert_string_equal(none, "");
        /* Outside systemd: the first directory that does not exist, or the path when all do. */
        unsetenv("INVOCATION_ID");
        a = read_only_hint(-EROFS, "/proc/skyforge-no-such-dir/postgres");
        assert_non_null(strstr(a, " (/proc/skyforge-no-such-dir is on a read-only file system"));
        /* Under systemd: the drop-in that allows it. */
        setenv("INVOCATION_ID", "0123", 1);
        b = read_only_hint(-EROFS, "/proc/skyforge-no-such-dir/postgres");
        assert_non_null(strstr(b, "create /proc/skyforge-no-such-dir, then `systemctl edit "
                                  "skyforge-backup@.service` and add [Service] "
                                  "ReadWritePaths=/proc/skyforge-no-such-dir)"));
        c = read_only_hint(-EROFS, "/proc");
        assert_non_null(strstr(c, "ReadWritePaths=/proc)"));
        unsetenv("INVOCATION_ID");
}

static void strv_join_puts_the_separator_between(void **state) {
        char *one[] = { (char *) "a", NULL }, *three[] = { (char *) "a", (char *) "", (char *) "ccc", NULL };
        char *empty[] = { NULL };
        _cleanup_free_ char *j1 = strv_join(one, ", "), *j3 = strv_join(three, ", ");

        assert_string_equal(j1, "a");
        assert_string_equal(j3, "a, , ccc");
        assert_null(strv_join(empty, ", "));
        assert_null(strv_join(NULL, ", "));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(backup_id_round_trips),
                cmocka_unit_test(parse_size_accepts_units),
                cmocka_unit_test(parse_bool_is_strict),
                cmocka_unit_test(edit_distance_counts_edits),
                cmocka_unit_test(node_names_are_one_safe_path_segment),
                cmocka_unit_test(path_join_normalises_slashes),
                cmocka_unit_test(strv_join_puts_the_separator_between),
                cmocka_unit_test(read_only_hint_names_the_directory_to_allow),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
