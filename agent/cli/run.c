/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>

#include "cli/cli.h"
#include "jobs/dry-run.h"
#include "jobs/job.h"
#include "jobs/mirror.h"
#include "log/log.h"
#include "sys/process.h"

/* "all" means every job the configuration enables. */
static char **jobs_for_all(const Config *c) {
        char **l = xcalloc(1, sizeof(char *));

        for (size_t i = 0; job_names[i]; i++)
                if (config_job_configured(c, job_names[i]))
                        strv_push(&l, xstrdup(job_names[i]));
        return l;
}

/* The plan of a mirror run: lists both sides and decides, changes nothing, takes no lock. */
static int run_mirror_dry(const Config *c) {
        MirrorOptions o = { .direction = MIRROR_FORWARD, .dry_run = true };
        MirrorStats s = {};
        int r;

        job_install_signal_handlers();
        r = mirror_run(c, &o, NULL, &s);
        mirror_stats_print(&s, true, stdout);
        if (r < 0)
                return cli_fail(r, "mirror plan failed");
        return 0;
}

/* What each job's run would do, changing nothing: mirror's plan, or the dry run of postgres and config. */
static int run_dry(const Config *c, int n, char *jobs[], bool json) {
        json_object *results = json ? json_object_new_array() : NULL;
        int ret = 0;

        for (int i = 0; i < n; i++) {
                _cleanup_(dry_run_result_done) DryRunResult res = {};
                bool twice = false;
                int r;

                for (int j = 0; j < i; j++)
                        twice = twice || streq(jobs[j], jobs[i]);
                if (twice)
                        continue;
                if (streq(jobs[i], "mirror")) {
                        r = run_mirror_dry(c);
                        ret = ret ?: r;
                        continue;
                }
                job_install_signal_handlers();
                r = job_dry_run_result(c, jobs[i], &res);
                if (json)
                        json_object_array_add(results, dry_run_result_to_json(&res));
                else
                        dry_run_result_print(&res, stdout);
                if (r < 0) {
                        (void) failure_raise(&res.failure);
                        ret = ret ?: cli_fail(r, "dry run failed");
                }
        }
        if (json)
                cli_json_print(results);
        return ret;
}

static int run_run(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = { { "dry-run", no_argument, NULL, 'n' },
                                                 { "json", no_argument, NULL, 'j' },
                                                 {} };
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_strv_free_ char **jobs = xcalloc(1, sizeof(char *));
        json_object *results = NULL;
        bool dry_run = false, json = false;
        int r, ret = 0, o;

        while ((o = getopt_long(argc, argv, "n", options, NULL)) >= 0)
                if (o == 'n')
                        dry_run = true;
                else if (o == 'j')
                        json = true;
                else
                        return cli_bad_option(argv[0], "n", options, argc, argv);
        if (optind >= argc) {
                fputs("skyforge-agent run: name a job (postgres, mirror, config, volumes) or \"all\".\n", stderr);
                return EX_USAGE;
        }
        if (dry_run)
                for (int i = optind; i < argc; i++)
                        if (!streq(argv[i], "mirror") && !job_dry_run_supported(argv[i])) {
                                fprintf(stderr,
                                        "skyforge-agent run: --dry-run is for postgres, config and mirror, "
                                        "not \"%s\".\n",
                                        argv[i]);
                                return EX_USAGE;
                        }
        if (dry_run && json && strv_contains(argv + optind, "mirror")) {
                fputs("skyforge-agent run: --json is for backup runs and the dry runs of postgres and "
                      "config, not \"run mirror --dry-run\".\n",
                      stderr);
                return EX_USAGE;
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        if (dry_run)
                return run_dry(c, argc - optind, argv + optind, json);
        for (int i = optind; i < argc; i++) {
                if (streq(argv[i], "all")) {
                        _cleanup_strv_free_ char **all = jobs_for_all(c);
                        STRV_FOREACH(j, all)
                                if (!strv_contains(jobs, *j))
                                        strv_push(&jobs, xstrdup(*j));
                } else if (!job_find(argv[i])) {
                        bool known = strv_contains((char **) job_names, argv[i]);
                        fprintf(stderr, "skyforge-agent run: %s \"%s\" (jobs: postgres, mirror, config).\n",
                                known ? "this build cannot run job" : "unknown job", argv[i]);
                        return known ? EX_UNAVAILABLE : EX_USAGE;
                } else if (!strv_contains(jobs, argv[i]))
                        strv_push(&jobs, xstrdup(argv[i]));
        }

        job_install_signal_handlers();
        child_cancel_flag = &job_cancel_requested;
        if (json)
                results = json_object_new_array();
        STRV_FOREACH(j, jobs) {
                _cleanup_(job_run_result_done) JobRunResult res = {};

                if (!job_find(*j)) {
                        log_warning("job %s is not available in this build, skipping.", *j);
                        continue;
                }
                r = job_run_result(c, *j, &res);
                if (json)
                        json_object_array_add(results, job_run_result_to_json(&res));
                if (r < 0) {
                        /* The runner logged the failure with its journal fields already. */
                        if (ret == 0)
                                ret = res.failure.exit_code;
                        if (job_cancel_requested)
                                break;
                        continue;
                }
                if (!json && !res.skipped) { /* skipped: another node runs it (logged) */
                        printf("%s\n", res.id);
                        fflush(stdout);
                }
        }
        if (json)
                cli_json_print(results);
        return ret;
}

const Verb verb_run = {
        .name = "run",
        .args = "JOB...|all [--json] | JOB... --dry-run [--json]",
        .summary = "Run backup jobs now and print the new backup ids.",
        .help = "Jobs: postgres (pg_dumpall to the store), mirror (MinIO to offsite S3), config (manifests and\n"
                "encrypted Secrets). \"all\" runs every configured job. Each job takes a lock, writes its state\n"
                "to state_dir/JOB.json, logs to the journal, and applies retention after a successful backup.\n"
                "On a terminal, progress is shown on stderr.\n"
                "  -n, --dry-run   show what the run would do and change nothing (no lock, state, store\n"
                "                  object or directory). mirror: what would be copied, deleted, skipped.\n"
                "                  postgres: server, databases and sizes, the pg_dumpall used,\n"
                "                  destination, encryption, what retention would then delete.\n"
                "                  config: manifest directories and file counts, Secrets per namespace\n"
                "                  (names only), destination, encryption, retention\n"
                "      --json      print a JSON array with one result per job (job, result, error, id,\n"
                "                  bytes, ...) instead of the new backup ids; with --dry-run (postgres,\n"
                "                  config) the dry run's findings\n",
        .run = run_run,
};
