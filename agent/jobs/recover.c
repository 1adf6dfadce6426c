/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <curl/curl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sysexits.h>

#include "jobs/backup-source.h"
#include "jobs/config.h"
#include "jobs/context.h"
#include "jobs/mirror.h"
#include "jobs/postgres.h"
#include "jobs/recover.h"
#include "jobs/recover-pg.h"
#include "log/log.h"
#include "pg/pg.h"
#include "store/objects.h"
#include "sys/process.h"

/* The newest backup that checks out: a damaged one is passed over, never half-applied. */
static int backup_source_newest_good(const BackupSource *src, const char *job, const Manifest **ret) {
        int r;

        for (size_t i = 0; i < src->list.n; i++) {
                r = backup_verify_objects(src->store, src->list.items[i], true);
                if (r >= 0) {
                        *ret = src->list.items[i];
                        return 0;
                }
                if (r != -EBADMSG)
                        return r;
                log_warning("%s; trying the next older backup.", err_message());
        }
        return err_set(-EBADMSG, EX_DATAERR, "none of the %zu %s backup(s) in %s verifies", src->list.n, job,
                       src->location);
}

/* Which databases of a backup exist on the target already: all of them means the step was done. */
static int postgres_target_state(const char *conninfo, const Manifest *m, size_t *ret_present,
                                 size_t *ret_total, char **ret_target) {
        _cleanup_(pg_server_info_done) PgServerInfo info = {};
        json_object *dbs;
        size_t present = 0, total = 0;
        int r;

        r = pg_preflight(conninfo, &info);
        if (r < 0)
                return r;
        if (m->extra && json_object_object_get_ex(m->extra, "databases", &dbs))
                for (size_t i = 0; i < json_object_array_length(dbs); i++) {
                        const char *d = json_object_get_string(json_object_array_get_idx(dbs, i));
                        /* Every cluster has these: they tell nothing. */
                        if (streq(d, "postgres") || streq(d, "template1"))
                                continue;
                        total++;
                        if (strv_contains(info.databases, d))
                                present++;
                }
        *ret_present = present;
        *ret_total = total;
        *ret_target = TAKE_PTR(info.target);
        return 0;
}

static const char *postgres_target(const Config *c, const RecoverOptions *o) {
        return o->postgres_to ?: strempty(c->postgres.conninfo);
}

static int postgres_plan(const Config *c, const RecoverOptions *o, FILE *out) {
        _cleanup_(backup_source_done) BackupSource src = {};
        _cleanup_free_ char *target = NULL;
        size_t present, total;
        char size[FORMAT_BYTES_MAX], raw[FORMAT_BYTES_MAX];
        const Manifest *m;
        int r;

        if (!c->postgres.present) {
                fprintf(out, "postgres   skip: [postgres] is not configured\n");
                return 0;
        }
        /* Physical (base backup + WAL) or logical (the dump, below), whichever is newer. */
        r = recover_pg_plan(c, o->postgres_from, out);
        if (r != 0)
                return r < 0 ? r : 0;
        r = backup_source_open(c, "postgres", &src);
        if (r < 0) {
                fprintf(out, "postgres   cannot: %s\n", err_message() ?: strerror(-r));
                return r;
        }
        m = src.list.items[0];
        fprintf(out, "postgres   restore backup %s (%s stored, %s of SQL, %zu object(s)) from %s%s\n", m->id,
                format_bytes(m->bytes, size, sizeof size), format_bytes(m->raw_bytes, raw, sizeof raw),
                m->n_objects, src.location, src.offsite ? " (offsite)" : "");
        if (src.list.n > 1)
                fprintf(out, "           (%zu older backup(s) to fall back on if it does not verify)\n",
                        src.list.n - 1);
        r = postgres_target_state(postgres_target(c, o), m, &present, &total, &target);
        if (r < 0)
                fprintf(out, "           target not reachable now: %s\n", err_message() ?: strerror(-r));
        else if (total > 0 && present == total)
                fprintf(out, "           target %s has all %zu database(s) already: nothing to do\n", target,
                        total);
        else if (present > 0)
                fprintf(out,
                        "           target %s has %zu of %zu database(s): the step will refuse (partly "
                        "restored; drop them or restore single databases)\n",
                        target, present, total);
        else
                fprintf(out, "           into %s\n", target);
        return 0;
}

static int postgres_run(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome,
                        char **ret_note) {
        _cleanup_(backup_source_done) BackupSource src = {};
        _cleanup_free_ char *target = NULL;
        const Manifest *m = NULL;
        size_t present, total;
        int r;

        if (!c->postgres.present) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note = xstrdup("[postgres] is not configured");
                return 0;
        }
        bool skipped;
        r = recover_pg_run(c, o->postgres_from, &skipped, ret_note);
        if (r != 0) {
                *ret_outcome = skipped ? RECOVER_SKIPPED : RECOVER_DONE;
                return r < 0 ? r : 0;
        }
        r = backup_source_open(c, "postgres", &src);
        if (r < 0)
                return r;
        r = backup_source_newest_good(&src, "postgres", &m);
        if (r < 0)
                return r;

        r = postgres_target_state(postgres_target(c, o), m, &present, &total, &target);
        if (r < 0)
                return r;
        if (total > 0 && present == total) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note =
                        xasprintf("%s has all %zu database(s) of backup %s already", target, total, m->id);
                return 0;
        }
        if (present > 0)
                return err_set(
                        -EEXIST, EX_CANTCREAT,
                        "%s has %zu of the %zu databases of backup %s: a partly restored "
                        "server is not overwritten; drop them and rerun, or restore single databases with "
                        "`skyforge-agent restore postgres --database NAME`",
                        target, present, total, m->id);
        r = postgres_restore(c, src.store, m, postgres_target(c, o));
        if (r < 0)
                return r;
        char size[FORMAT_BYTES_MAX];
        *ret_outcome = RECOVER_DONE;
        *ret_note = xasprintf("restored backup %s (%s) from %s into %s", m->id,
                              format_bytes(m->bytes, size, sizeof size), src.location, target);
        return 0;
}

/* ---- minio: the mirror engine in reverse ---- */

static int minio_plan(const Config *c, const RecoverOptions *o, FILE *out) {
        MirrorOptions mo = { .direction = MIRROR_REVERSE, .dry_run = true };
        MirrorStats st = {};
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];
        int r;

        if (!c->mirror.present) {
                fprintf(out, "minio      skip: [mirror] is not configured\n");
                return 0;
        }
        r = mirror_run(c, &mo, NULL, &st);
        if (r < 0) {
                fprintf(out, "minio      cannot: %s\n", err_message() ?: strerror(-r));
                return r;
        }
        fprintf(out, "minio      copy %" PRIu64 " object(s) (%s) from %s to remote %s; %" PRIu64
                     " (%s) already equal\n",
                st.copied, format_bytes(st.copied_bytes, a, sizeof a), c->mirror.destination,
                c->mirror.source,
                st.skipped, format_bytes(st.skipped_bytes, b, sizeof b));
        return 0;
}

static int minio_run(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome,
                     char **ret_note) {
        MirrorOptions mo = { .direction = MIRROR_REVERSE };
        MirrorStats st = {};
        Progress p;
        char a[FORMAT_BYTES_MAX];
        int r;

        if (!c->mirror.present) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note = xstrdup("[mirror] is not configured");
                return 0;
        }
        progress_init(&p, "restoring", 0, NULL, NULL);
        p.count_objects = true;
        r = mirror_run(c, &mo, &p, &st);
        progress_done(&p);
        if (r < 0)
                return r;
        *ret_outcome = st.copied > 0 ? RECOVER_DONE : RECOVER_SKIPPED;
        if (st.copied > 0)
                *ret_note = xasprintf("copied %" PRIu64 " object(s) (%s) from %s to remote %s, %" PRIu64
                                      " already equal",
                                      st.copied, format_bytes(st.copied_bytes, a, sizeof a),
                                      c->mirror.destination, c->mirror.source, st.skipped);
        else
                *ret_note = xasprintf("all %" PRIu64 " object(s) of %s are in remote %s already", st.skipped,
                                      c->mirror.destination, c->mirror.source);
        return 0;
}

/* ---- secrets and manifests: the newest config backup ---- */

static void plan_backup(FILE *out, const char *step, const char *what, const BackupSource *src) {
        const Manifest *m = src->list.items[0];
        char size[FORMAT_BYTES_MAX];

        fprintf(out, "%-10s %s of config backup %s (%s, %zu object(s)) from %s%s\n", step, what, m->id,
                format_bytes(m->bytes, size, sizeof size), m->n_objects, src->location,
                src->offsite ? " (offsite)" : "");
}

static bool config_skip(const Config *c, bool need_kubeconfig, const char **ret_why) {
        if (!c->config.present)
                *ret_why = "[config] is not configured";
        else if (need_kubeconfig && isempty(c->config.kubeconfig))
                *ret_why = "[config] kubeconfig is not set (no Secrets export)";
        else
                return false;
        return true;
}

/* The newest good config backup; 0 with the step skipped when [config] (or its kubeconfig) is not set. */
static int config_source_open(const Config *c, bool need_kubeconfig, BackupSource *src, const Manifest **ret,
                              RecoverOutcome *ret_outcome, char **ret_note) {
        const char *why;
        int r;

        if (config_skip(c, need_kubeconfig, &why)) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note = xstrdup(why);
                return 0;
        }
        r = backup_source_open(c, "config", src);
        if (r >= 0)
                r = backup_source_newest_good(src, "config", ret);
        return r < 0 ? r : 1;
}

static int config_plan(const Config *c, const char *step, const char *what, bool need_kubeconfig,
                       FILE *out) {
        _cleanup_(backup_source_done) BackupSource src = {};
        const char *why;
        int r;

        if (config_skip(c, need_kubeconfig, &why)) {
                fprintf(out, "%-10s skip: %s\n", step, why);
                return 0;
        }
        r = backup_source_open(c, "config", &src);
        if (r < 0) {
                fprintf(out, "%-10s cannot: %s\n", step, err_message() ?: strerror(-r));
                return r;
        }
        plan_backup(out, step, what, &src);
        return 0;
}

static int secrets_plan(const Config *c, const RecoverOptions *o, FILE *out) {
        return config_plan(c, "secrets", "apply the Secrets export", true, out);
}

static int secrets_run(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome,
                       char **ret_note) {
        _cleanup_(backup_source_done) BackupSource src = {};
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, unchanged = 0;
        const Manifest *m;
        FILE *f;
        int r, n;

        r = config_source_open(c, true, &src, &m, ret_outcome, ret_note);
        if (r <= 0)
                return r;
        f = open_memstream(&buf, &size);
        if (!f)
                return err_set(-errno, EX_OSERR, "cannot open a memory stream: %m");
        n = config_apply_secrets(c, src.store, m, false, f);
        fclose(f);
        /* One line per Secret ("created", "replaced", "unchanged" or "failed"): shown as progress. */
        fputs(strempty(buf), stderr);
        if (n < 0)
                return n;
        for (const char *l = strempty(buf); *l; l = strchrnul(l, '\n'), l += !!*l)
                if (startswith(l, "unchanged "))
                        unchanged++;
        *ret_outcome = unchanged == (size_t) n ? RECOVER_SKIPPED : RECOVER_DONE;
        *ret_note = xasprintf("%zu of the %d Secrets of config backup %s from %s applied, %zu unchanged",
                              (size_t) n - unchanged, n, m->id, src.location, unchanged);
        return 0;
}

static char *manifests_dir(const Config *c, const RecoverOptions *o) {
        return o->manifests_dir ? xstrdup(o->manifests_dir)
                                : path_join(c->agent.work_dir, "recover-manifests");
}

static const char *manifests_overlay(const RecoverOptions *o) {
        return o->overlay ?: RECOVER_DEFAULT_OVERLAY;
}

/* The archive keeps the manifest directories under manifests/ (manifests/k8s/...). */
static char *manifests_overlay_path(const char *dir, const RecoverOptions *o) {
        return xasprintf("%s/manifests/%s", dir, manifests_overlay(o));
}

static int manifests_plan(const Config *c, const RecoverOptions *o, FILE *out) {
        _cleanup_free_ char *dir = manifests_dir(c, o), *kubectl = path_find_executable("kubectl");
        _cleanup_free_ char *what = xasprintf("extract the manifests into %s", dir);
        _cleanup_free_ char *overlay = manifests_overlay_path(dir, o);
        int r;

        r = config_plan(c, "manifests", what, false, out);
        if (r < 0 || !c->config.present)
                return r;
        if (kubectl)
                fprintf(out, "           then %s apply -k %s\n", kubectl, overlay);
        else
                fprintf(out, "           kubectl is not on PATH: the apply -k %s will be skipped\n",
                        overlay);
        return 0;
}

/* Runs kubectl apply -k; its output goes to stderr as progress. */
static int kubectl_apply(const Config *c, const char *kubectl, const char *overlay) {
        _cleanup_strv_free_ char **argv = NULL;
        Child child = {};
        char buf[4096];
        int r;

        strv_push(&argv, xstrdup(kubectl));
        if (!isempty(c->config.kubeconfig)) {
                strv_push(&argv, xstrdup("--kubeconfig"));
                strv_push(&argv, xstrdup(c->config.kubeconfig));
        }
        strv_push(&argv, xstrdup("apply"));
        strv_push(&argv, xstrdup("-k"));
        strv_push(&argv, xstrdup(overlay));
        r = child_spawn(argv, NULL, CHILD_PIPE_STDOUT, &child);
        if (r < 0)
                return err_set(r, EX_UNAVAILABLE, "cannot run %s: %s", kubectl, strerror(-r));
        for (;;) {
                ssize_t k = child_read_stdout(&child, buf, sizeof buf);
                if (k <= 0)
                        break;
                fwrite(buf, 1, (size_t) k, stderr);
        }
        r = child_wait(&child);
        if (r != 0) {
                _cleanup_free_ char *why = child_stderr_summary(&child);
                child_done(&child);
                return err_set(-EIO, EX_UNAVAILABLE, "%s apply -k %s exited with status %d: %s", kubectl,
                               overlay, r, strna(why));
        }
        child_done(&child);
        return 0;
}

static int manifests_run(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome,
                         char **ret_note) {
        _cleanup_(backup_source_done) BackupSource src = {};
        _cleanup_free_ char *dir = manifests_dir(c, o), *stamp = NULL, *done_id = NULL, *overlay = NULL;
        _cleanup_free_ char *kubectl = path_find_executable("kubectl"), *extracted = NULL;
        const Manifest *m;
        int r;

        r = config_source_open(c, false, &src, &m, ret_outcome, ret_note);
        if (r <= 0)
                return r;

        /* A stamp names the backup extracted last: a rerun does not extract it again. */
        stamp = path_join(dir, ".skyforge-recovered");
        if (read_file_string(stamp, 256, &done_id) >= 0 && streq(done_id, m->id))
                extracted = xasprintf("manifests of config backup %s are in %s already", m->id, dir);
        else {
                _cleanup_free_ char *listing = NULL;
                size_t size = 0;
                FILE *f;

                r = mkdir_p(dir, 0700);
                if (r < 0)
                        return err_set(r, EX_CANTCREAT, "cannot create %s: %s", dir, strerror(-r));
                f = open_memstream(&listing, &size);
                if (!f)
                        return err_set(-errno, EX_OSERR, "cannot open a memory stream: %m");
                r = config_restore_to(c, src.store, m, dir, f);
                fclose(f);
                if (r < 0)
                        return r;
                r = write_file_atomic(stamp, m->id, strlen(m->id), 0600);
                if (r < 0)
                        return err_set(r, EX_CANTCREAT, "cannot write %s: %s", stamp, strerror(-r));
                extracted = xasprintf("extracted config backup %s from %s into %s", m->id, src.location,
                                      dir);
        }
        overlay = manifests_overlay_path(dir, o);
        if (!kubectl) {
                *ret_outcome = done_id && streq(done_id, m->id) ? RECOVER_SKIPPED : RECOVER_DONE;
                *ret_note = xasprintf("%s; kubectl is not on PATH: not applied (run kubectl apply -k %s)",
                                      extracted, overlay);
                return 0;
        }
        if (access(overlay, F_OK) < 0)
                return err_set(-errno, EX_DATAERR,
                               "%s; the overlay %s does not exist in it: name the right one with --overlay",
                               extracted, overlay);
        log_info("Applying %s with %s.", overlay, kubectl);
        r = kubectl_apply(c, kubectl, overlay);
        if (r < 0)
                return r;
        /* kubectl apply is idempotent itself: a rerun applies again and changes nothing. */
        *ret_outcome = RECOVER_DONE;
        *ret_note = xasprintf("%s; applied %s", extracted, overlay);
        return 0;
}

/* ---- health: poll healthz_url ---- */

static size_t discard(char *p, size_t size, size_t n, void *userdata) {
        return size * n;
}

static long health_probe(const char *url, char *errbuf) {
        long status = 0;
        CURLcode cc;
        CURL *e = curl_easy_init();

        if (!e) {
                strcpy(errbuf, "cannot initialize libcurl");
                return 0;
        }
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(e, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        cc = curl_easy_perform(e);
        if (cc == CURLE_OK)
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        else if (!errbuf[0])
                strcpy(errbuf, curl_easy_strerror(cc));
        curl_easy_cleanup(e);
        return status;
}

static uint64_t health_timeout(const RecoverOptions *o) {
        return o->health_timeout_usec ?: RECOVER_DEFAULT_HEALTH_TIMEOUT_USEC;
}

static int health_plan(const Config *c, const RecoverOptions *o, FILE *out) {
        if (isempty(c->agent.healthz_url))
                fprintf(out, "health     skip: [agent] healthz_url is not set\n");
        else
                fprintf(out, "health     poll %s until HTTP 200 (at most %" PRIu64 " s)\n",
                        c->agent.healthz_url, health_timeout(o) / USEC_PER_SEC);
        return 0;
}

static int health_run(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome,
                      char **ret_note) {
        const char *url = c->agent.healthz_url;
        uint64_t start = now_usec(CLOCK_MONOTONIC), deadline = start + health_timeout(o);
        char errbuf[CURL_ERROR_SIZE];
        unsigned attempts = 0;
        long status;

        if (isempty(url)) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note = xstrdup("[agent] healthz_url is not set");
                return 0;
        }
        for (;;) {
                errbuf[0] = 0;
                status = health_probe(url, errbuf);
                attempts++;
                if (status == 200)
                        break;
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return err_set(-ETIMEDOUT, EX_UNAVAILABLE,
                                       "%s did not answer HTTP 200 within %" PRIu64
                                       " s (last: %s); check the cluster, or wait longer with "
                                       "--health-timeout",
                                       url, health_timeout(o) / USEC_PER_SEC,
                                       status ? "an HTTP error status" : errbuf);
                if (attempts == 1 || attempts % 10 == 0) {
                        if (status)
                                log_info("Waiting for %s: HTTP %ld.", url, status);
                        else
                                log_info("Waiting for %s: %s.", url, errbuf);
                }
                if (job_cancel_requested)
                        return err_set(-ECANCELED, EX_TEMPFAIL, "recovery was cancelled");
                uint64_t now = now_usec(CLOCK_MONOTONIC), left = deadline > now ? deadline - now : 0;
                usleep(left < RECOVER_HEALTH_INTERVAL_USEC ? left : RECOVER_HEALTH_INTERVAL_USEC);
        }
        *ret_outcome = RECOVER_DONE;
        *ret_note = xasprintf("%s answered HTTP 200 after %.1f s", url,
                              (double) (now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_SEC);
        return 0;
}

const RecoverStep recover_steps[] = {
        { "minio", "restore the MinIO buckets from offsite", minio_plan, minio_run },
        { "postgres", "restore the newest good PostgreSQL dump", postgres_plan, postgres_run },
        { "secrets", "apply the Secrets export", secrets_plan, secrets_run },
        { "manifests", "kubectl apply -k the restored manifests", manifests_plan, manifests_run },
        { "volumes", "restore the claims into their rebuilt volumes", recover_volumes_plan,
          recover_volumes_run },
        { "health", "wait until healthz_url answers", health_plan, health_run },
};
const size_t recover_n_steps = ELEMENTSOF(recover_steps);

const RecoverStep *recover_step_find(const char *name) {
        for (size_t i = 0; i < recover_n_steps; i++)
                if (streq(recover_steps[i].name, name))
                        return recover_steps + i;
        return NULL;
}
