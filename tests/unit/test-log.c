/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The error slot and what keeps a failure intact on its way out: Failure, failure_take(),
 * ERR_KEEP_SCOPE(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sysexits.h>
#include <cmocka.h>

#include "log/log.h"

/* A destructor that fails as cleanup may (an abort request refused, a temporary file that will not go). */
typedef struct Upload {
        bool open;
} Upload;

static void upload_abort(Upload *u) {
        ERR_KEEP_SCOPE();

        if (u->open)
                (void) err_set(-EIO, EX_IOERR, "could not abort the upload");
}

static int upload_and_fail(void) {
        _cleanup_(upload_abort) Upload u = { .open = true };

        return err_set(-EACCES, EX_NOPERM, "AccessDenied: the key lacks s3:PutObject");
}

static void cleanup_on_the_way_out_keeps_the_failure(void **state) {
        int r = upload_and_fail();

        assert_int_equal(r, -EACCES);
        assert_string_equal(err_message(), "AccessDenied: the key lacks s3:PutObject");
        assert_int_equal(err_exit_code(r), EX_NOPERM);
}

static void keep_scope_restores_an_empty_slot_and_nests(void **state) {
        err_clear();
        {
                ERR_KEEP_SCOPE();
                (void) err_set(-EIO, EX_IOERR, "state write failed");
                {
                        ERR_KEEP_SCOPE();
                        (void) err_set(-ENOSPC, EX_CANTCREAT, "journal");
                        assert_string_equal(err_message(), "journal");
                }
                /* Inside, the scope's own errors are visible, to be logged. */
                assert_string_equal(err_message(), "state write failed");
                assert_int_equal(err_exit_code(-EIO), EX_IOERR);
        }
        assert_null(err_message());
        /* Without a detail the code comes from the errno again. */
        assert_int_equal(err_exit_code(-ECONNREFUSED), EX_UNAVAILABLE);
}

static void failure_travels_unchanged_by_later_err_set(void **state) {
        _cleanup_(failure_done) Failure f = {};
        int r = err_set(-EBADMSG, EX_DATAERR, "backup X is damaged");

        failure_capture(&f, r);
        (void) err_set(-EIO, 0, "cannot write job state");
        /* The first failure stays: a second capture does nothing. */
        failure_capture(&f, -EIO);
        assert_int_equal(f.error, -EBADMSG);
        assert_int_equal(f.exit_code, EX_DATAERR);
        assert_string_equal(failure_message(&f), "backup X is damaged");
        assert_int_equal(failure_raise(&f), -EBADMSG);
        assert_string_equal(err_message(), "backup X is damaged");
        assert_int_equal(err_exit_code(-EBADMSG), EX_DATAERR);
}

static void failure_without_detail_uses_strerror(void **state) {
        _cleanup_(failure_done) Failure f = {}, none = {};

        err_clear();
        failure_capture(&f, -EPIPE);
        assert_string_equal(failure_message(&f), strerror(EPIPE));
        assert_int_equal(f.exit_code, EX_IOERR);
        assert_null(failure_message(&none));
        assert_int_equal(failure_raise(&none), 0);
}

static void taken_failure_leaves_no_stale_detail(void **state) {
        int r = err_set(-EBADMSG, EX_DATAERR, "manifest X.json is not valid JSON");
        _cleanup_(failure_done) Failure f = failure_take(r);

        assert_string_equal(failure_message(&f), "manifest X.json is not valid JSON");
        /* A later error that records no detail of its own shows its own cause, not the handled one. */
        assert_null(err_message());
        assert_int_equal(err_exit_code(-EPIPE), EX_IOERR);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(cleanup_on_the_way_out_keeps_the_failure),
                cmocka_unit_test(keep_scope_restores_an_empty_slot_and_nests),
                cmocka_unit_test(failure_travels_unchanged_by_later_err_set),
                cmocka_unit_test(failure_without_detail_uses_strerror),
                cmocka_unit_test(taken_failure_leaves_no_stale_detail),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
