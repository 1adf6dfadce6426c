/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "log/log.h"

static int run_prune(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = { { "dry-run", no_argument, NULL, 'n' },
                                                 { "json", no_argument, NULL, 'j' },
                                                 {} };
        _cleanup_(config_freep) Config *c = NULL;
        const char *jobs[] = { "postgres", "config", "volumes", "basebackup", NULL };
        const char *only = NULL;
        json_object *results = NULL;
        bool dry_run = false, json = false;
        int r, o, total = 0;

        while ((o = getopt_long(argc, argv, "n", options, NULL)) >= 0)
                if (o == 'n')
                        dry_run = true;
                else if (o == 'j')
                        json = true;
                else
                        return cli_bad_option(argv[0], "n", options, argc, argv);
        if (optind + 1 < argc)
                return cli_unexpected_argument(argv[0], argv[optind + 1]);
        if (optind < argc) {
                only = argv[optind];
                if (!strv_contains((char **) jobs, only)) {
                        fprintf(stderr, "skyforge-agent prune: \"%s\" has no retention (postgres, config, volumes, "
                                "basebackup).\n", only);
                        return EX_USAGE;
                }
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        if (json)
                results = json_object_new_array();
        for (size_t i = 0; jobs[i]; i++) {
                _cleanup_(prune_result_done) PruneResult res = {};

                /* Base backups go with [postgres] (beside its dumps). */
                if (only ? !streq(only, jobs[i])
                         : !config_job_configured(c, streq(jobs[i], "basebackup") ? "postgres" : jobs[i]))
                        continue;
                r = job_prune_result(c, jobs[i], dry_run, &res);
                /* Most nodes have no base backups: nothing to say about them then. */
                if (!only && streq(jobs[i], "basebackup") && r >= 0 && res.n_decisions == 0 && strv_isempty(res.more))
                        continue;
                if (json)
                        json_object_array_add(results, prune_result_to_json(&res));
                else
                        prune_result_print(&res, stdout);
                if (r < 0) {
                        if (json)
                                cli_json_print(results);
                        (void) failure_raise(&res.failure);
                        return cli_fail(r, "prune failed");
                }
                total += r;
        }
        if (json)
                cli_json_print(results);
        else
                fprintf(stderr, "%d backup(s) %s.\n", total, dry_run ? "would be deleted" : "deleted");
        return 0;
}

const Verb verb_prune = {
        .name = "prune",
        .args = "[JOB] [--dry-run] [--json]",
        .summary = "Apply retention now: delete backups older than retention_days, keeping keep_min.",
        .help = "Each backup is listed with the reason it is kept or deleted. The manifest is deleted first,\n"
                "so a backup is never half-visible. A running verify or restore of the job reads the\n"
                "backups: prune waits for it (up to an hour, then exit status 75 and nothing deleted).\n"
                "  -n, --dry-run   only show what would be deleted and why\n"
                "      --json      print one JSON array with the decisions per job instead of the lines\n",
        .run = run_prune,
};
