/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "log/log.h"

static int run_prune(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = { { "dry-run", no_argument, NULL, 'n' }, {} };
        _cleanup_(config_freep) Config *c = NULL;
        const char *jobs[] = { "postgres", "config", "volumes", NULL };
        const char *only = NULL;
        bool dry_run = false;
        int r, o, total = 0;

        while ((o = getopt_long(argc, argv, "n", options, NULL)) >= 0)
                if (o == 'n')
                        dry_run = true;
                else
                        return EX_USAGE;
        if (optind < argc) {
                only = argv[optind];
                if (!streq(only, "postgres") && !streq(only, "config") && !streq(only, "volumes")) {
                        fprintf(stderr, "skyforge-agent prune: \"%s\" has no retention (postgres, config, volumes).\n", only);
                        return EX_USAGE;
                }
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        for (size_t i = 0; jobs[i]; i++) {
                if (only ? !streq(only, jobs[i])
                         : (streq(jobs[i], "config") && !c->config.present) ||
                                   (streq(jobs[i], "volumes") && !c->volumes.present))
                        continue;
                r = job_prune(c, jobs[i], dry_run, stdout);
                if (r < 0)
                        return cli_fail(r, "prune failed");
                total += r;
        }
        fprintf(stderr, "%d backup(s) %s.\n", total, dry_run ? "would be deleted" : "deleted");
        return 0;
}

const Verb verb_prune = {
        .name = "prune",
        .args = "[JOB] [--dry-run]",
        .summary = "Apply retention now: delete backups older than retention_days, keeping keep_min.",
        .help = "Each backup is listed with the reason it is kept or deleted. The manifest is deleted first,\n"
                "so a backup is never half-visible. A running verify or restore of the job reads the\n"
                "backups: prune waits for it (up to an hour, then exit status 75 and nothing deleted).\n"
                "  -n, --dry-run   only show what would be deleted and why\n",
        .run = run_prune,
};
