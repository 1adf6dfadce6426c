/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "jobs/verify.h"
#include "log/log.h"
#include "sys/process.h"

/* Jobs whose backups have manifests to verify (mirror copies buckets and has none). */
static const char *const verifiable[] = { "postgres", "config", "volumes", "basebackup", NULL };

static int run_verify(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "all", no_argument, NULL, 'a' },
                { "restore-test", no_argument, NULL, 'R' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        _cleanup_(config_freep) Config *c = NULL;
        VerifyOptions vo = { .out = stdout };
        const char *only = NULL;
        json_object *results = NULL;
        bool json = false;
        int r, o, ret = 0;

        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (o) {
                case 'a':
                        vo.all = true;
                        break;
                case 'R':
                        vo.restore_test = true;
                        break;
                case 'j':
                        /* The lines for the operator give way to one JSON document on stdout. */
                        vo.out = NULL;
                        json = true;
                        break;
                default:
                        return cli_bad_option(argv[0], "", options, argc, argv);
                }
        for (int i = optind; i < argc; i++) {
                if (!only && strv_contains((char **) verifiable, argv[i]))
                        only = argv[i];
                else if (!vo.id && (streq(argv[i], "latest") || backup_id_valid(argv[i])))
                        vo.id = argv[i];
                else {
                        fprintf(stderr,
                                "skyforge-agent verify: unexpected \"%s\" (expected a job with backups: "
                                "postgres, config, volumes; and/or a backup id).\n",
                                argv[i]);
                        return EX_USAGE;
                }
        }
        if (vo.id && vo.all) {
                fputs("skyforge-agent verify: give a backup id or --all, not both.\n", stderr);
                return EX_USAGE;
        }
        if (vo.id && !only) {
                fputs("skyforge-agent verify: name the job of backup id (postgres or config).\n", stderr);
                return EX_USAGE;
        }
        if (vo.restore_test && only && !streq(only, "postgres")) {
                fputs("skyforge-agent verify: --restore-test restores PostgreSQL dumps; use it with "
                      "postgres.\n",
                      stderr);
                return EX_USAGE;
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;

        job_install_signal_handlers();
        child_cancel_flag = &job_cancel_requested;
        if (json)
                results = json_object_new_array();
        for (size_t i = 0; verifiable[i]; i++) {
                _cleanup_(verify_result_done) VerifyResult res = {};
                const char *job = verifiable[i];

                /* basebackup (and its WAL chain) only when named: most nodes have no base backups. */
                if (only ? !streq(only, job) : !config_job_configured(c, job))
                        continue;
                vo.verify_more = job_find(job) ? job_find(job)->verify_more : NULL;
                r = verify_job_result(c, job, &vo, &res);
                if (json)
                        json_object_array_add(results, verify_result_to_json(&res));
                if (r < 0) {
                        int code = res.failure.exit_code;
                        log_error("%s", failure_message(&res.failure));
                        /* A damaged backup is the headline; other failures only when nothing is damaged. */
                        if (ret == 0 || code == EX_DATAERR)
                                ret = code;
                        if (job_cancel_requested)
                                break;
                }
        }
        if (json)
                cli_json_print(results);
        return ret;
}

const Verb verb_verify = {
        .name = "verify",
        .args = "[JOB] [ID|--all] [--restore-test] [--json]",
        .summary = "Check stored backups against their manifests; optionally restore-test the newest dump.",
        .help = "Re-reads every object of the newest backup of each job (postgres, and config when "
                "configured),\n"
                "or of the backup ID, or of all backups with --all, and compares size and SHA-256 with the\n"
                "manifest. Missing and corrupt objects, and manifests that cannot be used (unreadable, "
                "truncated,\n"
                "no objects, names outside the destination), are reported per backup; exit status 65 when "
                "any\n"
                "backup is damaged, 66 when a job has no backup at all. The result is recorded in the job "
                "state\n"
                "(status, D-Bus LastVerify) and the journal.\n"
                "  -a, --all            verify every backup, not only the newest\n"
                "      --restore-test   also restore the newest postgres dump (or ID) into a throwaway "
                "cluster in\n"
                "                       work_dir, check that every database of the manifest came back, and\n"
                "                       count tables and rows per database\n"
                "      --json           print one JSON array with the result of each job (the shape of\n"
                "                       last_verify, with job, error and exit_code) instead of the lines\n",
        .run = run_verify,
};
