/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "bus/backups.h"
#include "jobs/job.h"
#include "shared/util.h"

int bus_backups_append(sd_bus_message *m, const Config *c, const char *job) {
        _cleanup_(backup_list_done) BackupList l = {};
        int r;

        /* The same listing as `list --json`. Jobs without manifests (mirror) have no backups to list. */
        if (c && (!job || strv_contains((char **) job_listable, job))) {
                r = job_list_backups(c, job, &l);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_open_container(m, 'a', "(sstttb)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < l.n; i++) {
                const Manifest *b = l.items[i];

                r = sd_bus_message_append(m, "(sstttb)", b->job, b->id, b->started_usec, b->finished_usec,
                                          b->bytes, b->encrypted);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}
