/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The pure parts of point-in-time recovery: WAL positions and file names (pg/replication.c), the object
 * names of the WAL archive (jobs/wal.c), the target time and the settings written for PostgreSQL
 * (jobs/pitr.c), and which BASE_BACKUP archive names are stored (jobs/basebackup.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "jobs/basebackup.h"
#include "jobs/pitr.h"
#include "jobs/wal.h"
#include "pg/replication.h"

#define SEG PG_WAL_SEGMENT_DEFAULT

static void lsn_parses_and_formats_like_postgresql(void **state) {
        uint64_t v;
        _cleanup_free_ char *a = NULL, *b = NULL;

        assert_int_equal(pg_lsn_parse("16/B374D848", &v), 0);
        assert_true(v == UINT64_C(0x16B374D848));
        a = pg_lsn_format(v);
        assert_string_equal(a, "16/B374D848");
        assert_int_equal(pg_lsn_parse("0/0", &v), 0);
        assert_true(v == 0);
        b = pg_lsn_format(UINT64_C(0xFFFFFFFFFFFFFFFF));
        assert_string_equal(b, "FFFFFFFF/FFFFFFFF");
        assert_int_equal(pg_lsn_parse("", &v), -EINVAL);
        assert_int_equal(pg_lsn_parse("1/2/3", &v), -EINVAL);
        assert_int_equal(pg_lsn_parse("100000000/0", &v), -EINVAL);
        assert_int_equal(pg_lsn_parse("0/3000060 ", &v), -EINVAL);
        assert_int_equal(pg_lsn_parse("-1/0", &v), -EINVAL);
        assert_int_equal(pg_lsn_parse("0x1/0", &v), -EINVAL);
}

static void wal_file_names_round_trip(void **state) {
        char name[PG_WAL_FILE_NAME_LEN + 1];
        uint32_t tli;
        uint64_t lsn;

        /* As pg_walfile_name() names them: 256 segments of 16 MiB per "xlogid". */
        pg_wal_file_name(1, UINT64_C(0x3000060), SEG, name);
        assert_string_equal(name, "000000010000000000000003");
        pg_wal_file_name(0x2A, UINT64_C(0x16B374D848), SEG, name);
        assert_string_equal(name, "0000002A00000016000000B3");
        assert_int_equal(pg_wal_file_parse("0000002A00000016000000B3", SEG, &tli, &lsn), 0);
        assert_int_equal(tli, 0x2A);
        assert_true(lsn == UINT64_C(0x16B3000000));
        /* Lower case, a segment number past the last of its xlogid, timeline 0, wrong length: refused. */
        assert_int_equal(pg_wal_file_parse("0000002a00000016000000B3", SEG, &tli, &lsn), -EINVAL);
        assert_int_equal(pg_wal_file_parse("000000010000000000000100", SEG, &tli, &lsn), -EINVAL);
        assert_int_equal(pg_wal_file_parse("000000000000000000000001", SEG, &tli, &lsn), -EINVAL);
        assert_int_equal(pg_wal_file_parse("00000001000000000000000", SEG, &tli, &lsn), -EINVAL);
        assert_int_equal(pg_wal_file_parse("../../../../etc/passwd00", SEG, &tli, &lsn), -EINVAL);
        assert_int_equal(pg_history_file_parse("00000002.history", &tli), 0);
        assert_int_equal(tli, 2);
        assert_int_equal(pg_history_file_parse("00000000.history", &tli), -EINVAL);
        assert_int_equal(pg_history_file_parse("00000002.history.x", &tli), -EINVAL);
}

static void segment_size_is_a_power_of_two_between_1mib_and_1gib(void **state) {
        uint64_t v;

        assert_int_equal(pg_parse_segment_size("16MB", &v), 0);
        assert_true(v == SEG);
        assert_int_equal(pg_parse_segment_size("1GB", &v), 0);
        assert_true(v == UINT64_C(1) << 30);
        assert_int_equal(pg_parse_segment_size("24MB", &v), -EINVAL);
        assert_int_equal(pg_parse_segment_size("512kB", &v), -EINVAL);
        assert_int_equal(pg_parse_segment_size("2GB", &v), -EINVAL);
        assert_int_equal(pg_parse_segment_size("16 MB", &v), -EINVAL);
}

static void wal_object_names_sit_under_their_timeline(void **state) {
        WalStore w = { .prefix = (char *) "wal/" };
        _cleanup_free_ char *a = wal_object_name(&w, "000000010000000000000003", false, false),
                            *b = wal_object_name(&w, "000000010000000000000003", true, true),
                            *c = wal_object_name(&w, "00000002.history", false, true),
                            *d = wal_object_name(&w, "00000002.history", true, false),
                            *e = wal_object_name(&w, "000000010000000000000003.partial", false, false),
                            *f = wal_object_name(&w, "RECOVERYHISTORY", false, false);

        assert_string_equal(a, "wal/00000001/000000010000000000000003.zst");
        assert_string_equal(b, "wal/00000001/000000010000000000000003.partial.zst.age");
        assert_string_equal(c, "wal/00000002/00000002.history.zst.age");
        assert_null(d);
        assert_null(e);
        assert_null(f);
}

static void target_time_needs_a_zone_and_is_written_in_utc(void **state) {
        uint64_t t;
        _cleanup_free_ char *a = NULL, *b = NULL;

        assert_int_equal(pitr_parse_time("2026-12-01 10:00:00+00", &t), 0);
        assert_true(t == UINT64_C(1796119200) * 1000000);
        assert_int_equal(pitr_parse_time("2026-12-01T11:00:00.25+01:00", &t), 0);
        assert_true(t == UINT64_C(1796119200) * 1000000 + 250000);
        a = pitr_format_time(t);
        assert_string_equal(a, "2026-12-01 10:00:00.250000+00");
        assert_int_equal(pitr_parse_time("2026-12-01 10:00:00.1234567Z", &t), 0);
        b = pitr_format_time(t);
        assert_string_equal(b, "2026-12-01 10:00:00.123456+00");
        assert_int_equal(pitr_parse_time("2026-12-01 09:30:00-0030", &t), 0);
        assert_true(t == UINT64_C(1796119200) * 1000000);
        assert_int_equal(pitr_parse_time("2026-12-01 10:00:00", &t), -EDOM);
        assert_int_equal(pitr_parse_time("2026-02-30 10:00:00Z", &t), -EINVAL);
        assert_int_equal(pitr_parse_time("2026-12-01 25:00:00Z", &t), -EINVAL);
        assert_int_equal(pitr_parse_time("2026-12-01 10:00:00Z'; DROP", &t), -EINVAL);
        assert_int_equal(pitr_parse_time("yesterday", &t), -EINVAL);
}

static void settings_are_quoted_for_postgresql_auto_conf(void **state) {
        _cleanup_free_ char *a = pitr_setting_line("port=5433"),
                            *b = pitr_setting_line("unix_socket_directories=/tmp/it's"),
                            *c = pitr_setting_line("Port=1"), *d = pitr_setting_line("=1"),
                            *e = pitr_setting_line("port"),
                            *f = pitr_setting_line("a=b\nrestore_command = 'x'");

        assert_string_equal(a, "port = '5433'\n");
        assert_string_equal(b, "unix_socket_directories = '/tmp/it''s'\n");
        assert_null(c);
        assert_null(d);
        assert_null(e);
        /* A newline cannot start a second setting. */
        assert_string_equal(f, "a = 'b restore_command = ''x'''\n");
}

static void only_base_and_tablespace_archives_are_stored(void **state) {
        assert_true(basebackup_archive_name_valid("base.tar"));
        assert_true(basebackup_archive_name_valid("16384.tar"));
        assert_false(basebackup_archive_name_valid("../base.tar"));
        assert_false(basebackup_archive_name_valid("x.tar"));
        assert_false(basebackup_archive_name_valid(".tar"));
        assert_false(basebackup_archive_name_valid("1/2.tar"));
        assert_false(basebackup_archive_name_valid("base.tar.gz"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(lsn_parses_and_formats_like_postgresql),
                cmocka_unit_test(wal_file_names_round_trip),
                cmocka_unit_test(segment_size_is_a_power_of_two_between_1mib_and_1gib),
                cmocka_unit_test(wal_object_names_sit_under_their_timeline),
                cmocka_unit_test(target_time_needs_a_zone_and_is_written_in_utc),
                cmocka_unit_test(settings_are_quoted_for_postgresql_auto_conf),
                cmocka_unit_test(only_base_and_tablespace_archives_are_stored),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
