/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sys/file.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/job.h"
#include "jobs/lease-guard.h"
#include "jobs/monitor.h"
#include "jobs/volumes-chain.h"
#include "jobs/volumes-nodes.h"
#include "log/log.h"
#include "pipe/pipe.h"
#include "store/retention.h"

static const JobDefinition *const job_definitions[] = { &job_postgres, &job_mirror, &job_config, &job_volumes,
                                                        &job_basebackup };

const JobDefinition *job_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(job_definitions); i++)
                if (streq(job_definitions[i]->name, name))
                        return job_definitions[i];
        return NULL;
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

void job_run_result_done(JobRunResult *res) {
        free(res->retention_error);
        free(res->skip_message);
        failure_done(&res->failure);
        *res = (JobRunResult){};
}

/* The state file at the start of a run: running, with this process's pid. */
static void job_state_running(const Config *c, JobState *st, uint64_t started) {
        state_set(&st->state, "running");
        state_set(&st->progress_text, "starting");
        st->progress = -1;
        st->pid = (uint64_t) getpid();
        st->last_start_usec = started;
        state_set(&st->lease_holder, "");
        (void) job_state_write(c->agent.state_dir, st);
}

/* The renderers of a finished run: the state file, the journal entry, metrics and the ping. Each may fail
 * and log so; none changes the run's failure (ERR_KEEP_SCOPE). */
static void job_run_result_to_state(const Config *c, const JobRunResult *res, JobState *st) {
        ERR_KEEP_SCOPE();

        st->pid = 0;
        st->progress = -1;
        state_set(&st->progress_text, "");
        st->last_end_usec = res->finished_usec;
        if (res->failure.error < 0) {
                state_set(&st->state, "failed");
                state_set(&st->last_result, "failed");
                state_set(&st->last_error, failure_message(&res->failure));
        } else {
                state_set(&st->state, "idle");
                state_set(&st->last_result, "success");
                state_set(&st->last_error, "");
                state_set(&st->last_backup_id, res->id);
                st->last_bytes = res->bytes;
                st->last_success_usec = st->last_end_usec;
        }
        (void) job_state_write(c->agent.state_dir, st);
}

static void job_run_result_to_journal(const JobRunResult *res) {
        char size[FORMAT_BYTES_MAX];
        ERR_KEEP_SCOPE();

        if (res->failure.error < 0)
                log_job_event(LOG_ERR, SKYFORGE_MESSAGE_JOB_FAILED, res->job, NULL, UINT64_MAX,
                              res->duration_usec, "Job %s failed: %s", res->job,
                              failure_message(&res->failure));
        else
                log_job_event(LOG_INFO, SKYFORGE_MESSAGE_JOB_SUCCEEDED, res->job, res->id, res->bytes,
                              res->duration_usec, "Job %s succeeded: %s %s, %s in %.1f s.", res->job,
                              res->no_manifest ? "run" : "backup", res->id,
                              format_bytes(res->bytes, size, sizeof size),
                              (double) res->duration_usec / USEC_PER_SEC);
}

static void job_run_result_to_monitor(const Config *c, const JobRunResult *res) {
        ERR_KEEP_SCOPE();

        job_monitor_write_metrics(c);
        job_monitor_ping(c, res->job, res->failure.error < 0 ? JOB_PING_FAIL : JOB_PING_SUCCESS,
                         failure_message(&res->failure));
}

/* The backup step and everything it needs: store, id, leftovers, manifest. */
static int job_run_work(const Config *c, const JobDefinition *def, JobContext *ctx, uint64_t started,
                        LeaseGuard *lease, Store **store, Manifest **ret_m) {
        _cleanup_free_ char *destination = NULL;
        _cleanup_(manifest_freep) Manifest *m = NULL;
        char hostname[256] = "";
        int r;

        /* volumes: this node's folder, DEST/NODE/ (volumes-nodes.h). */
        r = volumes_job_location(c, def->name, &destination);
        if (r < 0)
                return r;
        if (def->no_manifest) {
                /* The id names the run in the state and the journal; nothing is stored under it. */
                backup_id_format(started, ctx->id);
                r = 0;
        } else
                r = store_open_location_for_write(c, destination, store);
        if (r >= 0 && !def->no_manifest) {
                ctx->store = *store;
                job_new_id(*store, ctx->id);
                r = backup_cleanup_orphans(*store, NULL, def->name, def->object_suffixes);
        }
        if (r < 0)
                return r;
        m = xcalloc(1, sizeof *m);
        m->job = xstrdup(def->name);
        m->id = xstrdup(ctx->id);
        m->started_usec = started;
        m->agent_version = xstrdup(PACKAGE_VERSION);
        gethostname(hostname, sizeof hostname - 1);
        m->hostname = xstrdup(hostname);
        *ret_m = m; /* bytes of a run that failed late are still of interest: set before the steps */
        r = def->backup(ctx, m);
        if (r >= 0 && job_cancel_requested)
                r = err_set(-ECANCELED, EX_TEMPFAIL, "job %s was cancelled", def->name);
        if (r >= 0 && !def->no_manifest)
                r = job_check_object_names(def, m);
        r = lease_guard_check(lease, r, "writing the manifest");
        if (r >= 0 && !def->no_manifest) {
                m->finished_usec = now_usec(CLOCK_REALTIME);
                r = manifest_store(*store, m);
                if (r < 0)
                        r = err_setf(r, "cannot write the manifest of backup %s to %s: %s", ctx->id,
                                     destination, err_message() ?: strerror(-r));
        }
        TAKE_PTR(m);
        return r;
}

/* Retention only after a new backup has succeeded; its failure does not fail the backup. It deletes, so it
 * waits (bounded) for a verify or restore that reads the same backups. */
static void job_run_retention(const Config *c, const char *job, Store *store, LeaseGuard *lease,
                              JobRunResult *res) {
        _cleanup_close_ int read_fd = -EBADF;
        ERR_KEEP_SCOPE();
        int r;

        /* Without waiting: the backup is done, and a restore test may read for hours. What it would delete
         * stays until the next run or `prune`. */
        r = job_read_lock(c->agent.state_dir, job, true, 0, &read_fd);
        if (r >= 0 && lease_guard_check(lease, 0, "applying retention") < 0) {
                res->retention_error = xstrdup(err_message() ?: "lost the Lease");
                log_warning("Retention of %s not applied: %s; the new backup %s is safe.", job,
                            res->retention_error, res->id);
                return;
        }
        if (r == -EBUSY) {
                res->retention_deferred = true;
                log_notice(
                        "Retention of %s deferred: its backups are being read (verify, restore) or pruned; "
                        "the next run or `skyforge-agent prune %s` applies it.",
                        job, job);
                return;
        }
        if (r >= 0)
                r = job_prune_store(c, job, store, false, NULL);
        if (r >= 0) {
                res->pruned = (unsigned) r;
                return;
        }
        res->retention_error = xstrdup(err_message() ?: strerror(-r));
        log_warning("retention for %s failed: %s; the new backup %s is safe.", job, res->retention_error,
                    res->id);
}

int job_run_result(const Config *c, const char *job, JobRunResult *res) {
        const JobDefinition *def = job_find(job);
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_(job_state_done) JobState st = {};
        _cleanup_(lease_guard_freep) LeaseGuard *lease = NULL;
        JobContext ctx = { .config = c, .job = job };
        uint64_t start_mono;
        int r;

        *res = (JobRunResult){ .job = job, .started_usec = now_usec(CLOCK_REALTIME) };
        if (!def) {
                r = err_set(-EINVAL, EX_USAGE, "unknown job \"%s\" (jobs: postgres, mirror, config, volumes)", job);
                failure_capture(&res->failure, r);
                return r;
        }
        res->no_manifest = def->no_manifest;
        r = job_lock(c->agent.state_dir, job, false, &lock_fd);
        if (r < 0) {
                /* Not a failed run: the state belongs to the run that holds the lock. */
                failure_capture(&res->failure, r);
                log_error("%s", failure_message(&res->failure));
                return r;
        }
        res->ran = true;

        (void) job_state_read(c->agent.state_dir, job, &st);
        start_mono = now_usec(CLOCK_MONOTONIC);
        job_state_running(c, &st, res->started_usec);
        ctx.state = &st;
        log_job_event(LOG_INFO, SKYFORGE_MESSAGE_JOB_STARTED, job, NULL, UINT64_MAX, UINT64_MAX,
                      "Job %s started.", job);
        job_monitor_ping(c, job, JOB_PING_START, NULL);

        err_clear();
        /* More than one node: only the node holding the job's Lease runs it; the others end skipped. */
        r = lease_guard_begin(c, job, def->cluster_wide, &lease);
        if (r == LEASE_GUARD_SKIPPED) {
                res->skipped = true;
                res->skip_message = xstrdup(lease_guard_message(lease));
                lease_guard_record_skip(c, job, lease, &st, now_usec(CLOCK_MONOTONIC) - start_mono);
                job_monitor_write_metrics(c);
                res->duration_usec = now_usec(CLOCK_MONOTONIC) - start_mono;
                res->finished_usec = now_usec(CLOCK_REALTIME);
                return 0;
        }
        if (r >= 0)
                r = job_run_work(c, def, &ctx, res->started_usec, lease, &store, &m);
        /* Captured here, where the work returns: nothing below changes what the run's failure says. */
        failure_capture(&res->failure, r);
        memcpy(res->id, ctx.id, sizeof res->id);
        if (m) {
                res->bytes = m->bytes;
                res->n_objects = m->n_objects;
        }
        res->duration_usec = now_usec(CLOCK_MONOTONIC) - start_mono;
        res->finished_usec = now_usec(CLOCK_REALTIME);

        job_run_result_to_state(c, res, &st);
        job_run_result_to_journal(res);
        job_run_result_to_monitor(c, res);
        if (r >= 0 && def->has_retention && store)
                job_run_retention(c, job, store, lease, res);
        lease_guard_end(lease, r < 0 ? "failed" : "success", r < 0 || def->no_manifest ? NULL : res->id);
        return failure_raise(&res->failure);
}

int job_run(const Config *c, const char *job, char **ret_id) {
        _cleanup_(job_run_result_done) JobRunResult res = {};
        int r;

        r = job_run_result(c, job, &res);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = xstrdup(res.id);
        return 0;
}

json_object *job_run_result_to_json(const JobRunResult *res) {
        json_object *o = json_object_new_object();
        _cleanup_free_ char *started = format_iso8601(res->started_usec), *finished = NULL;

        json_object_object_add(o, "job", json_object_new_string(res->job));
        json_object_object_add(o, "result",
                               json_object_new_string(res->failure.error < 0 ? "failed"
                                                      : res->skipped          ? "skipped"
                                                                              : "success"));
        if (res->skipped)
                json_object_object_add(o, "message", json_object_new_string(res->skip_message));
        if (res->failure.error < 0) {
                json_object_object_add(o, "error", json_object_new_string(failure_message(&res->failure)));
                json_object_object_add(o, "exit_code", json_object_new_int(res->failure.exit_code));
        }
        /* The id of what was stored: none for a failed run (nothing under its id stays). */
        json_object_object_add(o, "id",
                               isempty(res->id) || res->failure.error < 0 ? NULL
                                                                          : json_object_new_string(res->id));
        json_object_object_add(o, "started", json_object_new_string(started));
        if (res->ran) {
                finished = format_iso8601(res->finished_usec);
                json_object_object_add(o, "finished", json_object_new_string(finished));
                json_object_object_add(o, "duration_usec", json_object_new_uint64(res->duration_usec));
        } else {
                json_object_object_add(o, "finished", NULL);
                json_object_object_add(o, "duration_usec", NULL);
        }
        if (!res->no_manifest) {
                json_object_object_add(o, "bytes", json_object_new_uint64(res->bytes));
                json_object_object_add(o, "objects", json_object_new_uint64(res->n_objects));
                if (res->failure.error >= 0) {
                        json_object *ret = json_object_new_object();
                        json_object_object_add(ret, "pruned", json_object_new_uint64(res->pruned));
                        json_object_object_add(ret, "deferred",
                                               json_object_new_boolean(res->retention_deferred));
                        json_object_object_add(
                                ret, "error",
                                res->retention_error ? json_object_new_string(res->retention_error) : NULL);
                        json_object_object_add(o, "retention", ret);
                }
        }
        return o;
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

void prune_result_done(PruneResult *res) {
        for (size_t i = 0; i < res->n_decisions; i++) {
                free(res->decisions[i].id);
                free(res->decisions[i].reason);
        }
        free(res->decisions);
        for (size_t i = 0; i < res->n_damaged; i++) {
                free(res->damaged[i].id);
                free(res->damaged[i].message);
        }
        free(res->damaged);
        free(res->skip_message);
        strv_free(res->more);
        failure_done(&res->failure);
        *res = (PruneResult){};
}

static PruneDecision *prune_result_add(PruneResult *res, const char *id, PruneAction action,
                                       const char *reason) {
        PruneDecision *d;

        res->decisions = xrealloc(res->decisions, (res->n_decisions + 1) * sizeof *res->decisions);
        d = res->decisions + res->n_decisions++;
        *d = (PruneDecision){ .id = xstrdup(id), .action = action, .reason = xstrdup(reason) };
        return d;
}

static int job_prune_store_result(const Config *c, const char *job, Store *s, bool dry_run,
                                  PruneResult *res) {
        _cleanup_(backup_list_done) BackupList all = {};
        _cleanup_free_ RetentionItem *items = NULL;
        _cleanup_free_ Manifest **mine = NULL, **kept = NULL;
        _cleanup_(damages_done) Damages damage = {};
        unsigned days, keep_min, intact = 0;
        size_t n_mine = 0, n_kept = 0;
        int r;

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

        res->damaged = xcalloc(all.n_damaged + 1, sizeof *res->damaged);
        for (size_t i = 0; i < all.n_damaged; i++)
                res->damaged[res->n_damaged++] =
                        (PruneDamaged){ .id = xstrdup(all.damaged[i].id),
                                        .message = xstrdup(all.damaged[i].message) };
        for (size_t i = 0; i < n_mine; i++) {
                PruneDecision *d;

                if (!items[i].remove) {
                        prune_result_add(res, items[i].id, PRUNE_KEEP, items[i].reason);
                        continue;
                }
                if (dry_run) {
                        prune_result_add(res, items[i].id, PRUNE_WOULD_DELETE, items[i].reason);
                        res->deleted++;
                        continue;
                }
                r = backup_delete(s, mine[i], kept, n_kept);
                if (r < 0)
                        return r;
                d = prune_result_add(res, items[i].id, PRUNE_DELETED, items[i].reason);
                d->foreign_objects_left = r > 0;
                d->bytes = mine[i]->bytes;
                res->deleted++;
                log_job_event(LOG_INFO, SKYFORGE_MESSAGE_BACKUP_PRUNED, job, items[i].id, mine[i]->bytes,
                              UINT64_MAX, "Pruned backup %s of %s: %s.", items[i].id, job, items[i].reason);
        }
        if (job_find(job) && job_find(job)->prune_more) {
                /* Its lines join the decisions (prune_result_print, the JSON's "more"). */
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&text, &len);
                if (!f)
                        return -ENOMEM;
                const Manifest *oldest_kept = NULL;
                for (size_t i = 0; i < n_mine; i++) /* newest first */
                        if (!items[i].remove)
                                oldest_kept = mine[i];
                r = job_find(job)->prune_more(c, s, oldest_kept, dry_run, f);
                fclose(f);
                res->more = strv_split(strempty(text), "\n");
                if (r < 0)
                        return r;
        }
        return (int) res->deleted;
}

void prune_result_print(const PruneResult *res, FILE *out) {
        for (size_t i = 0; i < res->n_damaged; i++)
                fprintf(out, "damaged %s  %s; left alone, not counted toward keep_min\n", res->damaged[i].id,
                        res->damaged[i].message);
        for (size_t i = 0; i < res->n_decisions; i++) {
                const PruneDecision *d = res->decisions + i;
                switch (d->action) {
                case PRUNE_KEEP:
                        fprintf(out, "keep   %s %s  %s\n", res->job, d->id, d->reason);
                        break;
                case PRUNE_WOULD_DELETE:
                        fprintf(out, "would delete %s %s  %s\n", res->job, d->id, d->reason);
                        break;
                case PRUNE_DELETED:
                        fprintf(out, "deleted %s %s  %s%s\n", res->job, d->id, d->reason,
                                d->foreign_objects_left
                                        ? "; objects it does not own were left (see the warnings)"
                                        : "");
                        break;
                }
        }
        STRV_FOREACH(l, res->more)
                fprintf(out, "%s\n", *l);
        fflush(out);
}

json_object *prune_result_to_json(const PruneResult *res) {
        static const char *const action[] = {
                [PRUNE_KEEP] = "keep", [PRUNE_WOULD_DELETE] = "would-delete", [PRUNE_DELETED] = "deleted"
        };
        json_object *o = json_object_new_object(), *backups = json_object_new_array(),
                    *damaged = json_object_new_array();

        json_object_object_add(o, "job", json_object_new_string(res->job));
        json_object_object_add(o, "result",
                               json_object_new_string(res->failure.error < 0 ? "failed"
                                                      : res->skipped          ? "skipped"
                                                                              : "ok"));
        if (res->skipped)
                json_object_object_add(o, "message", json_object_new_string(res->skip_message));
        if (res->failure.error < 0) {
                json_object_object_add(o, "error", json_object_new_string(failure_message(&res->failure)));
                json_object_object_add(o, "exit_code", json_object_new_int(res->failure.exit_code));
        }
        json_object_object_add(o, "dry_run", json_object_new_boolean(res->dry_run));
        json_object_object_add(o, "deleted", json_object_new_uint64(res->deleted));
        for (size_t i = 0; i < res->n_decisions; i++) {
                const PruneDecision *d = res->decisions + i;
                json_object *b = json_object_new_object();
                json_object_object_add(b, "id", json_object_new_string(d->id));
                json_object_object_add(b, "action", json_object_new_string(action[d->action]));
                json_object_object_add(b, "reason", json_object_new_string(d->reason));
                if (d->action == PRUNE_DELETED)
                        json_object_object_add(b, "foreign_objects_left",
                                               json_object_new_boolean(d->foreign_objects_left));
                json_object_array_add(backups, b);
        }
        json_object_object_add(o, "backups", backups);
        for (size_t i = 0; i < res->n_damaged; i++) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "id", json_object_new_string(res->damaged[i].id));
                json_object_object_add(d, "error", json_object_new_string(res->damaged[i].message));
                json_object_array_add(damaged, d);
        }
        json_object_object_add(o, "damaged", damaged);
        if (res->more) {
                json_object *more = json_object_new_array();
                STRV_FOREACH(l, res->more)
                        json_object_array_add(more, json_object_new_string(*l));
                json_object_object_add(o, "more", more);
        }
        return o;
}

int job_prune_store(const Config *c, const char *job, Store *s, bool dry_run, FILE *out) {
        _cleanup_(prune_result_done) PruneResult res = { .job = job, .dry_run = dry_run };
        int r;

        r = job_prune_store_result(c, job, s, dry_run, &res);
        if (out)
                prune_result_print(&res, out);
        return r;
}

int job_prune_result(const Config *c, const char *job, bool dry_run, PruneResult *res) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_free_ char *destination = NULL;
        _cleanup_close_ int read_fd = -EBADF;
        _cleanup_(lease_guard_freep) LeaseGuard *lease = NULL;
        int r = 0;

        *res = (PruneResult){ .job = job, .dry_run = dry_run };
        /* volumes: this node's folder only; never another node's, nor the shared one (volumes-nodes.h). */
        r = volumes_job_location(c, job, &destination);
        if (r < 0) {
                failure_capture(&res->failure, r);
                return r;
        }
        if (!dry_run) {
                /* It deletes from a location the whole cluster shares: under the job's Lease. */
                r = lease_guard_begin(c, job, job_find(job) && job_find(job)->cluster_wide, &lease);
                if (r == LEASE_GUARD_SKIPPED) {
                        res->skipped = true;
                        res->skip_message = xstrdup(lease_guard_message(lease));
                        log_notice("Prune of %s %s.", job, res->skip_message);
                        return 0;
                }
                if (r >= 0)
                        r = job_read_lock(c->agent.state_dir, job, true, JOB_READ_LOCK_TIMEOUT_USEC, &read_fd);
        }
        if (r >= 0)
                r = store_open_location(c, destination, &store);
        if (r == -ENOENT && !store) {
                /* A local destination no run has written to: nothing to delete, nothing created. */
                _cleanup_(failure_done) Failure f = failure_take(r);
                res->more = strv_split(failure_message(&f), "\n");
                lease_guard_end(lease, NULL, NULL);
                return 0;
        }
        if (r >= 0)
                r = lease_guard_check(lease, 0, "deleting backups");
        if (r >= 0)
                r = job_prune_store_result(c, job, store, dry_run, res);
        failure_capture(&res->failure, r);
        lease_guard_end(lease, NULL, NULL);
        return r;
}

int job_prune(const Config *c, const char *job, bool dry_run, FILE *out) {
        _cleanup_(prune_result_done) PruneResult res = {};
        int r;

        r = job_prune_result(c, job, dry_run, &res);
        if (out)
                prune_result_print(&res, out);
        return r < 0 ? failure_raise(&res.failure) : r;
}
