/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sys/file.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/context.h"
#include "jobs/restore-test.h"
#include "jobs/verify.h"
#include "jobs/volumes-chain.h"
#include "jobs/volumes-nodes.h"
#include "log/log.h"
#include "store/objects.h"

void restore_test_result_done(RestoreTestResult *r) {
        free(r->backup_id);
        for (size_t i = 0; i < r->n_databases; i++)
                free(r->databases[i].name);
        free(r->databases);
        strv_free(r->missing);
        *r = (RestoreTestResult){};
}

static json_object *restore_test_to_json(const RestoreTestResult *rt, const Failure *f) {
        json_object *o = json_object_new_object(), *dbs = json_object_new_array(), *missing;

        json_object_object_add(o, "backup_id", json_object_new_string(strempty(rt->backup_id)));
        json_object_object_add(o, "result", json_object_new_string(f->error < 0 ? "failed" : "ok"));
        if (f->error < 0)
                json_object_object_add(o, "error", json_object_new_string(failure_message(f)));
        json_object_object_add(o, "duration_usec", json_object_new_uint64(rt->duration_usec));
        for (size_t i = 0; i < rt->n_databases; i++) {
                json_object *d = json_object_new_object();
                json_object_object_add(d, "name", json_object_new_string(rt->databases[i].name));
                json_object_object_add(d, "tables", json_object_new_uint64(rt->databases[i].tables));
                json_object_object_add(d, "rows", json_object_new_uint64(rt->databases[i].rows));
                json_object_array_add(dbs, d);
        }
        json_object_object_add(o, "databases", dbs);
        missing = json_object_new_array();
        STRV_FOREACH(d, rt->missing)
                json_object_array_add(missing, json_object_new_string(*d));
        json_object_object_add(o, "missing_databases", missing);
        return o;
}

static void restore_test_print(FILE *out, const RestoreTestResult *rt, const Failure *f) {
        if (!out)
                return;
        if (f->error < 0) {
                fprintf(out, "postgres %s restore test FAILED: %s\n", strempty(rt->backup_id),
                        failure_message(f));
                return;
        }
        fprintf(out, "postgres %s restore test ok (%zu databases, %.1f s)\n", rt->backup_id, rt->n_databases,
                (double) rt->duration_usec / USEC_PER_SEC);
        fprintf(out, "  %-32s %8s %14s\n", "DATABASE", "TABLES", "ROWS");
        for (size_t i = 0; i < rt->n_databases; i++)
                fprintf(out, "  %-32s %8" PRIu64 " %14" PRIu64 "\n", rt->databases[i].name,
                        rt->databases[i].tables, rt->databases[i].rows);
}

/* The objects of the backups a volumes backup builds on. */
typedef struct ChainCheck {
        Store *s;
        Progress *p;
        char ***problems;
        int n;
} ChainCheck;

static int chain_check_one(const Manifest *m, char *const *objects, const char *problem, void *userdata) {
        ChainCheck *cc = userdata;
        int r;

        if (!m) {
                strv_push(cc->problems, xstrdup(problem));
                cc->n++;
                return 0;
        }
        r = backup_check_objects(cc->s, m, objects, cc->p, cc->problems);
        if (r > 0)
                cc->n += r;
        return r < 0 ? r : 0;
}

/* One backup a verify run checks: one with a usable manifest, or a damaged manifest (m NULL). */
typedef struct VerifyEntry {
        const char *id;
        const Manifest *m;
        const char *manifest_problem;
} VerifyEntry;

/* Every backup of the list, damaged manifests included, newest first. */
static VerifyEntry *verify_entries(const BackupList *l, size_t *ret_n) {
        VerifyEntry *e = xcalloc(l->n + l->n_damaged + 1, sizeof *e);
        size_t i = 0, j = 0, n = 0;

        while (i < l->n || j < l->n_damaged)
                if (j >= l->n_damaged || (i < l->n && strcmp(l->items[i]->id, l->damaged[j].id) > 0)) {
                        e[n++] = (VerifyEntry){ .id = l->items[i]->id, .m = l->items[i] };
                        i++;
                } else {
                        e[n++] = (VerifyEntry){ .id = l->damaged[j].id,
                                                .manifest_problem = l->damaged[j].message };
                        j++;
                }
        *ret_n = n;
        return e;
}

/* Picks the backups to check: the one named, all (--all), or by default the newest with a usable manifest
 * and every damaged one newer than it: a corrupt newest manifest must not leave the newest backup
 * unmentioned while an older one passes. */
static int verify_select(const BackupList *l, const VerifyOptions *o, VerifyEntry **ret, size_t *ret_n) {
        _cleanup_free_ VerifyEntry *e = NULL;
        size_t n_all, n = 0;
        const Manifest *m;
        int r;

        e = verify_entries(l, &n_all);
        if (o->all)
                n = n_all;
        else if (o->id && !streq(o->id, "latest")) {
                for (size_t i = 0; i < n_all && n == 0; i++)
                        if (streq(e[i].id, o->id)) {
                                e[0] = e[i];
                                n = 1;
                        }
                if (n == 0) {
                        r = backup_list_find(l, o->id, &m);
                        assert(r < 0);
                        return r;
                }
        } else
                while (n < n_all && !e[n++].m)
                        ;
        *ret = TAKE_PTR(e);
        *ret_n = n;
        return 0;
}

void verify_result_done(VerifyResult *res) {
        for (size_t i = 0; i < res->n_backups; i++) {
                free(res->backups[i].id);
                strv_free(res->backups[i].problems);
        }
        free(res->backups);
        free(res->none);
        free(res->first_problem);
        restore_test_result_done(&res->restore_test);
        failure_done(&res->restore_test_failure);
        failure_done(&res->failure);
        *res = (VerifyResult){};
}

static const char *verify_result_word(const VerifyResult *res) {
        return res->failure.error < 0 && !res->checked ? "failed"
               : res->n_damaged > 0                    ? "damaged"
               : res->none                             ? "no-backups"
               : res->failure.error < 0                ? "failed"
                                                       : "ok";
}

/* What the state file keeps (last_verify) and D-Bus shows (LastVerify). */
static json_object *verify_result_to_state_json(const VerifyResult *res) {
        _cleanup_free_ char *finished = format_iso8601(res->finished_usec);
        json_object *o = json_object_new_object(), *backups = json_object_new_array();

        json_object_object_add(o, "result", json_object_new_string(verify_result_word(res)));
        if (res->none)
                json_object_object_add(o, "error", json_object_new_string(res->none));
        json_object_object_add(o, "finished", json_object_new_string(finished));
        json_object_object_add(o, "checked", json_object_new_uint64(res->n_backups));
        json_object_object_add(o, "damaged", json_object_new_uint64(res->n_damaged));
        for (size_t i = 0; i < res->n_backups; i++) {
                const VerifyBackup *b = res->backups + i;
                json_object *e = json_object_new_object(), *pa = json_object_new_array();

                STRV_FOREACH (pr, b->problems)
                        json_object_array_add(pa, json_object_new_string(*pr));
                json_object_object_add(e, "id", json_object_new_string(b->id));
                json_object_object_add(e, "ok", json_object_new_boolean(strv_isempty(b->problems)));
                json_object_object_add(e, "manifest_ok", json_object_new_boolean(b->manifest_ok));
                json_object_object_add(e, "objects", json_object_new_uint64(b->n_objects));
                json_object_object_add(e, "bytes", json_object_new_uint64(b->bytes));
                json_object_object_add(e, "problems", pa);
                json_object_array_add(backups, e);
        }
        json_object_object_add(o, "backups", backups);
        if (res->restore_tested)
                json_object_object_add(o, "restore_test",
                                       restore_test_to_json(&res->restore_test, &res->restore_test_failure));
        return o;
}

json_object *verify_result_to_json(const VerifyResult *res) {
        json_object *o = json_object_new_object(), *state = verify_result_to_state_json(res);

        /* The state's shape with the job first, and any failure's message and exit code. */
        json_object_object_add(o, "job", json_object_new_string(res->job));
        json_object_object_foreach(state, key, value) {
                if (streq(key, "error"))
                        continue;
                json_object_object_add(o, key, json_object_get(value));
        }
        json_object_put(state);
        if (res->failure.error < 0) {
                json_object_object_add(o, "error", json_object_new_string(failure_message(&res->failure)));
                json_object_object_add(o, "exit_code", json_object_new_int(res->failure.exit_code));
        }
        return o;
}

static void verify_backup_print(FILE *out, const char *job, const VerifyBackup *b) {
        char size[FORMAT_BYTES_MAX];

        if (!out)
                return;
        if (!b->manifest_ok)
                fprintf(out, "%s %s DAMAGED (its manifest cannot be used)\n", job, b->id);
        else if (strv_isempty(b->problems))
                fprintf(out, "%s %s ok (%zu objects, %s)\n", job, b->id, b->n_objects,
                        format_bytes(b->bytes, size, sizeof size));
        else
                fprintf(out, "%s %s DAMAGED (%zu of %zu objects)\n", job, b->id, strv_length(b->problems),
                        b->n_objects);
        STRV_FOREACH (pr, b->problems)
                fprintf(out, "  %s\n", *pr);
        fflush(out);
}

static void verify_result_to_state(const Config *c, const VerifyResult *res) {
        json_object *o = verify_result_to_state_json(res);
        ERR_KEEP_SCOPE();
        int r;

        r = job_state_write_verify(
                c->agent.state_dir, res->job,
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (r < 0)
                log_warning("%s; the verify result is not recorded.", err_message() ?: strerror(-r));
        json_object_put(o);
}

static void verify_result_to_journal(const VerifyResult *res) {
        const char *id = res->restore_test.backup_id ?: res->n_backups > 0 ? res->backups[0].id : NULL;
        ERR_KEEP_SCOPE();

        if (res->failure.error >= 0)
                log_job_event(LOG_INFO, SKYFORGE_MESSAGE_VERIFY, res->job, id, res->total_bytes,
                              res->duration_usec, "Verified %zu backup(s) of %s%s: all good.",
                              res->n_backups, res->job,
                              res->restore_test.backup_id
                                      ? " and restored the newest into a throwaway cluster"
                                      : "");
        else
                log_job_event(LOG_ERR, SKYFORGE_MESSAGE_VERIFY, res->job, id, res->total_bytes,
                              res->duration_usec, "Verify of %s found problems: %s", res->job,
                              res->first_problem ?: res->none
                                                     ?: failure_message(&res->restore_test_failure));
}

/* Checks the selected backups into res: per backup, its problems (none: intact). A store failure stops. */
static int verify_check(const Config *c, Store *s, const BackupList *l, const VerifyEntry *sel, size_t n_sel,
                        const VerifyOptions *o, VerifyResult *res) {
        Progress p = {};
        int r = 0;

        for (size_t i = 0; i < n_sel; i++)
                if (sel[i].m)
                        res->total_bytes += sel[i].m->bytes;
        progress_init(&p, "verifying", res->total_bytes, NULL, NULL);
        res->backups = xcalloc(n_sel + 1, sizeof *res->backups);
        for (size_t i = 0; i < n_sel; i++) {
                VerifyBackup *b = res->backups + res->n_backups;
                const Manifest *m = sel[i].m;

                *b = (VerifyBackup){ .id = xstrdup(sel[i].id),
                                     .manifest_ok = m != NULL,
                                     .n_objects = m ? m->n_objects : 0,
                                     .bytes = m ? m->bytes : 0,
                                     .problems = xcalloc(1, sizeof(char *)) };
                if (m) {
                        r = backup_check_objects(s, m, NULL, &p, &b->problems);
                        /* A base backup is only as good as the WAL after it. */
                        if (r >= 0 && o->verify_more) {
                                int k = o->verify_more(c, m, &b->problems);
                                r = k < 0 ? k : r + k;
                        }
                        /* An incremental is only as good as the backups it builds on. */
                        if (r >= 0 && streq(res->job, "volumes")) {
                                ChainCheck cc = { .s = s, .p = &p, .problems = &b->problems };
                                int k = volumes_chain_objects(l, m, chain_check_one, &cc);
                                r = k < 0 ? k : r + cc.n;
                        }
                } else
                        strv_push(&b->problems, xstrdup(sel[i].manifest_problem));
                if (r < 0) {
                        free(b->id);
                        strv_free(b->problems);
                        *b = (VerifyBackup){};
                        break;
                }
                res->n_backups++;
                if (!strv_isempty(b->problems)) {
                        res->n_damaged++;
                        if (!res->first_problem)
                                res->first_problem =
                                        xasprintf("backup %s is damaged: %s", b->id, b->problems[0]);
                }
                verify_backup_print(o->out, res->job, b);
        }
        progress_done(&p);
        return r < 0 ? r : 0;
}

int verify_job_result(const Config *c, const char *job, const VerifyOptions *o, VerifyResult *res) {
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(backup_list_done) BackupList l = {};
        _cleanup_free_ char *dest = NULL;
        _cleanup_free_ VerifyEntry *sel = NULL;
        size_t n_sel = 0;
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        int r;

        *res = (VerifyResult){ .job = job };
        /* The read lock, shared: a backup run of the job goes on beside the verify (its retention waits
         * for the lock, so it cannot delete what is being read), and so does another verify. */
        r = volumes_job_location(c, job, &dest); /* volumes: this node's folder */
        if (r >= 0)
                r = job_read_lock(c->agent.state_dir, job, false, JOB_READ_LOCK_TIMEOUT_USEC, &lock_fd);
        if (r >= 0)
                r = store_open_location(c, dest, &s);
        if (r == -ENOENT && !s) {
                /* A local destination never written to: no backups, as in an empty one; it stays so. */
                _cleanup_(failure_done) Failure missing = failure_take(r);
                r = 0;
        } else if (r >= 0)
                r = backup_list_load(s, job, &l);
        if (r >= 0)
                r = verify_select(&l, o, &sel, &n_sel);
        if (r >= 0)
                r = verify_check(c, s, &l, sel, n_sel, o, res);
        if (r < 0) {
                /* The verify could not run: that says nothing about the backups, and is not recorded. */
                failure_capture(&res->failure, r);
                res->finished_usec = now_usec(CLOCK_REALTIME);
                return r;
        }
        res->checked = true;

        /* Nothing to verify is no good news: a weekly verify must not stay green while no backup is made. */
        if (n_sel == 0) {
                res->none = xasprintf("no backups of %s at %s; has the job run? see `skyforge-agent status`",
                                      job, s ? s->location : dest);
                if (o->out)
                        fprintf(o->out, "%s: %s\n", job, res->none);
        }

        if (o->restore_test && streq(job, "postgres")) {
                bool named = o->id && !streq(o->id, "latest");
                const Manifest *target = named && n_sel > 0 ? sel[0].m : l.n > 0 ? l.items[0] : NULL;

                if (n_sel == 0)
                        r = err_set(-ENOENT, EX_NOINPUT,
                                    "no postgres backup to restore-test in %s; run "
                                    "`skyforge-agent run postgres` first",
                                    s ? s->location : dest);
                else if (!target)
                        r = err_set(-EBADMSG, EX_DATAERR,
                                    "no postgres backup in %s has a usable manifest to restore-test",
                                    s->location);
                else
                        r = postgres_restore_test(c, s, target, &res->restore_test);
                failure_capture(&res->restore_test_failure, r);
                res->restore_tested = true;
                restore_test_print(o->out, &res->restore_test, &res->restore_test_failure);
        }

        /* The headline: a damaged backup, else no backups at all, else the restore test's failure. */
        if (res->first_problem) {
                r = err_set(-EBADMSG, EX_DATAERR,
                            "%s (%zu of %zu backup(s) of %s damaged; find a good one "
                            "with `skyforge-agent verify %s --all`)",
                            res->first_problem, res->n_damaged, res->n_backups, job, job);
                failure_capture(&res->failure, r);
        } else if (res->none) {
                r = err_set(-ENOENT, EX_NOINPUT, "%s", res->none);
                failure_capture(&res->failure, r);
        } else if (res->restore_test_failure.error < 0) {
                Failure *f = &res->failure;
                *f = (Failure){ .error = res->restore_test_failure.error,
                                .exit_code = res->restore_test_failure.exit_code,
                                .message = xstrdup(failure_message(&res->restore_test_failure)) };
        }
        res->finished_usec = now_usec(CLOCK_REALTIME);
        res->duration_usec = now_usec(CLOCK_MONOTONIC) - start;

        verify_result_to_state(c, res);
        verify_result_to_journal(res);
        return failure_raise(&res->failure);
}

int verify_job(const Config *c, const char *job, const VerifyOptions *o) {
        _cleanup_(verify_result_done) VerifyResult res = {};

        return verify_job_result(c, job, o, &res);
}
