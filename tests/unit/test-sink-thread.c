/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sysexits.h>

#include "log/log.h"
#include "pipe/sink-thread.h"

/* A downstream that records what reaches it, on which thread, and fails on demand. */
typedef struct Rec {
        Sink sink;
        uint8_t *data;
        size_t len;
        size_t fail_after; /* 0: never */
        unsigned writes, finishes;
        bool other_thread;
        pthread_t caller;
        bool freed;
} Rec;

static int rec_write(Sink *s, const void *buf, size_t n) {
        Rec *r = (Rec *) s;

        r->writes++;
        if (!pthread_equal(pthread_self(), r->caller))
                r->other_thread = true;
        if (r->fail_after && r->len + n > r->fail_after)
                return err_set(-ENOSPC, EX_IOERR, "cannot write /backups/x: No space left on device");
        r->data = xrealloc(r->data, r->len + n);
        memcpy(r->data + r->len, buf, n);
        r->len += n;
        return 0;
}

static int rec_finish(Sink *s) {
        ((Rec *) s)->finishes++;
        return 0;
}

static void rec_free(Sink *s) {
        ((Rec *) s)->freed = true;
}

static Rec rec_new(size_t fail_after) {
        return (Rec){ .sink = { .write = rec_write, .finish = rec_finish, .free = rec_free },
                      .fail_after = fail_after,
                      .caller = pthread_self() };
}

static void fill(uint8_t *p, size_t n) {
        uint32_t seed = 7;
        for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245 + 12345;
                p[i] = (uint8_t) (seed >> 16);
        }
}

/* Writes of every size, smaller and larger than a buffer, arrive in order, complete, on the other
 * thread, and finish reaches the downstream once. */
static void test_passes_everything_in_order(void **state) {
        size_t total = 3 * 1024 * 1024 + 17, done = 0, step = 1;
        uint8_t *in = xmalloc(total);
        Rec rec = rec_new(0);
        int r = 0;
        Sink *s;

        fill(in, total);
        s = sink_thread_new(&rec.sink, 64 * 1024, 3, &r);
        assert_non_null(s);
        while (done < total) {
                size_t k = MIN(step, total - done);
                assert_int_equal(sink_write(s, in + done, k), 0);
                done += k;
                step = step * 3 + 1; /* 1, 4, 13, ... 200 KiB: across buffer ends */
                if (step > 200 * 1024)
                        step = 1;
        }
        assert_int_equal(sink_finish(s), 0);
        assert_int_equal(rec.finishes, 1);
        assert_int_equal(rec.len, total);
        assert_memory_equal(rec.data, in, total);
        assert_true(rec.other_thread);
        assert_int_equal(sink_write(s, in, 1), -ESTALE);
        sink_free(s);
        assert_true(rec.freed);
        free(rec.data);
        free(in);
}

/* A failure downstream comes back to the producer with its own message, at a later write or at finish,
 * and the downstream is never finished. */
static void test_downstream_failure_comes_back(void **state) {
        size_t total = 2 * 1024 * 1024;
        uint8_t *in = xmalloc(total);
        Rec rec = rec_new(300 * 1024);
        int r = 0, w = 0;
        Sink *s;

        fill(in, total);
        err_clear();
        s = sink_thread_new(&rec.sink, 64 * 1024, 2, &r);
        assert_non_null(s);
        for (size_t done = 0; done < total && w == 0; done += 4096)
                w = sink_write(s, in + done, 4096);
        if (w == 0)
                w = sink_finish(s);
        assert_int_equal(w, -ENOSPC);
        assert_non_null(err_message());
        assert_non_null(strstr(err_message(), "No space left on device"));
        assert_int_equal(err_exit_code(w), EX_IOERR);
        assert_int_equal(rec.finishes, 0);
        sink_free(s);
        free(rec.data);
        free(in);
}

/* Freed before finish (a failed backup): the thread stops, the downstream is freed and never finished, so
 * an aborted stream cannot look complete. */
static void test_free_unfinished_does_not_finish(void **state) {
        uint8_t buf[100000];
        Rec rec = rec_new(0);
        int r = 0;
        Sink *s;

        fill(buf, sizeof buf);
        s = sink_thread_new(&rec.sink, 4096, 4, &r);
        assert_non_null(s);
        for (int i = 0; i < 10; i++)
                assert_int_equal(sink_write(s, buf, sizeof buf), 0);
        sink_free(s);
        assert_int_equal(rec.finishes, 0);
        assert_true(rec.freed);
        free(rec.data);
}

/* Finish with nothing written still finishes the downstream (an empty stream is a stream). */
static void test_empty_stream(void **state) {
        Rec rec = rec_new(0);
        int r = 0;
        Sink *s = sink_thread_new(&rec.sink, 4096, 2, &r);

        assert_non_null(s);
        assert_int_equal(sink_finish(s), 0);
        assert_int_equal(rec.finishes, 1);
        assert_int_equal(rec.len, 0);
        assert_int_equal(rec.writes, 0);
        sink_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_passes_everything_in_order),
                cmocka_unit_test(test_downstream_failure_comes_back),
                cmocka_unit_test(test_free_unfinished_does_not_finish),
                cmocka_unit_test(test_empty_stream),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
