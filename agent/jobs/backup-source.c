/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <sysexits.h>

#include "conf/location.h"
#include "jobs/backup-source.h"
#include "jobs/context.h"
#include "log/log.h"

char *backup_offsite_location(const Config *c, const char *location) {
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

void backup_source_done(BackupSource *p) {
        backup_list_done(&p->list);
        store_free(p->store);
        free(p->location);
        *p = (BackupSource){};
}

static int backup_source_try(const Config *c, const char *job, const char *location, bool offsite,
                             BackupSource *ret) {
        BackupSource p = { .location = xstrdup(location), .offsite = offsite };
        int r;

        r = store_open_location(c, location, &p.store);
        if (r >= 0)
                r = backup_list_load(p.store, job, &p.list);
        if (r < 0) {
                backup_source_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

/* How backup_source_find() tells the operator what it did not find; each job's messages stay its own. */
typedef struct SourceWording {
        const char *what;        /* "postgres backup": "No postgres backup in LOCATION; looking offsite" */
        const char *none;        /* the error's start: "no postgres backup" (in LOCATION ...) */
        const char *no_offsite;  /* the error's end when [mirror] copies nothing of the location */
        const char *list_failed; /* NULL: an unreadable destination is one with nothing in it; else the
                                  * error's start ("cannot list the base backups") when nothing is offsite */
        bool why_offsite;        /* the destination's error goes into "... nor offsite in" */
} SourceWording;

/* job's backups: the destination's when it has any, else the offsite copy's. */
static int backup_source_find(const Config *c, const char *job, const SourceWording *w, BackupSource *ret) {
        _cleanup_free_ char *primary = config_job_destination(c, job);
        _cleanup_free_ char *offsite = backup_offsite_location(c, primary);
        _cleanup_(failure_done) Failure primary_failure = {};
        const char *why = NULL;
        int r;

        r = backup_source_try(c, job, primary, false, ret);
        if (r >= 0 && ret->list.n > 0)
                return 0;
        if (r >= 0)
                backup_source_done(ret);
        else {
                failure_capture(&primary_failure, r);
                why = failure_message(&primary_failure);
                if (!offsite && w->list_failed)
                        return err_set(r, primary_failure.exit_code ?: err_exit_code(r), "%s in %s: %s",
                                       w->list_failed, primary, why);
        }
        if (!offsite)
                return err_set(-ENOENT, EX_NOINPUT, "%s in %s%s%s%s", w->none, primary, why ? ": " : "",
                               strempty(why), w->no_offsite);
        log_info("No %s in %s%s%s%s; looking offsite in %s.", w->what, primary, why ? " (" : "",
                 strempty(why), why ? ")" : "", offsite);
        r = backup_source_try(c, job, offsite, true, ret);
        if (r < 0)
                return r;
        if (ret->list.n == 0) {
                if (!w->why_offsite)
                        why = NULL;
                backup_source_done(ret);
                return err_set(-ENOENT, EX_NOINPUT, "%s in %s%s%s%s nor offsite in %s", w->none, primary,
                               why ? " (" : "", strempty(why), why ? ")" : "", offsite);
        }
        return 0;
}

int backup_source_open(const Config *c, const char *job, BackupSource *ret) {
        _cleanup_free_ char *what = xasprintf("%s backup", job), *none = xasprintf("no %s backup", job);

        return backup_source_find(c, job,
                                  &(SourceWording){ .what = what,
                                                    .none = none,
                                                    .no_offsite =
                                                            " and no offsite copy configured ([mirror] "
                                                            "does not copy it)" },
                                  ret);
}

void physical_source_done(PhysicalSource *p) {
        backup_source_done(&p->base);
        wal_store_done(&p->wal);
}

/* The base backups: the destination's, else the offsite copy's. */
static int physical_base_open(const Config *c, BackupSource *ret) {
        static const SourceWording wording = {
                .what = "base backup",
                .none = "there is no base backup",
                .no_offsite =
                        "; run `skyforge-agent run basebackup` (skyforge-backup-basebackup.timer runs it "
                        "weekly)",
                .list_failed = "cannot list the base backups",
                .why_offsite = true,
        };

        return backup_source_find(c, "basebackup", &wording, ret);
}

/* The WAL archive on the side p->base comes from. */
static int physical_wal_open(const Config *c, PhysicalSource *p) {
        _cleanup_free_ char *prefix = NULL, *location = wal_store_location(c, &prefix), *offsite = NULL;

        if (p->base.offsite) {
                /* The base backups come from offsite: their WAL must too (the node's store is empty or
                 * unreachable, and a base backup is nothing without the WAL written after it). */
                offsite = backup_offsite_location(c, location);
                if (!offsite)
                        return err_set(-ENOENT, EX_NOINPUT,
                                       "the base backups are read from their offsite copy %s, but the WAL "
                                       "archive %s has none ([mirror] does not copy it: put "
                                       "wal_destination in a mirrored bucket)",
                                       p->base.location, location);
                free(location);
                location = TAKE_PTR(offsite);
        }
        return wal_store_open_location(c, location, prefix, false, &p->wal);
}

/* p->base is open: the WAL on its side, then all of it into ret. */
static int physical_source_finish(const Config *c, PhysicalSource *p, PhysicalSource *ret) {
        int r;

        r = physical_wal_open(c, p);
        if (r < 0)
                return r;
        *ret = *p;
        *p = (PhysicalSource){};
        return 0;
}

int physical_source_open(const Config *c, PhysicalSource *ret) {
        _cleanup_(physical_source_done) PhysicalSource p = {};
        int r;

        r = physical_base_open(c, &p.base);
        if (r < 0)
                return r;
        return physical_source_finish(c, &p, ret);
}

int physical_source_open_offsite(const Config *c, PhysicalSource *ret) {
        _cleanup_(physical_source_done) PhysicalSource p = {};
        _cleanup_free_ char *primary = config_job_destination(c, "basebackup");
        _cleanup_free_ char *offsite = backup_offsite_location(c, primary);
        int r;

        if (!offsite)
                return -ENOENT;
        r = backup_source_try(c, "basebackup", offsite, true, &p.base);
        if (r < 0)
                return r;
        return physical_source_finish(c, &p, ret);
}
