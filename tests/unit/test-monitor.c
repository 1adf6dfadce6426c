/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "jobs/monitor.h"
#include "sys/state.h"

static void ping_urls_follow_healthchecks_io(void **state) {
        static const struct {
                const char *url, *job;
                JobPing what;
                const char *want;
        } cases[] = {
                { "https://hc.example/uuid", "postgres", JOB_PING_START, "https://hc.example/uuid/start" },
                { "https://hc.example/uuid/", "postgres", JOB_PING_SUCCESS, "https://hc.example/uuid" },
                { "https://hc.example/uuid", "config", JOB_PING_FAIL, "https://hc.example/uuid/fail" },
                { "http://127.0.0.1:8/%j", "mirror", JOB_PING_START, "http://127.0.0.1:8/mirror/start" },
                { "http://h/%j/x/%j", "config", JOB_PING_FAIL, "http://h/config/x/config/fail" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *u = job_monitor_ping_url(cases[i].url, cases[i].job, cases[i].what);
                assert_string_equal(u, cases[i].want);
        }
}

static void metrics_text_has_every_job_that_ran(void **state) {
        char dir[] = "/tmp/test-monitor-XXXXXX";
        _cleanup_free_ char *text = NULL;
        JobState pg = { .job = (char *) "postgres", .state = (char *) "idle", .last_result = (char *) "success",
                        .last_bytes = 12345, .last_start_usec = 1000000000ULL * 1000000,
                        .last_end_usec = 1000000000ULL * 1000000 + 2500000,
                        .last_success_usec = 1000000000ULL * 1000000 + 2500000, .progress = -1 };
        JobState cfg = { .job = (char *) "config", .state = (char *) "failed", .last_result = (char *) "failed",
                         .last_start_usec = 5000000, .last_end_usec = 6000000, .progress = -1 };

        assert_non_null(mkdtemp(dir));
        assert_int_equal(job_state_write(dir, &pg), 0);
        assert_int_equal(job_state_write(dir, &cfg), 0);
        text = job_monitor_metrics_text(dir);
        assert_non_null(strstr(text, "# TYPE skyforge_job_last_success gauge\n"));
        assert_non_null(strstr(text, "skyforge_job_last_success{job=\"postgres\"} 1\n"));
        assert_non_null(strstr(text, "skyforge_job_last_success{job=\"config\"} 0\n"));
        assert_non_null(strstr(text, "skyforge_job_last_duration_seconds{job=\"postgres\"} 2.5\n"));
        assert_non_null(strstr(text, "skyforge_job_last_bytes{job=\"postgres\"} 12345\n"));
        assert_non_null(strstr(text, "skyforge_job_last_success_timestamp_seconds{job=\"postgres\"} 1000000002.5\n"));
        assert_null(strstr(text, "job=\"mirror\"")); /* never ran */
        for (const char *const *j = (const char *const[]){ "postgres", "config", NULL }; *j; j++) {
                _cleanup_free_ char *p = job_state_path(dir, *j);
                (void) unlink(p);
        }
        (void) rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(ping_urls_follow_healthchecks_io),
                cmocka_unit_test(metrics_text_has_every_job_that_ran),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
