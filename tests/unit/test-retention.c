/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/retention.h"

#define DAY USEC_PER_DAY
static const uint64_t NOW = UINT64_C(1795617946) * USEC_PER_SEC;

static void fill(RetentionItem *items, const unsigned *ages_days, size_t n) {
        for (size_t i = 0; i < n; i++)
                items[i] = (RetentionItem){ .id = "x", .time_usec = NOW - ages_days[i] * DAY };
}

static void retention_removes_only_older_than_retention_days(void **state) {
        const unsigned ages[] = { 0, 1, 10, 29, 30, 31, 45, 90 };
        RetentionItem items[ELEMENTSOF(ages)];

        fill(items, ages, ELEMENTSOF(ages));
        assert_int_equal(retention_select(items, ELEMENTSOF(ages), NOW, 30, 3), 3);
        for (size_t i = 0; i < ELEMENTSOF(ages); i++)
                assert_int_equal(items[i].remove, ages[i] > 30);
        assert_non_null(strstr(items[5].reason, "31 days old, older than retention_days = 30"));
        assert_non_null(strstr(items[3].reason, "within 30 days"));
}

static void retention_keeps_keep_min_when_all_are_old(void **state) {
        const unsigned ages[] = { 40, 50, 60, 70, 80 };
        RetentionItem items[ELEMENTSOF(ages)];

        fill(items, ages, ELEMENTSOF(ages));
        assert_int_equal(retention_select(items, ELEMENTSOF(ages), NOW, 30, 3), 2);
        assert_false(items[0].remove);
        assert_false(items[1].remove);
        assert_false(items[2].remove);
        assert_true(items[3].remove);
        assert_true(items[4].remove);
        assert_non_null(strstr(items[0].reason, "newest 3"));
}

static void retention_keep_min_larger_than_count_keeps_all(void **state) {
        const unsigned ages[] = { 100, 200 };
        RetentionItem items[2];

        fill(items, ages, 2);
        assert_int_equal(retention_select(items, 2, NOW, 30, 3), 0);
}

static void retention_zero_days_removes_all_but_keep_min(void **state) {
        const unsigned ages[] = { 0, 0, 1, 2 };
        RetentionItem items[4];

        fill(items, ages, 4);
        items[0].time_usec = NOW;
        items[1].time_usec = NOW - 1;
        assert_int_equal(retention_select(items, 4, NOW, 0, 1), 3);
        assert_false(items[0].remove);
}

static void retention_empty_list(void **state) {
        assert_int_equal(retention_select(NULL, 0, NOW, 30, 3), 0);
}

/* Damaged backups do not count toward keep_min: keep_min intact ones stay, whatever their age. */
static void retention_counts_only_intact_backups_toward_keep_min(void **state) {
        const unsigned ages[] = { 40, 50, 60, 70, 80, 90 };
        RetentionItem items[ELEMENTSOF(ages)];

        fill(items, ages, ELEMENTSOF(ages));
        items[0].damage = "x.sql.zst is missing";
        items[2].damage = "y.sql.zst has 3 bytes, the manifest says 4";
        items[4].damage = "z.sql.zst is missing";
        /* Newest 3 intact: 50, 70, 90 days. The damaged ones among the newest 3 (40, 60) stay too; the
         * damaged one beyond (80) goes by age. */
        assert_int_equal(retention_select(items, ELEMENTSOF(ages), NOW, 30, 3), 1);
        for (size_t i = 0; i < ELEMENTSOF(ages); i++)
                assert_int_equal(items[i].remove, i == 4);
        assert_non_null(strstr(items[0].reason, "damaged (x.sql.zst is missing)"));
        assert_non_null(strstr(items[0].reason, "not counted toward keep_min"));
        assert_non_null(strstr(items[5].reason, "newest 3 intact"));
        assert_non_null(strstr(items[4].reason, "older than retention_days = 30 (damaged: z.sql.zst"));
}

static void retention_all_damaged_keeps_the_newest_keep_min(void **state) {
        const unsigned ages[] = { 40, 50, 60 };
        RetentionItem items[3];

        fill(items, ages, 3);
        for (size_t i = 0; i < 3; i++)
                items[i].damage = "missing";
        assert_int_equal(retention_select(items, 3, NOW, 30, 2), 1);
        assert_false(items[0].remove);
        assert_false(items[1].remove);
        assert_true(items[2].remove);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(retention_removes_only_older_than_retention_days),
                cmocka_unit_test(retention_keeps_keep_min_when_all_are_old),
                cmocka_unit_test(retention_keep_min_larger_than_count_keeps_all),
                cmocka_unit_test(retention_zero_days_removes_all_but_keep_min),
                cmocka_unit_test(retention_empty_list),
                cmocka_unit_test(retention_counts_only_intact_backups_toward_keep_min),
                cmocka_unit_test(retention_all_damaged_keeps_the_newest_keep_min),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
