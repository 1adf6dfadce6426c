/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "conf/conf.h"

/* Point-in-time restore: the newest base backup before the target into a data directory, set up so that
 * PostgreSQL replays the stored WAL up to the target. The base backups and the WAL come from the configured
 * store, or from its offsite copy when that has no base backup (jobs/backup-source.h). restore_command
 * takes the WAL from a spool in the data directory that this process fills (jobs/wal-spool.h): with start,
 * while PostgreSQL replays; without, all of it up front. */

typedef enum PitrTarget {
        PITR_TARGET_LATEST, /* all the WAL there is */
        PITR_TARGET_TIME,
        PITR_TARGET_LSN,
} PitrTarget;

typedef struct PitrOptions {
        const char *datadir;
        const char *base_id; /* a base backup id, or NULL/"latest": the newest that fits the target */
        PitrTarget target;
        uint64_t time_usec;
        uint64_t lsn;
        bool start; /* pg_ctl start, then wait until recovery has finished */
        char **settings; /* "name=value" lines added to postgresql.auto.conf */
        const char *server_options; /* with start: pg_ctl -o for that one start (e.g. no listening) */
        bool stop_after; /* with start: once promoted, stop the server and take the recovery settings out */
} PitrOptions;

/* "2026-12-01 10:00:00+00", "2026-12-01T10:00:00.25Z", "2026-12-01 11:00:00+01:00" -> usec since the
 * epoch. A zone is required: without one PostgreSQL would read it in the server's zone. */
int pitr_parse_time(const char *s, uint64_t *ret);
/* "2026-12-01 10:00:00.250000+00": how the target is written for PostgreSQL. */
char *pitr_format_time(uint64_t usec);
/* A "name=value" server setting for postgresql.auto.conf: name is [a-z_.]+; the value is quoted. NULL
 * when name is invalid. */
char *pitr_setting_line(const char *setting);

int pitr_restore(const Config *c, const PitrOptions *o, FILE *out);
