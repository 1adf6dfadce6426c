/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <sysexits.h>

#include "jobs/postgres.h"
#include "jobs/recover.h"
#include "jobs/verify.h"
#include "log/log.h"
#include "pg/pg.h"

/* Where the mirror job keeps its copy of a location on the mirror's source remote: DEST/<bucket>/<prefix>.
 * NULL when the location is not mirrored. */
static char *offsite_location_of(const Config *c, const char *location) {
        _cleanup_(location_done) Location l = {};
        const char *dest = c->mirror.destination;

        if (!c->mirror.present || isempty(dest) || isempty(c->mirror.source))
                return NULL;
        if (location_parse(location, &l) < 0 || l.type != LOCATION_REMOTE ||
            !streq(l.remote, c->mirror.source))
                return NULL;
        if (!strv_isempty(c->mirror.buckets) && !strv_contains(c->mirror.buckets, "*") &&
            !strv_contains(c->mirror.buckets, l.bucket))
                return NULL;
        return xasprintf("%s%s%s/%s", dest, endswith(dest, "/") ? "" : "/", l.bucket, strempty(l.prefix));
}

typedef struct PostgresSource {
        Store *store;
        BackupList list;
        char *location;
        bool offsite;
} PostgresSource;

static void postgres_source_done(PostgresSource *p) {
        backup_list_done(&p->list);
        store_free(p->store);
        free(p->location);
        *p = (PostgresSource){};
}

static int postgres_source_try(const Config *c, const char *location, bool offsite, PostgresSource *ret) {
        PostgresSource p = { .location = xstrdup(location), .offsite = offsite };
        int r;

        r = store_open_location(c, location, &p.store);
        if (r >= 0)
                r = backup_list_load(p.store, &p.list);
        if (r < 0) {
                postgres_source_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

/* The dumps to restore from: the configured destination (MinIO), or the offsite copy when that has none
 * (a rebuilt node whose MinIO is still empty). */
static int postgres_source_open(const Config *c, PostgresSource *ret) {
        _cleanup_free_ char *primary = config_job_destination(c, "postgres");
        _cleanup_free_ char *offsite = offsite_location_of(c, primary);
        _cleanup_free_ char *primary_error = NULL;
        int r;

        r = postgres_source_try(c, primary, false, ret);
        if (r >= 0 && ret->list.n > 0)
                return 0;
        if (r >= 0)
                postgres_source_done(ret);
        else
                primary_error = xstrdup(err_message() ?: strerror(-r));
        if (!offsite)
                return err_set(-ENOENT, EX_NOINPUT,
                               "no postgres backup in %s%s%s and no offsite copy configured "
                               "([mirror] does not copy it)",
                               primary, primary_error ? ": " : "", strempty(primary_error));
        log_info("No postgres backup in %s%s%s%s; looking offsite in %s.", primary,
                 primary_error ? " (" : "", strempty(primary_error), primary_error ? ")" : "", offsite);
        r = postgres_source_try(c, offsite, true, ret);
        if (r < 0)
                return r;
        if (ret->list.n == 0) {
                postgres_source_done(ret);
                return err_set(-ENOENT, EX_NOINPUT, "no postgres backup in %s nor offsite in %s", primary,
                               offsite);
        }
        return 0;
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
        _cleanup_(postgres_source_done) PostgresSource src = {};
        _cleanup_free_ char *target = NULL;
        size_t present, total;
        char size[FORMAT_BYTES_MAX], raw[FORMAT_BYTES_MAX];
        const Manifest *m;
        int r;

        if (!c->postgres.present) {
                fprintf(out, "postgres   skip: [postgres] is not configured\n");
                return 0;
        }
        r = postgres_source_open(c, &src);
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
        _cleanup_(postgres_source_done) PostgresSource src = {};
        _cleanup_free_ char *target = NULL;
        const Manifest *m = NULL;
        size_t present, total;
        int r;

        if (!c->postgres.present) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note = xstrdup("[postgres] is not configured");
                return 0;
        }
        r = postgres_source_open(c, &src);
        if (r < 0)
                return r;
        /* The newest backup that checks out: a damaged one is passed over, never half-applied. */
        for (size_t i = 0; i < src.list.n && !m; i++) {
                r = backup_verify_objects(src.store, src.list.items[i], true);
                if (r >= 0)
                        m = src.list.items[i];
                else if (r == -EBADMSG)
                        log_warning("%s; trying the next older backup.", err_message());
                else
                        return r;
        }
        if (!m)
                return err_set(-EBADMSG, EX_DATAERR, "none of the %zu postgres backup(s) in %s verifies",
                               src.list.n, src.location);

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

const RecoverStep recover_steps[] = {
        { "minio", "restore the MinIO buckets from offsite", NULL, NULL },
        { "postgres", "restore the newest good PostgreSQL dump", postgres_plan, postgres_run },
        { "secrets", "apply the Secrets export", NULL, NULL },
        { "manifests", "kubectl apply -k the restored manifests", NULL, NULL },
        { "health", "wait until healthz_url answers", NULL, NULL },
};
const size_t recover_n_steps = ELEMENTSOF(recover_steps);

const RecoverStep *recover_step_find(const char *name) {
        for (size_t i = 0; i < recover_n_steps; i++)
                if (streq(recover_steps[i].name, name))
                        return recover_steps + i;
        return NULL;
}
