/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Progress under systemd: what `systemctl status skyforge-backup@JOB` shows comes from these sd_notify
 * datagrams, captured here on a NOTIFY_SOCKET the test binds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sys/progress.h"

typedef struct Fixture {
        char dir[64];
        char socket_path[128];
        int fd;
} Fixture;

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        strcpy(f->dir, "/tmp/skyforge-notify-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->socket_path, sizeof f->socket_path, "%s/notify", f->dir);
        strcpy(sa.sun_path, f->socket_path);
        f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(f->fd >= 0);
        assert_int_equal(bind(f->fd, (struct sockaddr *) &sa, sizeof sa), 0);
        setenv("NOTIFY_SOCKET", f->socket_path, 1);
        setenv("SKYFORGE_NO_PROGRESS", "1", 1); /* no terminal line in the test log */
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *json = path_join(f->dir, "postgres.json");

        unsetenv("NOTIFY_SOCKET");
        close(f->fd);
        unlink(f->socket_path);
        unlink(json);
        rmdir(f->dir);
        free(f);
        return 0;
}

/* The next datagram, or NULL when none is waiting. */
static char *next_message(Fixture *f) {
        char buf[4096];
        ssize_t n = recv(f->fd, buf, sizeof buf - 1, 0);

        if (n < 0) {
                assert_int_equal(errno, EAGAIN);
                return NULL;
        }
        buf[n] = 0;
        return xstrdup(buf);
}

static void status_shows_progress_and_extends_the_timeout(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *m = NULL;
        Progress p;

        progress_init(&p, "dumping", UINT64_C(3400) << 20, NULL, NULL);
        progress_update(&p, UINT64_C(1200) << 20);
        m = next_message(f);
        assert_non_null(m);
        assert_non_null(strstr(m, "STATUS=dumping: 1.2 GiB of ~3.3 GiB (35 %), "));
        assert_non_null(strstr(m, "/s\n"));
        assert_non_null(strstr(m, "\nEXTEND_TIMEOUT_USEC=300000000"));
        progress_done(&p);
}

static void status_is_sent_at_most_once_a_second(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *first = NULL, *second = NULL, *flushed = NULL;
        Progress p;

        progress_init(&p, "copying", 0, NULL, NULL);
        progress_update(&p, 1);
        first = next_message(f);
        assert_non_null(first);
        for (int i = 2; i < 100; i++)
                progress_update(&p, (uint64_t) i);
        second = next_message(f);
        assert_null(second);
        /* A flush shows the current figure regardless (the end of a phase). */
        progress_flush(&p);
        flushed = next_message(f);
        assert_non_null(flushed);
        assert_non_null(strstr(flushed, "STATUS=copying: 99 B, "));
        progress_done(&p);
}

static void done_clears_the_status(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *m = NULL, *cleared = NULL;
        Progress p;

        progress_init(&p, "dumping", 0, NULL, NULL);
        progress_flush(&p);
        m = next_message(f);
        progress_done(&p);
        cleared = next_message(f);
        assert_non_null(cleared);
        assert_string_equal(cleared, "STATUS=");
}

static void progress_lands_in_the_state_file_for_the_daemon(void **state) {
        Fixture *f = *state;
        _cleanup_(job_state_done) JobState s = { .job = xstrdup("postgres"), .state = xstrdup("running") };
        _cleanup_(job_state_done) JobState back = {};
        _cleanup_free_ char *m = NULL;
        Progress p;

        progress_init(&p, "dumping", 1000, f->dir, &s);
        progress_update(&p, 250);
        m = next_message(f);
        assert_non_null(m);
        assert_int_equal(job_state_read(f->dir, "postgres", &back), 0);
        assert_string_equal(back.state, "running");
        assert_true(back.progress > 0.249 && back.progress < 0.251);
        assert_non_null(strstr(back.progress_text, "dumping: 250 B of ~1000 B (25 %)"));
        progress_done(&p);
}

static void eta_follows_the_average_rate_once_there_is_one(void **state) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        _cleanup_free_ char *early = NULL, *line = NULL, *objects = NULL, *final = NULL;
        Progress p;

        progress_init(&p, "dumping", 4000, NULL, NULL);
        /* 1 s in: too early to extrapolate. */
        p.start_usec = now - USEC_PER_SEC;
        progress_update(&p, 100);
        early = progress_format(&p, now);
        assert_null(strstr(early, "ETA"));
        /* A quarter in 10 s: 30 s left. */
        p.start_usec = now - 10 * USEC_PER_SEC;
        p.done = 1000;
        line = progress_format(&p, now);
        assert_non_null(strstr(line, "dumping: 1000 B of ~3.9 KiB (25 %), 100 B/s, ETA 30s"));
        /* Object counts whose totals still grow (listing) get no ETA until they are final. */
        p.count_objects = true;
        objects = progress_format(&p, now);
        assert_null(strstr(objects, "ETA"));
        p.total_final = true;
        final = progress_format(&p, now);
        assert_non_null(strstr(final, ", ETA 30s"));
        progress_done(&p);
}

static void eta_reads_like_a_clock(void **state) {
        static const struct {
                uint64_t sec;
                const char *want;
        } cases[] = {
                { 0, "ETA 0s" },          { 59, "ETA 59s" },       { 60, "ETA 1m00s" },
                { 3599, "ETA 59m59s" },   { 3600, "ETA 1h00m" },   { 3725, "ETA 1h02m" },
                { 99 * 3600, "ETA 99h00m" }, { 100 * 3600, "ETA >4d" },
        };
        char buf[PROGRESS_ETA_MAX];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                progress_format_eta(cases[i].sec * USEC_PER_SEC, buf, sizeof buf);
                assert_string_equal(buf, cases[i].want);
        }
}

#define TEST(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                TEST(status_shows_progress_and_extends_the_timeout),
                TEST(status_is_sent_at_most_once_a_second),
                TEST(done_clears_the_status),
                TEST(progress_lands_in_the_state_file_for_the_daemon),
                TEST(eta_follows_the_average_rate_once_there_is_one),
                TEST(eta_reads_like_a_clock),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
