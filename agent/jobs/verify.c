/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sys/file.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/job.h"
#include "jobs/verify.h"
#include "jobs/volumes-chain.h"
#include "log/log.h"
#include "pipe/pipe.h"

#define VERIFY_BUFFER_SIZE (256 * 1024)

int backup_check_objects(Store *s, const Manifest *m, char *const *only, Progress *p, char ***problems) {
        _cleanup_free_ uint8_t *buf = xmalloc(VERIFY_BUFFER_SIZE);
        int n = 0;

        for (size_t i = 0; i < m->n_objects; i++) {
                const ManifestObject *o = m->objects + i;
                _cleanup_(source_freep) Source *src = NULL;
                StoreReader *rd = NULL;
                Digest d = {};
                ssize_t k;
                int r;

                if (only && !strv_contains(only, o->name))
                        continue;
                r = store_reader_open(s, o->name, 0, &rd);
                if (r == -ENOENT) {
                        strv_push(problems, xasprintf("object %s/%s is missing", s->location, o->name));
                        n++;
                        continue;
                }
                if (r < 0)
                        return err_set(r, EX_IOERR, "cannot read %s/%s: %s", s->location, o->name,
                                       err_message() ?: strerror(-r));
                src = source_digest_new(source_store_new(rd), &d);
                while ((k = source_read(src, buf, VERIFY_BUFFER_SIZE)) > 0)
                        if (p)
                                progress_update(p, p->done + (uint64_t) k);
                if (k < 0)
                        return err_set((int) k, EX_IOERR, "cannot read %s/%s: %s", s->location, o->name,
                                       err_message() ?: strerror((int) -k));
                if (d.bytes != o->bytes) {
                        strv_push(problems,
                                  xasprintf("%s/%s has %" PRIu64 " bytes, the manifest says %" PRIu64
                                            " (truncated or replaced)",
                                            s->location, o->name, d.bytes, o->bytes));
                        n++;
                } else if (!streq(d.sha256_hex, o->sha256)) {
                        strv_push(problems,
                                  xasprintf("SHA-256 of %s/%s is %s, the manifest says %s (corrupt)",
                                            s->location, o->name, d.sha256_hex, o->sha256));
                        n++;
                }
        }
        return n;
}

int backup_verify_objects(Store *s, const Manifest *m, bool show_progress) {
        _cleanup_strv_free_ char **problems = xcalloc(1, sizeof(char *));
        Progress p = {};
        int r;

        if (show_progress)
                progress_init(&p, "verifying", m->bytes, NULL, NULL);
        r = backup_check_objects(s, m, NULL, show_progress ? &p : NULL, &problems);
        if (show_progress)
                progress_done(&p);
        if (r < 0)
                return r;
        if (r > 0)
                return err_set(-EBADMSG, EX_DATAERR,
                               "backup %s is damaged: %s; pick another backup from `skyforge-agent list`",
                               m->id, problems[0]);
        return 0;
}

void restore_test_result_done(RestoreTestResult *r) {
        free(r->backup_id);
        for (size_t i = 0; i < r->n_databases; i++)
                free(r->databases[i].name);
        free(r->databases);
        strv_free(r->missing);
        *r = (RestoreTestResult){};
}

static json_object *restore_test_to_json(const RestoreTestResult *rt, int r) {
        json_object *o = json_object_new_object(), *dbs = json_object_new_array(), *missing;

        json_object_object_add(o, "backup_id", json_object_new_string(strempty(rt->backup_id)));
        json_object_object_add(o, "result", json_object_new_string(r >= 0 ? "ok" : "failed"));
        if (r < 0)
                json_object_object_add(o, "error", json_object_new_string(err_message() ?: strerror(-r)));
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

static void restore_test_print(FILE *out, const RestoreTestResult *rt, int r) {
        if (!out)
                return;
        if (r < 0) {
                fprintf(out, "postgres %s restore test FAILED: %s\n", strempty(rt->backup_id),
                        err_message() ?: strerror(-r));
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

int verify_job(const Config *c, const char *job, const VerifyOptions *o) {
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(backup_list_done) BackupList l = {};
        _cleanup_(restore_test_result_done) RestoreTestResult rt = {};
        _cleanup_free_ char *dest = config_job_destination(c, job), *first_problem = NULL, *finished = NULL;
        _cleanup_free_ char *none = NULL;
        _cleanup_free_ VerifyEntry *sel = NULL;
        json_object *result = NULL, *backups = NULL;
        size_t n_sel = 0, n_damaged = 0;
        uint64_t start = now_usec(CLOCK_MONOTONIC), total = 0;
        Progress p = {};
        int r, rt_r = 0;

        /* The read lock, shared: a backup run of the job goes on beside the verify (its retention waits
         * for the lock, so it cannot delete what is being read), and so does another verify. */
        r = job_read_lock(c->agent.state_dir, job, false, JOB_READ_LOCK_TIMEOUT_USEC, &lock_fd);
        if (r < 0)
                return r;
        r = store_open_location(c, dest, &s);
        if (r >= 0)
                r = backup_list_load(s, job, &l);
        if (r >= 0)
                r = verify_select(&l, o, &sel, &n_sel);
        if (r < 0)
                return r;

        /* Nothing to verify is no good news: a weekly verify must not stay green while no backup is made. */
        if (n_sel == 0) {
                none = xasprintf("no backups of %s at %s; has the job run? see `skyforge-agent status`", job,
                                 s->location);
                if (o->out)
                        fprintf(o->out, "%s: %s\n", job, none);
        }
        for (size_t i = 0; i < n_sel; i++)
                if (sel[i].m)
                        total += sel[i].m->bytes;
        progress_init(&p, "verifying", total, NULL, NULL);
        backups = json_object_new_array();
        for (size_t i = 0; i < n_sel; i++) {
                _cleanup_strv_free_ char **problems = xcalloc(1, sizeof(char *));
                json_object *b = json_object_new_object(), *pa = json_object_new_array();
                const Manifest *m = sel[i].m;

                if (m)
                        r = backup_check_objects(s, m, NULL, &p, &problems);
                else {
                        strv_push(&problems, xstrdup(sel[i].manifest_problem));
                        r = 1;
                }
                /* An incremental is only as good as the backups it builds on. */
                if (m && r >= 0 && streq(job, "volumes")) {
                        ChainCheck cc = { .s = s, .p = &p, .problems = &problems };
                        int k = volumes_chain_objects(&l, m, chain_check_one, &cc);
                        r = k < 0 ? k : r + cc.n;
                }
                if (r < 0) {
                        json_object_put(b);
                        json_object_put(pa);
                        break;
                }
                STRV_FOREACH(pr, problems)
                        json_object_array_add(pa, json_object_new_string(*pr));
                json_object_object_add(b, "id", json_object_new_string(sel[i].id));
                json_object_object_add(b, "ok", json_object_new_boolean(r == 0));
                json_object_object_add(b, "manifest_ok", json_object_new_boolean(m != NULL));
                json_object_object_add(b, "objects", json_object_new_uint64(m ? m->n_objects : 0));
                json_object_object_add(b, "bytes", json_object_new_uint64(m ? m->bytes : 0));
                json_object_object_add(b, "problems", pa);
                json_object_array_add(backups, b);
                if (r > 0) {
                        n_damaged++;
                        if (!first_problem)
                                first_problem =
                                        xasprintf("backup %s is damaged: %s", sel[i].id, problems[0]);
                }
                if (o->out) {
                        char size[FORMAT_BYTES_MAX];
                        if (!m)
                                fprintf(o->out, "%s %s DAMAGED (its manifest cannot be used)\n", job,
                                        sel[i].id);
                        else if (r == 0)
                                fprintf(o->out, "%s %s ok (%zu objects, %s)\n", job, m->id, m->n_objects,
                                        format_bytes(m->bytes, size, sizeof size));
                        else
                                fprintf(o->out, "%s %s DAMAGED (%d of %zu objects)\n", job, m->id, r,
                                        m->n_objects);
                        STRV_FOREACH(pr, problems)
                                fprintf(o->out, "  %s\n", *pr);
                        fflush(o->out);
                }
                r = 0;
        }
        progress_done(&p);
        if (r < 0) {
                json_object_put(backups);
                return r;
        }

        if (o->restore_test && streq(job, "postgres")) {
                bool named = o->id && !streq(o->id, "latest");
                const Manifest *target = named && n_sel > 0 ? sel[0].m : l.n > 0 ? l.items[0] : NULL;

                if (n_sel == 0)
                        rt_r = err_set(-ENOENT, EX_NOINPUT,
                                       "no postgres backup to restore-test in %s; run "
                                       "`skyforge-agent run postgres` first",
                                       s->location);
                else if (!target)
                        rt_r = err_set(-EBADMSG, EX_DATAERR,
                                       "no postgres backup in %s has a usable manifest to restore-test",
                                       s->location);
                else
                        rt_r = postgres_restore_test(c, s, target, &rt);
                restore_test_print(o->out, &rt, rt_r);
        }

        finished = format_iso8601(now_usec(CLOCK_REALTIME));
        bool ok = n_damaged == 0 && rt_r >= 0 && !none;
        result = json_object_new_object();
        json_object_object_add(result, "result",
                               json_object_new_string(ok              ? "ok"
                                                      : n_damaged > 0 ? "damaged"
                                                      : none          ? "no-backups"
                                                                      : "failed"));
        if (none)
                json_object_object_add(result, "error", json_object_new_string(none));
        json_object_object_add(result, "finished", json_object_new_string(finished));
        json_object_object_add(result, "checked", json_object_new_uint64(n_sel));
        json_object_object_add(result, "damaged", json_object_new_uint64(n_damaged));
        json_object_object_add(result, "backups", backups);
        if (o->restore_test && streq(job, "postgres"))
                json_object_object_add(result, "restore_test", restore_test_to_json(&rt, rt_r));

        /* The error of the restore test, if any, is the message of the whole run unless a backup is
         * damaged; keep it before the state write below replaces the error detail. */
        _cleanup_free_ char *rt_error = rt_r < 0 ? xstrdup(err_message() ?: strerror(-rt_r)) : NULL;
        int rt_code = rt_r < 0 ? err_exit_code(rt_r) : 0;

        r = job_state_write_verify(c->agent.state_dir, job,
                                   json_object_to_json_string_ext(
                                           result, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (r < 0)
                log_warning("%s; the verify result is not recorded.", err_message() ?: strerror(-r));
        json_object_put(result);

        uint64_t duration = now_usec(CLOCK_MONOTONIC) - start;
        const char *id = rt.backup_id ?: n_sel > 0 ? sel[0].id : NULL;
        if (ok)
                log_job_event(LOG_INFO, SKYFORGE_MESSAGE_VERIFY, job, id, total, duration,
                              "Verified %zu backup(s) of %s%s: all good.", n_sel, job,
                              rt.backup_id ? " and restored the newest into a throwaway cluster" : "");
        else
                log_job_event(LOG_ERR, SKYFORGE_MESSAGE_VERIFY, job, id, total, duration,
                              "Verify of %s found problems: %s", job, first_problem ?: none ?: rt_error);

        if (first_problem)
                return err_set(-EBADMSG, EX_DATAERR,
                               "%s (%zu of %zu backup(s) of %s damaged; find a good one "
                               "with `skyforge-agent verify %s --all`)",
                               first_problem, n_damaged, n_sel, job, job);
        if (none)
                return err_set(-ENOENT, EX_NOINPUT, "%s", none);
        if (rt_r < 0)
                return err_set(rt_r, rt_code, "%s", rt_error);
        return 0;
}
