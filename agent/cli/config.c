/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "cli/cli.h"

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

static int config_check(CliContext *ctx) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(config_problems_done) ConfigProblems problems = {};
        size_t warnings;

        /* Deferred errors (a missing secret file) do not stop other commands, but they fail the check. */
        if (config_verb_load(ctx, &c, &problems) < 0 || config_problems_count_deferred(&problems) > 0)
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
                {},
        };
        const char *sub;
        int c;

        optind = 0; /* glibc: start over, another verb or the global options may have used getopt */
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        config_usage(stdout);
                        return EX_OK;
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
        if (streq(sub, "check"))
                return config_check(ctx);
        if (streq(sub, "show"))
                return config_show_effective(ctx);
        fprintf(stderr, "skyforge-agent config: unknown subcommand '%s': use check or show\n", sub);
        return EX_USAGE;
}

const Verb verb_config = {
        .name = "config",
        .args = "check|show",
        .summary = "Check the configuration file, or show the effective configuration",
        .help = "  check   report every problem in the configuration as FILE:LINE: message;\n"
                "          exit status 78 (EX_CONFIG) when there is an error, 0 otherwise\n"
                "          (warnings are printed but do not fail the check)\n"
                "  show    print the effective configuration with every default applied;\n"
                "          secrets are never shown, only the files that hold them\n\n"
                "The file is " CONFIG_DEFAULT_PATH " unless -c FILE is given; see\n"
                "skyforge-agent.conf(5).\n",
        .run = verb_config_run,
};
