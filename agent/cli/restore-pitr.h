/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "cli/cli.h"

/* restore postgres --to-datadir DIR [--time TS | --lsn LSN] [--start] [--set NAME=VALUE]: the options
 * that restore.c hands over, and the command. */
typedef struct RestorePitrArgs {
        const char *datadir;
        const char *time;
        const char *lsn;
        bool start;
        char **settings;
} RestorePitrArgs;

/* Records one option (its getopt letter); prints a usage error and returns -EINVAL when it is bad. */
int restore_pitr_option(RestorePitrArgs *a, int letter, const char *arg);
bool restore_pitr_wanted(const RestorePitrArgs *a);
/* Consumes a (frees its settings). */
int restore_pitr(CliContext *ctx, const char *id, RestorePitrArgs *a);

#define RESTORE_PITR_HELP                                                                                   \
        "point in time (postgres --to-datadir DIR): writes the newest base backup (run basebackup) that\n"  \
        "ended before the target into DIR (new or empty; handed to the owner of DIR or its parent), sets\n" \
        "restore_command to `skyforge-agent wal-fetch`, the target and recovery_target_action = promote\n"  \
        "in postgresql.auto.conf and creates recovery.signal: `pg_ctl start` then replays the stored WAL\n" \
        "up to the target. BASE_ID picks the base backup; latest (the default) replays all stored WAL.\n"   \
        "      --to-datadir DIR    where the data directory is restored\n"                                  \
        "      --time TS           recover to this moment, e.g. '2026-12-01 10:00:00+00' (a zone is "       \
        "needed)\n"                                                                                         \
        "      --lsn LSN           recover to this WAL position, e.g. 0/3000060\n"                          \
        "      --start             run pg_ctl start and wait until the recovery has ended\n"                \
        "      --set NAME=VALUE    add a server setting to postgresql.auto.conf (e.g. port=5433)\n"
