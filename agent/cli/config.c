/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

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
static int config_check_connect(const Config *c, bool deferred_errors) {
        _cleanup_(connect_report_done) ConnectReport rep = {};
        int code;

        job_install_signal_handlers();
        config_connect_check(c, &rep);
        connect_report_print(&rep, stdout);
        code = connect_report_exit_code(&rep);
        if (deferred_errors)
                code = connect_exit_code_merge(code, EX_CONFIG);
        return code;
}

static int config_check(CliContext *ctx, bool connect) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(config_problems_done) ConfigProblems problems = {};
        size_t warnings;
        bool deferred;

        if (config_verb_load(ctx, &c, &problems) < 0)
                return EX_CONFIG;
        /* Deferred errors (a missing secret file) do not stop other commands, but they fail the check. */
        deferred = config_problems_count_deferred(&problems) > 0;
        if (connect)
                return config_check_connect(c, deferred);
        if (deferred)
                return EX_CONFIG;
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
                default:
                        config_usage(stderr);
                        return EX_USAGE;
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
        if (connect && !streq(sub, "check")) {
                fprintf(stderr, "skyforge-agent config %s: --connect is for config check\n", sub);
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
        .args = "check [--connect]|show",
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
                "  show    print the effective configuration with every default applied;\n"
                "          secrets are never shown, only the files that hold them\n\n"
                "The file is " CONFIG_DEFAULT_PATH " unless -c FILE is given; see\n"
                "skyforge-agent.conf(5).\n",
        .run = verb_config_run,
};
