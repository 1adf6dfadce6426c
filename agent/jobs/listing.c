/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The backups of all jobs, as `list` prints them and the daemon's ListBackups answers. */
#include "jobs/job.h"
#include "jobs/volumes-nodes.h"
#include "log/log.h"

/* Jobs that leave backups with manifests (mirror copies buckets, it has none). Base backups sit beside the
 * dumps, in the postgres destination. */
const char *const job_listable[] = { "postgres", "config", "volumes", "basebackup", NULL };

static int manifest_cmp_newest_first(const void *a, const void *b) {
        const Manifest *x = *(Manifest *const *) a, *y = *(Manifest *const *) b;
        int c = strcmp(y->id, x->id);
        return c != 0 ? c : strcmp(x->job, y->job);
}

/* Drops the backups of jobs other than those named (another job's manifests in a shared location). */
static void backup_list_keep_jobs(BackupList *l, const char *const *jobs) {
        size_t n = 0;

        for (size_t i = 0; i < l->n; i++)
                if (strv_contains((char **) jobs, l->items[i]->job))
                        l->items[n++] = l->items[i];
                else
                        manifest_free(l->items[i]);
        l->n = n;
}

int job_list_backups(const Config *c, const char *only, BackupList *ret) {
        _cleanup_(backup_list_done) BackupList all = {};

        for (size_t i = 0; job_listable[i]; i++) {
                _cleanup_(store_freep) Store *s = NULL;
                _cleanup_(backup_list_done) BackupList l = {};
                _cleanup_free_ char *dest = NULL;
                int r;

                if (only && !streq(only, job_listable[i]))
                        continue;
                /* The config job's default destination exists even when the job is not configured. */
                if (!only && streq(job_listable[i], "config") && !c->config.present)
                        continue;
                if (!only && streq(job_listable[i], "volumes") && !c->volumes.present)
                        continue;
                /* Listed together with the dumps below: one pass over the manifests of that location. */
                if (!only && streq(job_listable[i], "basebackup"))
                        continue;
                if (streq(job_listable[i], "volumes")) {
                        /* Every node's folder, and the shared one (volumes-nodes.h). */
                        _cleanup_(volumes_folders_done) VolumesFolders f = {};
                        r = volumes_folders_open(c, NULL, &f);
                        if (r >= 0)
                                r = volumes_folders_take_all(&f, &l);
                } else {
                        dest = config_job_destination(c, job_listable[i]);
                        r = store_open_location(c, dest, &s);
                        if (r == -ENOENT && !s) {
                                /* A local destination no run has written to: no backups, and it stays
                                 * uncreated. */
                                _cleanup_(failure_done) Failure f = failure_take(r);
                                log_notice("%s.", failure_message(&f));
                                continue;
                        }
                        if (r >= 0)
                                r = backup_list_load(
                                        s, only || !streq(job_listable[i], "postgres") ? job_listable[i] : NULL,
                                        &l);
                }
                if (r < 0)
                        return r;
                if (!only && streq(job_listable[i], "postgres"))
                        backup_list_keep_jobs(&l, (const char *const[]){ "postgres", "basebackup", NULL });
                all.items = xrealloc(all.items, (all.n + l.n + 1) * sizeof *all.items);
                memcpy(all.items + all.n, l.items, l.n * sizeof *l.items);
                all.n += l.n;
                l.n = 0; /* moved */
        }
        if (all.n > 0)
                qsort(all.items, all.n, sizeof *all.items, manifest_cmp_newest_first);
        *ret = all;
        all = (BackupList){};
        return 0;
}
