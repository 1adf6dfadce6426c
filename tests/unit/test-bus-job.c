/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "bus/job.h"

static JobState idle_state(void) {
        return (JobState){ .job = "postgres", .state = "idle", .last_result = "success", .last_error = "",
                           .last_backup_id = "20261125T020000Z", .last_bytes = 100, .last_start_usec = 10,
                           .last_end_usec = 20, .last_success_usec = 20, .progress = -1, .last_verify = "" };
}

static bool listed(const char *const *props, const char *name) {
        for (; *props; props++)
                if (streq(*props, name))
                        return true;
        return false;
}

static void identical_states_change_nothing(void **unused) {
        JobState a = idle_state(), b = idle_state();
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];

        assert_int_equal(bus_job_changed_properties(&a, &b, props), 0);
        assert_null(props[0]);
        assert_false(bus_job_finished(&a, &b));
}

static void start_lists_state_and_timer_not_finished(void **unused) {
        JobState a = idle_state(), b = idle_state();
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];

        b.state = "running";
        b.last_start_usec = 30;
        b.progress = 0;
        assert_int_equal(bus_job_changed_properties(&a, &b, props), 4);
        assert_true(listed(props, "State"));
        assert_true(listed(props, "LastStartUSec"));
        assert_true(listed(props, "Progress"));
        assert_true(listed(props, "NextElapseUSec"));
        assert_false(bus_job_finished(&a, &b));
}

static void progress_alone_changes_only_progress(void **unused) {
        JobState a = idle_state(), b = idle_state();
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];

        a.state = b.state = "running";
        a.progress = 0.25;
        b.progress = 0.5;
        assert_int_equal(bus_job_changed_properties(&a, &b, props), 1);
        assert_string_equal(props[0], "Progress");
        /* The line beside it changes with it. */
        a.progress_text = "dumping: 1 KiB of ~4 KiB (25 %), 1 KiB/s, ETA 3s";
        b.progress_text = "dumping: 2 KiB of ~4 KiB (50 %), 1 KiB/s, ETA 2s";
        assert_int_equal(bus_job_changed_properties(&a, &b, props), 2);
        assert_true(listed(props, "ProgressText"));
        assert_false(bus_job_finished(&a, &b));
}

static void running_to_failed_is_finished(void **unused) {
        JobState a = idle_state(), b = idle_state();
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];

        a.state = "running";
        b.state = "failed";
        b.last_result = "failed";
        b.last_error = "cannot reach PostgreSQL";
        b.last_end_usec = 40;
        bus_job_changed_properties(&a, &b, props);
        assert_true(listed(props, "LastError"));
        assert_true(listed(props, "LastResult"));
        assert_false(listed(props, "LastSuccessUSec"));
        assert_true(bus_job_finished(&a, &b));
}

/* A short run that started and ended between two reads leaves only a new end time behind. */
static void missed_run_with_new_end_time_is_finished(void **unused) {
        JobState a = idle_state(), b = idle_state();

        b.last_end_usec = 50;
        b.last_success_usec = 50;
        assert_true(bus_job_finished(&a, &b));
}

static void strings_compare_by_content_with_null_as_empty(void **unused) {
        JobState a = idle_state(), b = idle_state();
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];
        char id[] = "20261125T020000Z";

        a.last_error = NULL;
        b.last_backup_id = id; /* same text, other pointer */
        assert_int_equal(bus_job_changed_properties(&a, &b, props), 0);
}

static void every_property_can_change_at_once(void **unused) {
        JobState a = idle_state();
        JobState b = { .job = "postgres", .state = "running", .last_result = "failed", .last_error = "x",
                       .last_backup_id = "20261126T020000Z", .last_bytes = 1, .last_start_usec = 1,
                       .last_end_usec = 2, .last_success_usec = 3, .progress = 0.5, .last_verify = "ok",
                       .progress_text = "dumping" };
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];

        assert_int_equal(bus_job_changed_properties(&a, &b, props), BUS_JOB_PROPERTIES_MAX);
        assert_null(props[BUS_JOB_PROPERTIES_MAX]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(identical_states_change_nothing),
                cmocka_unit_test(start_lists_state_and_timer_not_finished),
                cmocka_unit_test(progress_alone_changes_only_progress),
                cmocka_unit_test(running_to_failed_is_finished),
                cmocka_unit_test(missed_run_with_new_end_time_is_finished),
                cmocka_unit_test(strings_compare_by_content_with_null_as_empty),
                cmocka_unit_test(every_property_can_change_at_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
