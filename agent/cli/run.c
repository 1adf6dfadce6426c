/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "jobs/mirror.h"
#include "log/log.h"
#include "sys/process.h"

/* "all" means every job the configuration enables: postgres always (it has usable defaults), mirror and
 * config when their sections are written. */
static char **jobs_for_all(const Config *c) {
        char **l = xcalloc(1, sizeof(char *));

        strv_push(&l, xstrdup("postgres"));
        if (c->mirror.present)
                strv_push(&l, xstrdup("mirror"));
        if (c->config.present)
                strv_push(&l, xstrdup("config"));
        if (c->volumes.present)
                strv_push(&l, xstrdup("volumes"));
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

static int run_run(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = { { "dry-run", no_argument, NULL, 'n' }, {} };
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_strv_free_ char **jobs = xcalloc(1, sizeof(char *));
        bool dry_run = false;
        int r, ret = 0, o;

        while ((o = getopt_long(argc, argv, "n", options, NULL)) >= 0)
                if (o == 'n')
                        dry_run = true;
                else
                        return EX_USAGE;
        if (optind >= argc) {
                fputs("skyforge-agent run: name a job (postgres, mirror, config, volumes) or \"all\".\n", stderr);
                return EX_USAGE;
        }
        if (dry_run && (optind + 1 != argc || !streq(argv[optind], "mirror"))) {
                fputs("skyforge-agent run: --dry-run is for \"run mirror\" only.\n", stderr);
                return EX_USAGE;
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        if (dry_run)
                return run_mirror_dry(c);
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
        STRV_FOREACH(j, jobs) {
                _cleanup_free_ char *id = NULL;

                if (!job_find(*j)) {
                        log_warning("job %s is not available in this build, skipping.", *j);
                        continue;
                }
                r = job_run(c, *j, &id);
                if (r < 0) {
                        /* job_run logged the failure with its journal fields already. */
                        int code = err_exit_code(r);
                        if (ret == 0)
                                ret = code;
                        if (job_cancel_requested)
                                break;
                        continue;
                }
                printf("%s\n", id);
                fflush(stdout);
        }
        return ret;
}

const Verb verb_run = {
        .name = "run",
        .args = "JOB...|all | mirror --dry-run",
        .summary = "Run backup jobs now and print the new backup ids.",
        .help = "Jobs: postgres (pg_dumpall to the store), mirror (MinIO to offsite S3), config (manifests and\n"
                "encrypted Secrets). \"all\" runs every configured job. Each job takes a lock, writes its state\n"
                "to state_dir/JOB.json, logs to the journal, and applies retention after a successful backup.\n"
                "On a terminal, progress is shown on stderr.\n"
                "  -n, --dry-run   with mirror: list both sides and print what would be copied, deleted and\n"
                "                  skipped (objects and bytes); change nothing\n",
        .run = run_run,
};
