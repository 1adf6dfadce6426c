/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The WAL spool (jobs/wal-spool.c): the names restore_command may ask for, the check of a segment's first
 * page, and restore_command's side of the protocol in a real directory (the file moved to %p, the agent's
 * answers, the flock that says an agent serves the spool, the complete marker of an offline spool). The
 * agent's side, with a store and PostgreSQL, is in tests/integration/test_pitr_spool.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "jobs/wal-spool.h"
#include "log/log.h"
#include "pg/replication.h"

#define SEG PG_WAL_SEGMENT_DEFAULT

static void names_restore_command_asks_for(void **state) {
        uint32_t tli;
        uint64_t segno;
        bool history;

        assert_int_equal(wal_spool_file_parse("000000020000000100000003", &tli, &segno, &history), 0);
        assert_int_equal(tli, 2);
        assert_true(segno == 0x100 + 3);
        assert_false(history);
        assert_int_equal(wal_spool_file_parse("00000003.history", &tli, &segno, &history), 0);
        assert_int_equal(tli, 3);
        assert_true(history);
        /* What the archive never holds, and what must never become a path. */
        assert_int_equal(
                wal_spool_file_parse("000000010000000000000002.00000028.backup", &tli, &segno, &history),
                -EINVAL);
        assert_int_equal(wal_spool_file_parse("../../etc/passwd", &tli, &segno, &history), -EINVAL);
        assert_int_equal(wal_spool_file_parse("00000000.history", &tli, &segno, &history), -EINVAL);
        assert_int_equal(wal_spool_file_parse("", &tli, &segno, &history), -EINVAL);
        assert_int_equal(wal_spool_file_parse(NULL, &tli, &segno, &history), -EINVAL);
}

static void page(uint8_t *p, uint16_t info, uint64_t pageaddr, uint64_t sysid, uint32_t seg_size) {
        memset(p, 0, 64);
        p[0] = 0x10, p[1] = 0xD1; /* PostgreSQL 15's magic; not checked */
        memcpy(p + 2, &info, 2);
        memcpy(p + 8, &pageaddr, 8);
        memcpy(p + 24, &sysid, 8);
        memcpy(p + 32, &seg_size, 4);
}

static void first_page_must_fit_the_segment(void **state) {
        uint8_t p[64];
        const char *why = NULL;

        page(p, 0x0002 | 0x0004, 5 * SEG, 7300000000000000001ULL, SEG);
        assert_int_equal(wal_segment_header_check(p, sizeof p, 5, 7300000000000000001ULL, false, &why), 0);
        assert_int_equal(wal_segment_header_check(p, sizeof p, 5, 0, false, &why), 0);
        /* The object of another segment under this name. */
        assert_int_equal(wal_segment_header_check(p, sizeof p, 6, 0, false, &why), -EBADMSG);
        assert_non_null(strstr(why, "another WAL position"));
        /* Another cluster's WAL. */
        assert_int_equal(wal_segment_header_check(p, sizeof p, 5, 42, false, &why), -EBADMSG);
        assert_non_null(strstr(why, "another cluster"));
        page(p, 0x0002, 5 * SEG, 1, 64 * 1024 * 1024);
        assert_int_equal(wal_segment_header_check(p, sizeof p, 5, 1, false, &why), -EBADMSG);
        assert_non_null(strstr(why, "segment size"));
        page(p, 0x0000, 5 * SEG, 1, SEG);
        assert_int_equal(wal_segment_header_check(p, sizeof p, 5, 1, false, &why), -EBADMSG);
        /* Empty: only a partial segment may be (nothing of it written yet). */
        memset(p, 0, sizeof p);
        assert_int_equal(wal_segment_header_check(p, sizeof p, 5, 1, true, &why), 0);
        assert_int_equal(wal_segment_header_check(p, sizeof p, 5, 1, false, &why), -EBADMSG);
        assert_int_equal(wal_segment_header_check(p, 12, 5, 1, true, &why), -EBADMSG);
}

typedef struct Dir {
        char path[64];
        char *spool, *out;
} Dir;

static int dir_setup(void **state) {
        Dir *d = calloc(1, sizeof *d);
        strcpy(d->path, "/tmp/test-wal-spool-XXXXXX");
        assert_non_null(mkdtemp(d->path));
        assert_int_equal(wal_spool_create(d->path, getuid(), getgid(), &d->spool), 0);
        d->out = path_join(d->path, "RECOVERYXLOG");
        *state = d;
        return 0;
}

static int dir_teardown(void **state) {
        Dir *d = *state;
        assert_int_equal(wal_spool_remove(d->spool), 0);
        assert_int_equal(access(d->spool, F_OK), -1);
        (void) unlink(d->out);
        assert_int_equal(rmdir(d->path), 0);
        free(d->spool);
        free(d->out);
        free(d);
        return 0;
}

static void put(const char *dir, const char *name, const char *text) {
        _cleanup_free_ char *p = path_join(dir, name);
        assert_int_equal(write_file_atomic(p, text, strlen(text), 0600), 0);
}

static bool exists(const char *dir, const char *name) {
        _cleanup_free_ char *p = path_join(dir, name);
        return access(p, F_OK) == 0;
}

static void restore_command_takes_the_answers_of_the_agent(void **state) {
        Dir *d = *state;
        _cleanup_free_ char *got = NULL;
        _cleanup_close_ int lock = open(d->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        /* An agent serves the spool. */
        assert_int_equal(flock(lock, LOCK_EX), 0);
        /* A segment that is there is moved to %p. */
        put(d->spool, "000000010000000000000005", "five");
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000005", d->out), 0);
        assert_true(read_file_string(d->out, 64, &got) >= 0);
        assert_string_equal(got, "five");
        assert_false(exists(d->spool, "000000010000000000000005"));
        /* A history file is copied: PostgreSQL asks for it again when it promotes. */
        put(d->spool, "00000002.history", "1\t0/5000000\tno recovery target specified\n");
        assert_int_equal(wal_spool_take(d->spool, "00000002.history", d->out), 0);
        assert_true(exists(d->spool, "00000002.history"));
        /* "The store does not hold it": -ENOENT without a message (exit 1, the end of WAL), once. */
        put(d->spool, "000000010000000000000006.missing", "");
        err_clear();
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000006", d->out), -ENOENT);
        assert_null(err_message());
        assert_false(exists(d->spool, "000000010000000000000006.missing"));
        /* "It could not be fetched": an error with the agent's reason (exit 126, recovery stops). */
        put(d->spool, "000000010000000000000007.error", "cannot read WAL object x: zstd: corrupted");
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000007", d->out), -EIO);
        assert_non_null(strstr(err_message(), "corrupted"));
        /* Names the archive never holds are "not there" without asking. */
        err_clear();
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000002.00000028.backup", d->out),
                         -ENOENT);
        assert_null(err_message());
}

static void *answer_later(void *p) {
        const char *spool = p;
        _cleanup_free_ char *want = path_join(spool, "000000010000000000000009.want");

        /* Waits for the request (bounded), then answers as the agent does. */
        for (int i = 0; i < 3000 && access(want, F_OK) < 0; i++)
                usleep(10 * 1000);
        if (access(want, F_OK) == 0) {
                unlink(want);
                put(spool, "000000010000000000000009", "nine");
        }
        return NULL;
}

static void restore_command_asks_and_waits_while_the_agent_serves(void **state) {
        Dir *d = *state;
        _cleanup_free_ char *got = NULL;
        _cleanup_close_ int lock = open(d->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        pthread_t t;

        assert_int_equal(flock(lock, LOCK_EX), 0);
        assert_int_equal(pthread_create(&t, NULL, answer_later, d->spool), 0);
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000009", d->out), 0);
        pthread_join(t, NULL);
        assert_true(read_file_string(d->out, 64, &got) >= 0);
        assert_string_equal(got, "nine");
}

static void without_an_agent_nothing_looks_like_the_end_of_wal(void **state) {
        Dir *d = *state;

        /* Nobody holds the lock: an error (exit 126), never "not there" (exit 1). */
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000009", d->out), -ESRCH);
        assert_non_null(strstr(err_message(), "no skyforge-agent serves"));
        /* An offline spool that is complete: what is not there, the store does not hold. */
        put(d->spool, "complete", "");
        err_clear();
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000009", d->out), -ENOENT);
        assert_null(err_message());
        /* A spool that is gone. */
        assert_int_equal(wal_spool_clean(d->spool), 0);
        assert_int_equal(wal_spool_take(d->spool, "000000010000000000000009", d->out), -ENOENT);
        assert_non_null(err_message());
        assert_int_equal(mkdir(d->spool, 0700), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(names_restore_command_asks_for),
                cmocka_unit_test(first_page_must_fit_the_segment),
                cmocka_unit_test_setup_teardown(restore_command_takes_the_answers_of_the_agent, dir_setup,
                                                dir_teardown),
                cmocka_unit_test_setup_teardown(restore_command_asks_and_waits_while_the_agent_serves,
                                                dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(without_an_agent_nothing_looks_like_the_end_of_wal,
                                                dir_setup, dir_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
