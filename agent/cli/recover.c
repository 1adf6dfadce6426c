/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <time.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "jobs/postgres.h"
#include "jobs/recover.h"
#include "log/log.h"
#include "sys/process.h"

static int run_recover(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "plan", no_argument, NULL, 'p' },
                { "step", required_argument, NULL, 's' },
                { "postgres-to", required_argument, NULL, 'P' },
                { "manifests-dir", required_argument, NULL, 'M' },
                { "overlay", required_argument, NULL, 'O' },
                { "health-timeout", required_argument, NULL, 'T' },
                {},
        };
        _cleanup_(config_freep) Config *c = NULL;
        RecoverOptions ro = {};
        _cleanup_free_ char *postgres_to = NULL;
        const RecoverStep *only = NULL;
        bool plan = false;
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        int r, o, ret = 0;

        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (o) {
                case 'p':
                        plan = true;
                        break;
                case 's':
                        only = recover_step_find(optarg);
                        if (!only) {
                                fprintf(stderr,
                                        "skyforge-agent recover: unknown step \"%s\" (steps: minio, "
                                        "postgres, "
                                        "secrets, manifests, health).\n",
                                        optarg);
                                return EX_USAGE;
                        }
                        break;
                case 'P':
                        /* optarg points into our argv: a password in it is blanked there. */
                        free(postgres_to);
                        ro.postgres_to = postgres_to = postgres_conninfo_from_argv(optarg);
                        break;
                case 'M':
                        ro.manifests_dir = optarg;
                        break;
                case 'O':
                        ro.overlay = optarg;
                        break;
                case 'T': {
                        uint64_t sec;
                        if (parse_uint64(optarg, &sec) < 0 || sec < 1 || sec > 86400) {
                                fprintf(stderr, "skyforge-agent recover: --health-timeout takes 1..86400 "
                                                "seconds, not \"%s\".\n",
                                        optarg);
                                return EX_USAGE;
                        }
                        ro.health_timeout_usec = sec * USEC_PER_SEC;
                        break;
                }
                default:
                        return EX_USAGE;
                }
        if (optind < argc) {
                fprintf(stderr, "skyforge-agent recover: unexpected \"%s\".\n", argv[optind]);
                return EX_USAGE;
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        job_install_signal_handlers();
        child_cancel_flag = &job_cancel_requested;

        if (plan) {
                for (size_t i = 0; i < recover_n_steps; i++) {
                        const RecoverStep *s = recover_steps + i;
                        if (only && only != s)
                                continue;
                        if (!s->plan) {
                                printf("%-10s not available in this build (%s)\n", s->name, s->summary);
                                continue;
                        }
                        r = s->plan(c, &ro, stdout);
                        if (r < 0 && ret == 0)
                                ret = err_exit_code(r);
                }
                return ret;
        }

        for (size_t i = 0; i < recover_n_steps; i++) {
                const RecoverStep *s = recover_steps + i;
                _cleanup_free_ char *note = NULL;
                RecoverOutcome outcome = RECOVER_UNAVAILABLE;
                uint64_t t0 = now_usec(CLOCK_MONOTONIC);

                if (only && only != s)
                        continue;
                if (!s->run)
                        note = xasprintf("not available in this build (%s)", s->summary);
                else {
                        log_info("Recovery step %s: %s.", s->name, s->summary);
                        r = s->run(c, &ro, &outcome, &note);
                        if (r < 0) {
                                int code = err_exit_code(r);
                                log_error("Recovery step %s failed: %s", s->name,
                                          err_message() ?: strerror(-r));
                                printf("%-10s FAILED   %6.1f s  %s\n", s->name,
                                       (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_SEC,
                                       err_message() ?: strerror(-r));
                                if (ret == 0)
                                        ret = code;
                                /* Later steps build on this one. */
                                break;
                        }
                }
                printf("%-10s %-8s %6.1f s  %s\n", s->name,
                       outcome == RECOVER_DONE      ? "done"
                       : outcome == RECOVER_SKIPPED ? "skipped"
                                                    : "n/a",
                       (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_SEC, strempty(note));
                fflush(stdout);
        }
        printf("%-10s %-8s %6.1f s\n", "total", ret == 0 ? "ok" : "failed",
               (double) (now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_SEC);
        return ret;
}

const Verb verb_recover = {
        .name = "recover",
        .args = "[--plan] [--step NAME] [--postgres-to CONNINFO] [--manifests-dir DIR] [--overlay PATH] "
                "[--health-timeout SEC]",
        .summary = "Rebuild a node from its backups, step by step.",
        .help = "Steps, in order: minio (the [mirror] buckets back from offsite), postgres (the\n"
                "newest dump that verifies, from the [postgres] destination or, when that is empty, from\n"
                "its offsite copy), secrets (the newest config backup's Secrets export through the API of\n"
                "[config] kubeconfig), manifests (extract it and kubectl apply -k its overlay when\n"
                "kubectl is on PATH), health (poll [agent] healthz_url until HTTP 200).\n"
                "Every step is safe to rerun: one that finds its work done says so and skips; a step whose\n"
                "job is not configured is skipped. Stops at the first failing step.\n"
                "  --plan                  print what each step would use (backup ids, sizes, sources),\n"
                "                          change nothing\n"
                "  --step NAME             run (or plan) only this step\n"
                "  --postgres-to CONNINFO  restore PostgreSQL here instead of [postgres] conninfo\n"
                "  --manifests-dir DIR     extract the manifests here (default\n"
                "                          <work_dir>/recover-manifests)\n"
                "  --overlay PATH          kustomize overlay inside DIR/manifests (default\n"
                "                          " RECOVER_DEFAULT_OVERLAY ")\n"
                "  --health-timeout SEC    poll [agent] healthz_url this long for HTTP 200 (default 300)\n",
        .run = run_recover,
};
