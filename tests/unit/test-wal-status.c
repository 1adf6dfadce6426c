/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The WAL stream's state file, what the D-Bus object announces when it changes, and the age status shows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bus/wal.h"
#include "cli/status-wal.h"
#include "shared/util.h"
#include "sys/wal-state.h"

static void test_state_roundtrip_and_missing_file(void **state) {
        char dir[] = "/tmp/test-wal-state-XXXXXX";
        WalState w = {}, r = {};

        assert_non_null(mkdtemp(dir));
        /* Never ran: state "". */
        assert_int_equal(wal_state_read(dir, &r), 0);
        assert_string_equal(r.state, "");
        assert_string_equal(r.last_segment, "");
        wal_state_done(&r);

        w = (WalState){ .state = "running",
                        .pid = (uint64_t) getpid(),
                        .slot = "skyforge",
                        .timeline = 2,
                        .last_segment = "000000020000000000000007",
                        .last_segment_usec = 1764583200123456,
                        .lag_bytes = 12345,
                        .lag_warning = true,
                        .stored_lsn = "0/7000000",
                        .segments = 3,
                        .started_usec = 1764583100000000,
                        .last_error = "" };
        assert_int_equal(wal_state_write(dir, &w), 0);
        assert_int_equal(wal_state_read(dir, &r), 0);
        assert_string_equal(r.state, "running");
        assert_int_equal(r.pid, (uint64_t) getpid());
        assert_string_equal(r.slot, "skyforge");
        assert_int_equal(r.timeline, 2);
        assert_string_equal(r.last_segment, "000000020000000000000007");
        assert_int_equal(r.last_segment_usec, 1764583200123456);
        assert_int_equal(r.lag_bytes, 12345);
        assert_true(r.lag_warning);
        assert_string_equal(r.stored_lsn, "0/7000000");
        assert_int_equal(r.segments, 3);
        /* Our own process is alive: still running. */
        wal_state_fix_stale(&r);
        assert_string_equal(r.state, "running");
        wal_state_done(&r);

        _cleanup_free_ char *path = wal_state_path(dir);
        assert_int_equal(write_file_atomic(path, "[1,2]", 5, 0644), 0);
        assert_int_equal(wal_state_read(dir, &r), -EBADMSG);
        unlink(path);
        rmdir(dir);
}

static void test_stale_running_reads_failed(void **state) {
        WalState r = { .state = xstrdup("running"), .pid = 0x7ffffff0, .last_error = xstrdup("") };

        /* No such process (beyond pid_max). */
        wal_state_fix_stale(&r);
        assert_string_equal(r.state, "failed");
        assert_non_null(strstr(r.last_error, "ended without recording"));
        assert_int_equal(r.pid, 0);
        wal_state_done(&r);

        /* Stopped stays stopped. */
        r = (WalState){ .state = xstrdup("stopped"), .pid = 0x7ffffff0, .last_error = xstrdup("") };
        wal_state_fix_stale(&r);
        assert_string_equal(r.state, "stopped");
        wal_state_done(&r);
}

static void test_changed_properties(void **state) {
        const char *props[BUS_WAL_PROPERTIES_MAX + 1];
        WalState a = { .state = "running", .slot = "skyforge", .timeline = 1, .last_segment = "A" };
        WalState b = a;

        assert_int_equal(bus_wal_changed_properties(&a, &b, props), 0);
        assert_null(props[0]);
        b.lag_bytes = 5;
        b.last_segment = "B";
        b.last_segment_usec = 7;
        assert_int_equal(bus_wal_changed_properties(&a, &b, props), 3);
        assert_string_equal(props[0], "WalLagBytes");
        assert_string_equal(props[1], "LastWalSegment");
        assert_string_equal(props[2], "LastWalUSec");
        assert_null(props[3]);
        /* Everything at once fits the array. */
        WalState c = { .state = "failed",
                       .slot = "x",
                       .timeline = 2,
                       .last_segment = "C",
                       .last_segment_usec = 1,
                       .lag_bytes = 1,
                       .lag_warning = true,
                       .last_error = "boom" };
        WalState empty = {};
        assert_int_equal(bus_wal_changed_properties(&empty, &c, props), BUS_WAL_PROPERTIES_MAX);
        assert_true(bus_wal_is_state_file("wal-stream.json"));
        assert_false(bus_wal_is_state_file(".#wal-stream.json.tmp"));
        assert_false(bus_wal_is_state_file("postgres.json"));
}

static void test_format_age(void **state) {
        struct {
                uint64_t sec;
                const char *want;
        } cases[] = { { 0, "0 s" },           { 119, "119 s" }, { 120, "2 min" },
                      { 7199, "119 min" },    { 7200, "2 h" },  { 48 * 3600 - 1, "47 h" },
                      { 48 * 3600, "2 days" } };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *s = status_format_age(cases[i].sec * USEC_PER_SEC);
                assert_string_equal(s, cases[i].want);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_state_roundtrip_and_missing_file),
                cmocka_unit_test(test_stale_running_reads_failed),
                cmocka_unit_test(test_changed_properties),
                cmocka_unit_test(test_format_age),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
