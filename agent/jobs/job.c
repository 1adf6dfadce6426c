/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/job.h"
#include "jobs/monitor.h"
#include "jobs/volumes-chain.h"
#include "log/log.h"
#include "pipe/pipe.h"
#include "store/retention.h"

volatile sig_atomic_t job_cancel_requested = 0;

const char *const job_names[] = { "postgres", "mirror", "config", "volumes", NULL };

static const JobDefinition *const job_definitions[] = { &job_postgres, &job_mirror, &job_config, &job_volumes };

const JobDefinition *job_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(job_definitions); i++)
                if (streq(job_definitions[i]->name, name))
                        return job_definitions[i];
        return NULL;
}

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

static void job_new_id(Store *s, char ret[static BACKUP_ID_LEN + 1]) {
        /* Ids have one-second resolution: never reuse the id of an existing backup. */
        for (;;) {
                _cleanup_free_ char *name = NULL;
                StoreEntry e = {};

                backup_id_format(now_usec(CLOCK_REALTIME), ret);
                name = manifest_name(ret);
                if (store_stat(s, name, &e) < 0)
                        return;
                store_entry_done(&e);
                usleep(200 * 1000);
        }
}

/* The leftover cleanup recognises a job's objects by their names: a name it would not recognise must not
 * go into a manifest (it could not be cleaned up after an interrupted run, or would look like another
 * job's). A programming error, caught by every test that runs the job. */
static int job_check_object_names(const JobDefinition *def, const Manifest *m) {
        for (size_t i = 0; i < m->n_objects; i++) {
                const char *rest = startswith(m->objects[i].name, m->id);
                bool ok = false;

                for (size_t j = 0; rest && def->object_suffixes && def->object_suffixes[j]; j++)
                        ok = ok || (endswith(def->object_suffixes[j], "/")
                                            ? !!startswith(rest, def->object_suffixes[j])
                                            : streq(rest, def->object_suffixes[j]));
                if (!ok || !backup_object_belongs(m->id, m->objects[i].name))
                        return err_set(-EINVAL, EX_SOFTWARE,
                                       "internal error: job %s wrote object %s, a name its leftover cleanup "
                                       "does not know; please report this",
                                       def->name, m->objects[i].name);
        }
        return 0;
}

static void state_set(char **field, const char *value) {
        free(*field);
        *field = xstrdup(strempty(value));
}

int job_run(const Config *c, const char *job, char **ret_id) {
        const JobDefinition *def = job_find(job);
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_free_ char *destination = NULL;
        _cleanup_(job_state_done) JobState st = {};
        JobContext ctx = { .config = c, .job = job };
        char hostname[256] = "";
        uint64_t start_mono, started;
        int r;

        if (!def)
                return err_set(-EINVAL, EX_USAGE, "unknown job \"%s\" (jobs: postgres, mirror, config, volumes)", job);
        r = job_lock(c->agent.state_dir, job, false, &lock_fd);
        if (r < 0) {
                /* Not a failed run: the state belongs to the run that holds the lock. */
                log_error("%s", err_message());
                return r;
        }

        (void) job_state_read(c->agent.state_dir, job, &st);
        start_mono = now_usec(CLOCK_MONOTONIC);
        started = now_usec(CLOCK_REALTIME);
        state_set(&st.state, "running");
        state_set(&st.progress_text, "starting");
        st.progress = -1;
        st.pid = (uint64_t) getpid();
        st.last_start_usec = started;
        (void) job_state_write(c->agent.state_dir, &st);
        ctx.state = &st;
        log_job_event(LOG_INFO, SKYFORGE_MESSAGE_JOB_STARTED, job, NULL, UINT64_MAX, UINT64_MAX,
                      "Job %s started.", job);
        job_monitor_ping(c, job, JOB_PING_START, NULL);

        err_clear();
        destination = config_job_destination(c, job);
        if (def->no_manifest) {
                /* The id names the run in the state and the journal; nothing is stored under it. */
                backup_id_format(started, ctx.id);
                r = 0;
        } else
                r = store_open_location_for_write(c, destination, &store);
        if (r >= 0 && !def->no_manifest) {
                ctx.store = store;
                job_new_id(store, ctx.id);
                r = backup_cleanup_orphans(store, NULL, job, def->object_suffixes);
        }
        if (r >= 0) {
                m = xcalloc(1, sizeof *m);
                m->job = xstrdup(job);
                m->id = xstrdup(ctx.id);
                m->started_usec = started;
                m->agent_version = xstrdup(PACKAGE_VERSION);
                gethostname(hostname, sizeof hostname - 1);
                m->hostname = xstrdup(hostname);
                r = def->backup(&ctx, m);
                if (r >= 0 && job_cancel_requested)
                        r = err_set(-ECANCELED, EX_TEMPFAIL, "job %s was cancelled", job);
        }
        if (r >= 0 && !def->no_manifest)
                r = job_check_object_names(def, m);
        if (r >= 0 && !def->no_manifest) {
                m->finished_usec = now_usec(CLOCK_REALTIME);
                r = manifest_store(store, m);
                if (r < 0)
                        r = err_setf(r, "cannot write the manifest of backup %s to %s: %s", ctx.id, destination,
                                     err_message() ?: strerror(-r));
        }

        uint64_t duration = now_usec(CLOCK_MONOTONIC) - start_mono;
        st.pid = 0;
        st.progress = -1;
        state_set(&st.progress_text, "");
        st.last_end_usec = now_usec(CLOCK_REALTIME);
        if (r < 0) {
                _cleanup_free_ char *msg = xstrdup(err_message() ?: strerror(-r));
                int saved_code = err_exit_code(r);

                state_set(&st.state, "failed");
                state_set(&st.last_result, "failed");
                state_set(&st.last_error, msg);
                (void) job_state_write(c->agent.state_dir, &st);
                log_job_event(LOG_ERR, SKYFORGE_MESSAGE_JOB_FAILED, job, NULL, UINT64_MAX, duration,
                              "Job %s failed: %s", job, msg);
                job_monitor_write_metrics(c);
                job_monitor_ping(c, job, JOB_PING_FAIL, msg);
                /* Writing the state may have replaced the error detail; restore it for the caller. */
                return err_set(r, saved_code, "%s", msg);
        }

        char size[FORMAT_BYTES_MAX];
        state_set(&st.state, "idle");
        state_set(&st.last_result, "success");
        state_set(&st.last_error, "");
        state_set(&st.last_backup_id, ctx.id);
        st.last_bytes = m->bytes;
        st.last_success_usec = st.last_end_usec;
        (void) job_state_write(c->agent.state_dir, &st);
        log_job_event(LOG_INFO, SKYFORGE_MESSAGE_JOB_SUCCEEDED, job, ctx.id, m->bytes, duration,
                      "Job %s succeeded: %s %s, %s in %.1f s.", job, def->no_manifest ? "run" : "backup", ctx.id,
                      format_bytes(m->bytes, size, sizeof size), (double) duration / USEC_PER_SEC);
        job_monitor_write_metrics(c);
        job_monitor_ping(c, job, JOB_PING_SUCCESS, NULL);

        /* Retention only after a new backup has succeeded; its failure does not fail the backup. It
         * deletes, so it waits (bounded) for a verify or restore that reads the same backups. */
        if (def->has_retention && store) {
                _cleanup_close_ int read_fd = -EBADF;

                /* Without waiting: the backup is done, and a restore test may read for hours. What it
                 * would delete stays until the next run or `prune`. */
                r = job_read_lock(c->agent.state_dir, job, true, 0, &read_fd);
                if (r == -EBUSY)
                        log_notice("Retention of %s deferred: its backups are being read (verify, restore) "
                                   "or pruned; the next run or `skyforge-agent prune %s` applies it.",
                                   job, job);
                else if (r >= 0)
                        r = job_prune_store(c, job, store, false, NULL);
                if (r < 0 && r != -EBUSY)
                        log_warning("retention for %s failed: %s; the new backup %s is safe.", job,
                                    err_message() ?: "unknown error", ctx.id);
        }
        if (ret_id)
                *ret_id = xstrdup(ctx.id);
        return 0;
}

/* What is wrong with each backup, by index (NULL: intact or not looked at). */
typedef struct Damages {
        char **items;
        size_t n;
} Damages;

static void damages_done(Damages *d) {
        for (size_t i = 0; i < d->n; i++)
                free(d->items[i]);
        free(d->items);
}

int job_prune_store(const Config *c, const char *job, Store *s, bool dry_run, FILE *out) {
        _cleanup_(backup_list_done) BackupList all = {};
        _cleanup_free_ RetentionItem *items = NULL;
        _cleanup_free_ Manifest **mine = NULL, **kept = NULL;
        _cleanup_(damages_done) Damages damage = {};
        unsigned days, keep_min, intact = 0;
        size_t n_mine = 0, n_kept = 0;
        int r, deleted = 0;

        job_retention_settings(c, job, &days, &keep_min);
        /* Every job's manifests: an object another job's kept backup lists is not this job's to delete. */
        r = backup_list_load(s, NULL, &all);
        if (r < 0)
                return r;
        mine = xcalloc(all.n + 1, sizeof *mine);
        kept = xcalloc(all.n + 1, sizeof *kept);
        items = xcalloc(all.n + 1, sizeof *items);
        damage = (Damages){ .items = xcalloc(all.n + 1, sizeof(char *)), .n = all.n };
        for (size_t i = 0; i < all.n; i++)
                if (streq(all.items[i]->job, job))
                        mine[n_mine++] = all.items[i];
                else
                        kept[n_kept++] = all.items[i];

        /* Only intact backups count toward keep_min. Sizes suffice (no hashing); once keep_min intact ones
         * are found, the older ones are decided by age alone and need no look. */
        for (size_t i = 0; i < n_mine; i++) {
                if (intact < keep_min) {
                        damage.items[i] = backup_size_damage(s, mine[i]);
                        if (!damage.items[i])
                                intact++;
                }
                items[i] = (RetentionItem){ .id = mine[i]->id,
                                            .time_usec = mine[i]->started_usec,
                                            .damage = damage.items[i] };
        }
        (void) retention_select(items, n_mine, now_usec(CLOCK_REALTIME), days, keep_min);
        if (streq(job, "volumes"))
                volumes_retention_protect(mine, items, n_mine);
        for (size_t i = 0; i < n_mine; i++)
                if (!items[i].remove)
                        kept[n_kept++] = mine[i];

        if (out)
                for (size_t i = 0; i < all.n_damaged; i++)
                        fprintf(out, "damaged %s  %s; left alone, not counted toward keep_min\n",
                                all.damaged[i].id, all.damaged[i].message);
        for (size_t i = 0; i < n_mine; i++) {
                if (!items[i].remove) {
                        if (out)
                                fprintf(out, "keep   %s %s  %s\n", job, items[i].id, items[i].reason);
                        continue;
                }
                if (dry_run) {
                        if (out)
                                fprintf(out, "would delete %s %s  %s\n", job, items[i].id, items[i].reason);
                        deleted++;
                        continue;
                }
                r = backup_delete(s, mine[i], kept, n_kept);
                if (r < 0)
                        return r;
                deleted++;
                if (out)
                        fprintf(out, "deleted %s %s  %s%s\n", job, items[i].id, items[i].reason,
                                r > 0 ? "; objects it does not own were left (see the warnings)" : "");
                log_job_event(LOG_INFO, SKYFORGE_MESSAGE_BACKUP_PRUNED, job, items[i].id, mine[i]->bytes,
                              UINT64_MAX, "Pruned backup %s of %s: %s.", items[i].id, job, items[i].reason);
        }
        return deleted;
}

int job_prune(const Config *c, const char *job, bool dry_run, FILE *out) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_free_ char *destination = config_job_destination(c, job);
        _cleanup_close_ int read_fd = -EBADF;
        int r;

        if (!dry_run) {
                r = job_read_lock(c->agent.state_dir, job, true, JOB_READ_LOCK_TIMEOUT_USEC, &read_fd);
                if (r < 0)
                        return r;
        }
        r = store_open_location(c, destination, &store);
        if (r < 0)
                return r;
        return job_prune_store(c, job, store, dry_run, out);
}

int job_source_decrypt(Source *upstream, const Manifest *m, const char *identity_file, const char *section,
                       Source **ret) {
        _cleanup_(source_freep) Source *up = upstream;
        _cleanup_free_ char *recipients = NULL;
        Source *s;
        int r;

        STRV_FOREACH(p, m->recipients) {
                char *j = xasprintf("%s%s%s", strempty(recipients), recipients ? ", " : "", *p);
                free(recipients);
                recipients = j;
        }
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
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                int code = err_exit_code(r);
                return err_set(r, code, "cannot decrypt backup %s with %s: %s", m->id, identity_file, why);
        }
        TAKE_PTR(up);
        *ret = s;
        return 0;
}
