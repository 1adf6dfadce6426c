/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the jobs share (issue 15: the jobs never include the runner, jobs/job.c): their locks, cancellation,
 * retention settings and the decryption of stored objects. */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/context.h"
#include "log/log.h"
#include "pipe/pipe.h"

volatile sig_atomic_t job_cancel_requested = 0;

const char *const job_names[] = { "postgres", "mirror", "config", "volumes", NULL };

static void on_cancel(int sig) {
        job_cancel_requested = 1;
}

void job_install_signal_handlers(void) {
        struct sigaction sa = { .sa_handler = on_cancel };

        /* No SA_RESTART: blocking calls return EINTR so loops notice the request promptly. */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* The store and Kubernetes clients below the jobs see the request through this. */
        cancel_flag = &job_cancel_requested;
}

void job_retention_settings(const Config *c, const char *job, unsigned *ret_days, unsigned *ret_keep_min) {
        if (streq(job, "config")) {
                *ret_days = c->config.retention_days;
                *ret_keep_min = c->config.keep_min;
        } else if (streq(job, "volumes")) {
                *ret_days = c->volumes.retention_days;
                *ret_keep_min = c->volumes.keep_min;
        } else {
                *ret_days = c->postgres.retention_days;
                *ret_keep_min = c->postgres.keep_min;
        }
}

/* One run of a job at a time: a second run fails at once instead of racing the first. Only backup runs
 * take this lock: readers of stored backups (verify, restore) take the read lock below instead, so a
 * weekly verify never makes the nightly backup fail with "already running". */
int job_lock(const char *state_dir, const char *job, bool wait, int *ret_fd) {
        _cleanup_free_ char *path = xasprintf("%s/%s.lock", state_dir, job);
        int r;

        r = mkdir_p(state_dir, 0755);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot create state_dir %s: %s (set state_dir in [agent])",
                               state_dir, strerror(-r));
        r = lock_file(path, 0644, false, NULL, ret_fd);
        if (r == -EBUSY && wait) {
                log_info("Job %s is running; waiting for it to finish.", job);
                r = lock_file(path, 0644, true, &job_cancel_requested, ret_fd);
        }
        if (r == -EBUSY)
                return err_set(r, EX_TEMPFAIL, "job %s is already running (lock %s is held)", job, path);
        if (r == -ECANCELED)
                return err_set(r, EX_TEMPFAIL, "cancelled while waiting for job %s to finish", job);
        if (r < 0)
                return err_set(r, EX_OSERR, "cannot lock %s: %s", path, strerror(-r));
        return 0;
}

int job_read_lock(const char *state_dir, const char *job, bool exclusive, uint64_t timeout_usec,
                  int *ret_fd) {
        _cleanup_free_ char *path = xasprintf("%s/%s.read.lock", state_dir, job);
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *span = NULL;
        uint64_t deadline = 0, sec = timeout_usec / USEC_PER_SEC;
        int r;

        r = mkdir_p(state_dir, 0755);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot create state_dir %s: %s (set state_dir in [agent])",
                               state_dir, strerror(-r));
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot open lock %s: %m (is state_dir writable?)",
                               path);
        span = sec >= 3600 && sec % 3600 == 0 ? xasprintf("%" PRIu64 " h", sec / 3600)
               : sec >= 60 && sec % 60 == 0   ? xasprintf("%" PRIu64 " min", sec / 60)
                                              : xasprintf("%" PRIu64 " s", sec);
        /* Bounded: a verify may read for hours; polling the lock while waiting keeps the bound and
         * SIGTERM simple (flock() has no timeout). Nothing polls when the lock is free. */
        for (unsigned i = 0;; i++) {
                if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) >= 0)
                        break;
                if (errno == EINTR)
                        continue;
                if (errno != EWOULDBLOCK)
                        return err_set(-errno, EX_OSERR, "cannot lock %s: %m", path);
                if (timeout_usec == 0)
                        return err_set(-EBUSY, EX_TEMPFAIL, "backups of %s are being %s (lock %s is held)",
                                       job, exclusive ? "read" : "pruned", path);
                if (i == 0) {
                        deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
                        if (exclusive)
                                log_info("Backups of %s are being read (a verify or restore holds %s); "
                                         "waiting up to %s before deleting any.",
                                         job, path, span);
                        else
                                log_info("Backups of %s are being pruned (lock %s); waiting up to %s.", job,
                                         path, span);
                }
                if (job_cancel_requested)
                        return err_set(-ECANCELED, EX_TEMPFAIL, "cancelled while waiting for lock %s", path);
                if (now_usec(CLOCK_MONOTONIC) >= deadline) {
                        if (exclusive)
                                return err_set(-EBUSY, EX_TEMPFAIL,
                                               "backups of %s are still being read after %s (a verify or "
                                               "restore holds %s); nothing was deleted: run `skyforge-agent "
                                               "prune %s` when it has finished",
                                               job, span, path, job);
                        return err_set(
                                -EBUSY, EX_TEMPFAIL,
                                "backups of %s are still being pruned after %s (lock %s is held); try "
                                "again later",
                                job, span, path);
                }
                (void) usleep(100 * 1000);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int job_source_decrypt(Source *upstream, const Manifest *m, const char *identity_file, const char *section,
                       Source **ret) {
        _cleanup_(source_freep) Source *up = upstream;
        _cleanup_free_ char *recipients = strv_join(m->recipients, ", ");
        Source *s;
        int r;

        if (isempty(identity_file))
                return err_set(-ENOKEY, EX_CONFIG,
                               "backup %s is encrypted (to %s); set identity_file = in [%s] to the age "
                               "identity of one of those recipients", m->id, recipients ?: "age recipients",
                               section);
        s = source_age_new(up, identity_file, &r);
        if (!s) {
                if (r == -ENOKEY)
                        return err_set(r, EX_DATAERR,
                                       "no identity in %s matches the recipients of backup %s (%s); set "
                                       "identity_file = in [%s] to the right key", identity_file, m->id,
                                       recipients ?: "unknown", section);
                /* err_set() formats aside first, so the detail may wrap itself; `up` is freed after this,
                 * and its store reader's destructor keeps the slot. */
                return err_set(r, err_exit_code(r), "cannot decrypt backup %s with %s: %s", m->id,
                               identity_file, err_message() ?: strerror(-r));
        }
        TAKE_PTR(up);
        *ret = s;
        return 0;
}
