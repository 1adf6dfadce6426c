/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "cli/restore-pitr.h"
#include "jobs/job.h"
#include "jobs/pitr.h"
#include "log/log.h"
#include "pg/replication.h"
#include "sys/process.h"

int restore_pitr_option(RestorePitrArgs *a, int letter, const char *arg) {
        uint64_t v;

        switch (letter) {
        case 'D':
                a->datadir = arg;
                break;
        case 'T':
                if (a->lsn) {
                        fputs("skyforge-agent restore: give --time or --lsn, not both.\n", stderr);
                        return -EINVAL;
                }
                a->time = arg;
                break;
        case 'L':
                if (a->time) {
                        fputs("skyforge-agent restore: give --time or --lsn, not both.\n", stderr);
                        return -EINVAL;
                }
                if (pg_lsn_parse(arg, &v) < 0) {
                        fprintf(stderr,
                                "skyforge-agent restore: --lsn \"%s\" is not a WAL position (e.g. "
                                "0/3000060).\n",
                                arg);
                        return -EINVAL;
                }
                a->lsn = arg;
                break;
        case 'S':
                a->start = true;
                break;
        case 'O':
                strv_push(&a->settings, xstrdup(arg));
                break;
        }
        return 0;
}

bool restore_pitr_wanted(const RestorePitrArgs *a) {
        return a->datadir || a->time || a->lsn || a->start || a->settings;
}

int restore_pitr(CliContext *ctx, const char *id, RestorePitrArgs *a) {
        _cleanup_strv_free_ char **settings = TAKE_PTR(a->settings);
        _cleanup_(config_freep) Config *c = NULL;
        PitrOptions o = { .datadir = a->datadir,
                          .base_id = id,
                          .start = a->start,
                          .settings = settings };
        int r;

        if (!a->datadir) {
                fputs("skyforge-agent restore postgres: --time, --lsn, --start and --set go with "
                      "--to-datadir DIR.\n",
                      stderr);
                return EX_USAGE;
        }
        if (a->time) {
                r = pitr_parse_time(a->time, &o.time_usec);
                if (r < 0) {
                        fprintf(stderr,
                                "skyforge-agent restore: --time \"%s\" is %s (e.g. '2026-12-01 "
                                "10:00:00+00').\n",
                                a->time, r == -EDOM ? "missing its time zone" : "not a time");
                        return EX_USAGE;
                }
                o.target = PITR_TARGET_TIME;
        } else if (a->lsn) {
                (void) pg_lsn_parse(a->lsn, &o.lsn);
                o.target = PITR_TARGET_LSN;
        }
        STRV_FOREACH (s, settings) {
                _cleanup_free_ char *line = pitr_setting_line(*s);
                if (!line) {
                        fprintf(stderr,
                                "skyforge-agent restore: --set \"%s\": give NAME=VALUE with a server "
                                "setting's name.\n",
                                *s);
                        return EX_USAGE;
                }
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        job_install_signal_handlers();
        child_cancel_flag = &job_cancel_requested;
        r = pitr_restore(c, &o, stderr);
        if (r < 0)
                return cli_fail(r, "restore failed");
        if (a->start)
                fprintf(stderr, "Recovery of %s has ended; the server runs.\n", a->datadir);
        return 0;
}
