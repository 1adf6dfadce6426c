/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "cli/cli.h"
#include "log/log.h"

static const Verb *const verbs[] = {
        &verb_run, &verb_list, &verb_status, &verb_restore, &verb_prune, &verb_config, &verb_keygen,
        &verb_daemon, &verb_version,
        &verb_verify, &verb_recover,
        &verb_wal_stream, &verb_wal_fetch,
};

static void usage(FILE *f) {
        fputs("Usage: skyforge-agent [-c FILE] COMMAND [ARGS...]\n"
              "\n"
              "Backs up PostgreSQL, MinIO and the cluster configuration of a Skyforge node, and restores them.\n"
              "\n"
              "Commands:\n", f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_free_ char *head = xasprintf("%s %s", verbs[i]->name, verbs[i]->args);
                if (strlen(head) > 34)
                        fprintf(f, "  %s\n  %-34s %s\n", head, "", verbs[i]->summary);
                else
                        fprintf(f, "  %-34s %s\n", head, verbs[i]->summary);
        }
        fputs("\n"
              "Options:\n"
              "  -c, --config FILE                  configuration file (default " CONFIG_DEFAULT_PATH ")\n"
              "  -v, --verbose                      log debug messages\n"
              "  -h, --help                         show this help (COMMAND --help for a command)\n"
              "      --version                      show the version\n"
              "\n"
              "Exit status follows sysexits(3): 0 success, 64 usage, 65 damaged backup, 69 service unreachable,\n"
              "70 internal error, 75 try again (job running or cancelled), 77 permission denied, 78 config error.\n"
              "See skyforge-agent(8) and skyforge-agent.conf(5).\n", f);
}

void cli_verb_help(const Verb *v, FILE *f) {
        fprintf(f, "Usage: skyforge-agent [-c FILE] %s %s\n\n%s\n", v->name, v->args, v->summary);
        if (v->help)
                fprintf(f, "\n%s", v->help);
}

int cli_load_config(CliContext *ctx, Config **ret) {
        _cleanup_(config_problems_done) ConfigProblems problems = {};
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        r = config_load(ctx->config_path, ctx->config_explicit, &c, &problems);
        if (r < 0) {
                /* Each problem once: on a terminal the lines, under systemd (stderr is the journal too) one
                 * journal entry with all of them. */
                if (log_to_journal()) {
                        _cleanup_free_ char *all = xstrdup("");
                        for (size_t i = 0; i < problems.n; i++) {
                                const ConfigProblem *e = problems.items + i;
                                char *n = xasprintf("%s%sline %u: %s%s", all, i > 0 ? "; " : "", e->line,
                                                    e->severity == CONFIG_WARNING ? "warning: " : "",
                                                    e->message);
                                free(all);
                                all = n;
                        }
                        log_error("configuration %s is invalid: %s; run `skyforge-agent config check` after "
                                  "fixing it",
                                  ctx->config_path, all);
                } else {
                        config_problems_print(&problems, ctx->config_path, stderr);
                        fprintf(stderr,
                                "skyforge-agent: %s has errors; run `skyforge-agent config check` after "
                                "fixing them.\n",
                                ctx->config_path);
                }
                return EX_CONFIG;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int cli_parse_json_option(int argc, char *argv[], bool *ret_json) {
        static const struct option options[] = { { "json", no_argument, NULL, 'j' }, {} };
        int o;

        *ret_json = false;
        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0)
                if (o == 'j')
                        *ret_json = true;
                else
                        return EX_USAGE;
        return 0;
}

int cli_fail(int r, const char *what) {
        const char *msg = err_message();

        if (msg)
                log_error("%s", msg);
        else
                log_error_errno(r, "%s: %m", what);
        return err_exit_code(r);
}

static int verb_version_run(CliContext *ctx, int argc, char *argv[]) {
        printf("skyforge-agent %s\n", PACKAGE_VERSION);
        return 0;
}

const Verb verb_version = {
        .name = "version",
        .args = "",
        .summary = "Show the version.",
        .run = verb_version_run,
};

int cli_main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        CliContext ctx = { .config_path = CONFIG_DEFAULT_PATH };
        int c;

        log_setup();
        /* "+": stop at the command, its options are its own. */
        while ((c = getopt_long(argc, argv, "+c:vh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        ctx.config_path = optarg;
                        ctx.config_explicit = true;
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        return verb_version_run(&ctx, 0, NULL);
                default:
                        fputs("Try 'skyforge-agent --help'.\n", stderr);
                        return EX_USAGE;
                }
        if (optind >= argc) {
                usage(stderr);
                return EX_USAGE;
        }

        const char *name = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                if (!streq(verbs[i]->name, name))
                        continue;
                int sub_argc = argc - optind;
                char **sub_argv = argv + optind;
                for (int j = 1; j < sub_argc; j++) {
                        if (streq(sub_argv[j], "--"))
                                break;
                        if (streq(sub_argv[j], "--help") || streq(sub_argv[j], "-h")) {
                                cli_verb_help(verbs[i], stdout);
                                return 0;
                        }
                }
                optind = 0; /* reset getopt for the command's own options */
                int r = verbs[i]->run(&ctx, sub_argc, sub_argv);
                log_journal_sync();
                return r;
        }
        fprintf(stderr, "skyforge-agent: unknown command \"%s\". Try 'skyforge-agent --help'.\n", name);
        return EX_USAGE;
}
