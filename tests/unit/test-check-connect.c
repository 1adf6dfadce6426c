/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `config check --connect`: the exit status of several failures is the most specific one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sysexits.h>

#include "jobs/check-connect.h"

static void connect_exit_code_is_the_most_specific(void **state) {
        ConnectCheck items[] = {
                { .status = CONNECT_OK },
                { .status = CONNECT_FAIL, .exit_code = EX_UNAVAILABLE },
                { .status = CONNECT_SKIP },
                { .status = CONNECT_FAIL, .exit_code = EX_NOPERM },
        };
        ConnectReport r = { .items = items, .n = 2 };

        assert_int_equal(connect_report_exit_code(&(ConnectReport){ .items = items, .n = 1 }), 0);
        assert_int_equal(connect_report_exit_code(&r), EX_UNAVAILABLE);
        r.n = 4;
        assert_int_equal(connect_report_exit_code(&r), EX_NOPERM);
        assert_int_equal(connect_exit_code_merge(EX_NOPERM, EX_CONFIG), EX_CONFIG);
        assert_int_equal(connect_exit_code_merge(EX_CONFIG, EX_UNAVAILABLE), EX_CONFIG);
        assert_int_equal(connect_exit_code_merge(EX_SOFTWARE, EX_UNAVAILABLE), EX_UNAVAILABLE);
        assert_int_equal(connect_exit_code_merge(0, EX_SOFTWARE), EX_SOFTWARE);
        assert_int_equal(connect_exit_code_merge(EX_PROTOCOL, 0), EX_PROTOCOL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(connect_exit_code_is_the_most_specific),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
