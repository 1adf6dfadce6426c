/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>

#include "cli/cli.h"
#include "jobs/check-connect.h"
#include "jobs/job.h"

static void config_usage(FILE *f) {
        fprintf(f, "Usage: skyforge-agent [-c FILE] config %s\n\n%s", verb_config.args, verb_config.help);
}

static int config_verb_load(CliContext *ctx, Config **ret_config, ConfigProblems *ret_problems) {
        const char *path = ctx->config_path ?: CONFIG_DEFAULT_PATH;
        int r;

        r = config_load(path, ctx->config_explicit, ret_config, ret_problems);
        /* Errors and warnings alike: an operator running check wants to see both. */
        config_problems_print(ret_problems, path, stderr);
        return r;
}

/* The static check passed (deferred errors aside): reach what the configuration names. */
static int config_check_connect(const Config *c, bool deferred_errors, ConnectReport *rep, bool print) {
        int code;

        job_install_signal_handlers();
        config_connect_check(c, rep);
        if (print)
                connect_report_print(rep, stdout);
        code = connect_report_exit_code(rep);
        if (deferred_errors)
                code = connect_exit_code_merge(code, EX_CONFIG);
        return code;
}

/* config check --json: {path, result: ok|failed, exit_code, error, from_file, errors, warnings, problems:
 * [{severity, line, deferred, message}], connect: [{check, status, detail, exit_code}]}. */
static json_object *config_check_to_json(const char *path, const Config *c, const ConfigProblems *problems,
                                         const ConnectReport *rep, int code) {
        static const char *const status[] = {
                [CONNECT_OK] = "ok", [CONNECT_FAIL] = "fail", [CONNECT_SKIP] = "skip"
        };
        json_object *o = json_object_new_object(), *pa = json_object_new_array();
        const char *first = NULL;

        for (size_t i = 0; i < problems->n; i++) {
                const ConfigProblem *e = problems->items + i;
                json_object *p = json_object_new_object();

                if (!first && e->severity == CONFIG_ERROR)
                        first = e->message;
                json_object_object_add(
                        p, "severity",
                        json_object_new_string(e->severity == CONFIG_WARNING ? "warning" : "error"));
                json_object_object_add(p, "line", e->line > 0 ? json_object_new_int64(e->line) : NULL);
                json_object_object_add(p, "deferred", json_object_new_boolean(e->deferred));
                json_object_object_add(p, "message", json_object_new_string(e->message));
                json_object_array_add(pa, p);
        }
        for (size_t i = 0; !first && rep && i < rep->n; i++)
                if (rep->items[i].status == CONNECT_FAIL)
                        first = rep->items[i].detail;
        json_object_object_add(o, "path", json_object_new_string(path));
        json_object_object_add(o, "result", json_object_new_string(code == EX_OK ? "ok" : "failed"));
        if (code != EX_OK) {
                json_object_object_add(o, "error", first ? json_object_new_string(first) : NULL);
                json_object_object_add(o, "exit_code", json_object_new_int(code));
        }
        json_object_object_add(o, "from_file", c ? json_object_new_boolean(c->from_file) : NULL);
        json_object_object_add(o, "errors",
                               json_object_new_uint64(config_problems_count(problems, CONFIG_ERROR)));
        json_object_object_add(o, "warnings",
                               json_object_new_uint64(config_problems_count(problems, CONFIG_WARNING)));
        json_object_object_add(o, "problems", pa);
        if (rep) {
                json_object *ca = json_object_new_array();
                for (size_t i = 0; i < rep->n; i++) {
                        json_object *e = json_object_new_object();
                        json_object_object_add(e, "check", json_object_new_string(rep->items[i].what));
                        json_object_object_add(e, "status",
                                               json_object_new_string(status[rep->items[i].status]));
                        json_object_object_add(e, "detail",
                                               json_object_new_string(strempty(rep->items[i].detail)));
                        json_object_object_add(e, "exit_code", json_object_new_int(rep->items[i].exit_code));
                        json_object_array_add(ca, e);
                }
                json_object_object_add(o, "connect", ca);
        }
        return o;
}

static int config_check(CliContext *ctx, bool connect) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(config_problems_done) ConfigProblems problems = {};
        _cleanup_(connect_report_done) ConnectReport rep = {};
        size_t warnings;
        bool deferred;
        int code = EX_OK;

        if (config_verb_load(ctx, &c, &problems) < 0)
                code = EX_CONFIG;
        else {
                /* Deferred errors (a missing secret file) do not stop other commands, but they fail the
                 * check. */
                deferred = config_problems_count_deferred(&problems) > 0;
                if (connect)
                        code = config_check_connect(c, deferred, &rep, !ctx->json);
                else if (deferred)
                        code = EX_CONFIG;
        }
        if (ctx->json) {
                cli_json_print(config_check_to_json(ctx->config_path ?: CONFIG_DEFAULT_PATH, c, &problems,
                                                    connect ? &rep : NULL, code));
                return code;
        }
        if (code != EX_OK || connect)
                return code;
        warnings = config_problems_count(&problems, CONFIG_WARNING);
        if (ctx->quiet)
                return EX_OK;
        printf("%s: OK", c->path);
        if (!c->from_file)
                printf(" (no such file: built-in defaults apply)");
        if (warnings > 0)
                printf(" (%zu warning%s)", warnings, warnings == 1 ? "" : "s");
        putchar('\n');
        return EX_OK;
}

static int config_show_effective(CliContext *ctx) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(config_problems_done) ConfigProblems problems = {};

        if (config_verb_load(ctx, &c, &problems) < 0)
                return EX_CONFIG;
        config_show(c, stdout);
        return EX_OK;
}

static int verb_config_run(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "connect", no_argument, NULL, 'C' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        const char *sub;
        bool connect = false;
        int c;

        optind = 0; /* glibc: start over, another verb or the global options may have used getopt */
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        config_usage(stdout);
                        return EX_OK;
                case 'C':
                        connect = true;
                        break;
                case 'j':
                        ctx->json = true;
                        break;
                default:
                        return cli_bad_option(argv[0], "h", options, argc, argv);
                }

        if (optind >= argc) {
                fprintf(stderr, "skyforge-agent config: missing subcommand: check or show\n");
                config_usage(stderr);
                return EX_USAGE;
        }
        sub = argv[optind];
        if (optind + 1 < argc) {
                fprintf(stderr, "skyforge-agent config %s: unexpected argument '%s'\n", sub,
                        argv[optind + 1]);
                return EX_USAGE;
        }
        if ((connect || ctx->json) && !streq(sub, "check")) {
                fprintf(stderr, "skyforge-agent config %s: %s is for config check\n", sub,
                        connect ? "--connect" : "--json");
                return EX_USAGE;
        }
        if (streq(sub, "check"))
                return config_check(ctx, connect);
        if (streq(sub, "show"))
                return config_show_effective(ctx);
        fprintf(stderr, "skyforge-agent config: unknown subcommand '%s': use check or show\n", sub);
        return EX_USAGE;
}

const Verb verb_config = {
        .name = "config",
        .args = "check [--connect] [--json]|show",
        .summary = "Check the configuration file, or show the effective configuration",
        .help = "  check   report every problem in the configuration as FILE:LINE: message;\n"
                "          exit status 78 (EX_CONFIG) when there is an error, 0 otherwise\n"
                "          (warnings are printed but do not fail the check)\n"
                "    --connect  also reach what the configuration names and print one line per check\n"
                "          (\"ok   postgres: ...\", \"FAIL remote offsite: ... (fix)\"):\n"
                "          PostgreSQL (login, version, a usable pg_dumpall), each location a job uses\n"
                "          (bucket exists, list, put and delete a probe object skyforge-probe-RANDOM),\n"
                "          the mirror source buckets, the Kubernetes API (login, may list Secrets) and\n"
                "          that identity_file decrypts for recipients; the exit status is the most\n"
                "          specific failure (78 configuration, 77 permission, 69 unreachable, ...)\n"
                "    --json     print the result as one JSON object (problems, and the checks with\n"
                "          --connect); the problems still go to stderr as lines\n"
                "  show    print the effective configuration with every default applied;\n"
                "          secrets are never shown, only the files that hold them\n\n"
                "The file is " CONFIG_DEFAULT_PATH " unless -c FILE is given; see\n"
                "skyforge-agent.conf(5).\n",
        .run = verb_config_run,
};
