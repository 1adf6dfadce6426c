/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>
#include <time.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "jobs/postgres.h"
#include "jobs/recover.h"
#include "log/log.h"
#include "sys/process.h"

/* What one step of `recover` did (or, with --plan, would do). */
typedef struct RecoverStepResult {
        const RecoverStep *step;
        RecoverOutcome outcome;
        bool failed;
        char *note;          /* what was done or why nothing was */
        char *plan;          /* --plan --json: the plan's lines */
        uint64_t duration_usec;
        Failure failure;
} RecoverStepResult;

static void recover_step_result_done(RecoverStepResult *r) {
        free(r->note);
        free(r->plan);
        failure_done(&r->failure);
}

static void recover_run_step(const Config *c, const RecoverOptions *ro, const RecoverStep *s,
                             RecoverStepResult *res) {
        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        int r;

        res->outcome = RECOVER_UNAVAILABLE;
        if (!s->run)
                res->note = xasprintf("not available in this build (%s)", s->summary);
        else {
                log_info("Recovery step %s: %s.", s->name, s->summary);
                r = s->run(c, ro, &res->outcome, &res->note);
                failure_capture(&res->failure, r);
                if (r < 0)
                        log_error("Recovery step %s failed: %s", s->name, failure_message(&res->failure));
        }
        res->duration_usec = now_usec(CLOCK_MONOTONIC) - t0;
}

static void recover_plan_step(const Config *c, const RecoverOptions *ro, const RecoverStep *s, bool capture,
                              RecoverStepResult *res) {
        _cleanup_fclose_ FILE *f = NULL;
        size_t size = 0;
        int r;

        if (!s->plan) {
                res->note = xasprintf("not available in this build (%s)", s->summary);
                if (!capture)
                        printf("%-10s %s\n", s->name, res->note);
                return;
        }
        if (capture)
                f = open_memstream(&res->plan, &size);
        r = s->plan(c, ro, f ?: stdout);
        failure_capture(&res->failure, r);
        if (f) {
                ERR_KEEP_SCOPE();
                fclose(TAKE_PTR(f));
        }
}

static const char *recover_outcome_word(const RecoverStepResult *res) {
        return res->failure.error < 0            ? "failed"
               : res->outcome == RECOVER_DONE    ? "done"
               : res->outcome == RECOVER_SKIPPED ? "skipped"
                                                 : "n/a";
}

static void recover_step_result_print(const RecoverStepResult *res, FILE *out) {
        double sec = (double) res->duration_usec / USEC_PER_SEC;

        if (res->failure.error < 0)
                fprintf(out, "%-10s FAILED   %6.1f s  %s\n", res->step->name, sec,
                        failure_message(&res->failure));
        else
                fprintf(out, "%-10s %-8s %6.1f s  %s\n", res->step->name,
                        res->outcome == RECOVER_DONE      ? "done"
                        : res->outcome == RECOVER_SKIPPED ? "skipped"
                                                          : "n/a",
                        sec, strempty(res->note));
        fflush(out);
}

static json_object *recover_step_result_to_json(const RecoverStepResult *res, bool plan) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "step", json_object_new_string(res->step->name));
        if (plan) {
                json_object *lines = json_object_new_array();
                _cleanup_strv_free_ char **l = strv_split(strempty(res->plan), "\n");
                STRV_FOREACH(line, l)
                        json_object_array_add(lines, json_object_new_string(*line));
                json_object_object_add(o, "available", json_object_new_boolean(res->step->plan != NULL));
                json_object_object_add(o, "plan", lines);
        } else {
                json_object_object_add(o, "outcome", json_object_new_string(recover_outcome_word(res)));
                json_object_object_add(o, "duration_usec", json_object_new_uint64(res->duration_usec));
        }
        json_object_object_add(o, "note", res->note ? json_object_new_string(res->note) : NULL);
        if (res->failure.error < 0) {
                json_object_object_add(o, "error", json_object_new_string(failure_message(&res->failure)));
                json_object_object_add(o, "exit_code", json_object_new_int(res->failure.exit_code));
        }
        return o;
}

/* {result: ok|failed, exit_code, error, steps: [...]}: error is the first failed step's. */
static json_object *recover_to_json(json_object *steps, int code) {
        json_object *o = json_object_new_object(), *error = NULL;

        for (size_t i = 0; !error && i < json_object_array_length(steps); i++)
                json_object_object_get_ex(json_object_array_get_idx(steps, i), "error", &error);
        json_object_object_add(o, "result", json_object_new_string(code == 0 ? "ok" : "failed"));
        if (code != 0) {
                json_object_object_add(o, "error", error ? json_object_get(error) : NULL);
                json_object_object_add(o, "exit_code", json_object_new_int(code));
        }
        json_object_object_add(o, "steps", steps);
        return o;
}

/* --health-timeout / --bind-timeout SECONDS, 1..86400. */
static int timeout_option(const char *option, const char *arg, uint64_t *ret_usec) {
        uint64_t sec;

        if (parse_uint64(arg, &sec) < 0 || sec < 1 || sec > 86400) {
                fprintf(stderr, "skyforge-agent recover: %s takes 1..86400 seconds, not \"%s\".\n", option, arg);
                return -EINVAL;
        }
        *ret_usec = sec * USEC_PER_SEC;
        return 0;
}

static int run_recover(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "plan", no_argument, NULL, 'p' },
                { "step", required_argument, NULL, 's' },
                { "postgres-to", required_argument, NULL, 'P' },
                { "manifests-dir", required_argument, NULL, 'M' },
                { "overlay", required_argument, NULL, 'O' },
                { "health-timeout", required_argument, NULL, 'T' },
                { "postgres-from", required_argument, NULL, 'F' },
                { "force", no_argument, NULL, 'f' },
                { "bind-timeout", required_argument, NULL, 'B' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        _cleanup_(config_freep) Config *c = NULL;
        RecoverOptions ro = {};
        _cleanup_free_ char *postgres_to = NULL;
        const RecoverStep *only = NULL;
        json_object *results = NULL;
        bool plan = false, json = false;
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        int r, o, ret = 0;

        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (o) {
                case 'p':
                        plan = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 's':
                        only = recover_step_find(optarg);
                        if (!only) {
                                fprintf(stderr,
                                        "skyforge-agent recover: unknown step \"%s\" (steps: minio, "
                                        "postgres, "
                                        "secrets, manifests, volumes, health).\n",
                                        optarg);
                                return EX_USAGE;
                        }
                        break;
                case 'P':
                        /* optarg points into our argv: a password in it is blanked there. */
                        free(postgres_to);
                        ro.postgres_to = postgres_to = postgres_conninfo_from_argv(optarg);
                        break;
                case 'F':
                        if (!strv_contains((char **) (const char *const[]){ "auto", "logical", "physical", NULL },
                                           optarg)) {
                                fprintf(stderr, "skyforge-agent recover: --postgres-from takes logical, physical "
                                                "or auto, not \"%s\".\n",
                                        optarg);
                                return EX_USAGE;
                        }
                        ro.postgres_from = optarg;
                        break;
                case 'M':
                        ro.manifests_dir = optarg;
                        break;
                case 'O':
                        ro.overlay = optarg;
                        break;
                case 'T':
                        if (timeout_option("--health-timeout", optarg, &ro.health_timeout_usec) < 0)
                                return EX_USAGE;
                        break;
                case 'f':
                        ro.force = true;
                        break;
                case 'B':
                        if (timeout_option("--bind-timeout", optarg, &ro.bind_timeout_usec) < 0)
                                return EX_USAGE;
                        break;
                default:
                        return cli_bad_option(argv[0], "", options, argc, argv);
                }
        if (optind < argc)
                return cli_unexpected_argument(argv[0], argv[optind]);
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        job_install_signal_handlers();
        child_cancel_flag = &job_cancel_requested;

        if (plan) {
                if (json)
                        results = json_object_new_array();
                for (size_t i = 0; i < recover_n_steps; i++) {
                        const RecoverStep *s = recover_steps + i;
                        _cleanup_(recover_step_result_done) RecoverStepResult res = { .step = s };

                        if (only && only != s)
                                continue;
                        recover_plan_step(c, &ro, s, json, &res);
                        if (res.failure.error < 0 && ret == 0)
                                ret = res.failure.exit_code;
                        if (json)
                                json_object_array_add(results, recover_step_result_to_json(&res, true));
                }
                if (json)
                        cli_json_print(recover_to_json(results, ret));
                return ret;
        }

        if (json)
                results = json_object_new_array();
        for (size_t i = 0; i < recover_n_steps; i++) {
                const RecoverStep *s = recover_steps + i;
                _cleanup_(recover_step_result_done) RecoverStepResult res = { .step = s };

                if (only && only != s)
                        continue;
                recover_run_step(c, &ro, s, &res);
                if (json)
                        json_object_array_add(results, recover_step_result_to_json(&res, false));
                else
                        recover_step_result_print(&res, stdout);
                if (res.failure.error < 0) {
                        if (ret == 0)
                                ret = res.failure.exit_code;
                        /* Later steps build on this one. */
                        break;
                }
        }
        if (json)
                cli_json_print(recover_to_json(results, ret));
        else
                printf("%-10s %-8s %6.1f s\n", "total", ret == 0 ? "ok" : "failed",
                       (double) (now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_SEC);
        return ret;
}

const Verb verb_recover = {
        .name = "recover",
        .args = "[--plan] [--step NAME] [--postgres-to CONNINFO] [--manifests-dir DIR] [--overlay PATH] "
                "[--health-timeout SEC] [--postgres-from logical|physical|auto] [--force] "
                "[--bind-timeout SEC] [--json]",
        .summary = "Rebuild a node from its backups, step by step.",
        .help = "Steps, in order: minio (the [mirror] buckets back from offsite), postgres (the\n"
                "newest dump that verifies, from the [postgres] destination or, when that is empty, from\n"
                "its offsite copy), secrets (the newest config backup's Secrets export through the API of\n"
                "[config] kubeconfig), manifests (extract it and kubectl apply -k its overlay when\n"
                "kubectl is on PATH), volumes (each claim of the volumes backups into the directory of\n"
                "the PersistentVolume it is bound to again, its Deployments and StatefulSets scaled to\n"
                "0 meanwhile and back afterwards), health (poll [agent] healthz_url until HTTP 200).\n"
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
                "  --health-timeout SEC    poll [agent] healthz_url this long for HTTP 200 (default 300)\n"
                "  --postgres-from WHICH   logical (the dump), physical (the newest complete base backup\n"
                "                          + WAL into [postgres] data_directory) or auto (default: the\n"
                "                          one that reaches the later moment; --plan says which and why)\n"
                "  --force                 volumes: replace the content of a non-empty PV directory\n"
                "  --bind-timeout SEC      volumes: wait this long for a claim to be bound and for its\n"
                "                          pods to end (default 300)\n"
                "  --json                  print one JSON object: result, error, exit_code, and per step\n"
                "                          its outcome and note, or with --plan its plan lines\n",
        .run = run_recover,
};
