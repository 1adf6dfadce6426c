/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>

#include "cli/cli.h"
#include "log/log.h"
#include "sys/progress.h"

static const Verb *const verbs[] = {
        &verb_run, &verb_list, &verb_status, &verb_restore, &verb_prune, &verb_config, &verb_keygen,
        &verb_daemon, &verb_version,
        &verb_verify, &verb_recover,
        &verb_wal_stream, &verb_wal_fetch,
};

/* The commands as an operator looks for them. A command in no group is listed under "Other". */
static const struct {
        const char *title;
        const char *const *names;
} groups[] = {
        { "Back up", (const char *const[]){ "run", "wal-stream", NULL } },
        { "Look", (const char *const[]){ "status", "list", "verify", NULL } },
        { "Restore", (const char *const[]){ "restore", "recover", "wal-fetch", NULL } },
        { "Maintain", (const char *const[]){ "prune", "daemon", NULL } },
        { "Set up", (const char *const[]){ "config", "keygen", "version", NULL } },
};

#define USAGE_WIDTH 80

/* Writes text with the cursor at column at (after a space when space_first), breaking at spaces before
 * USAGE_WIDTH and going on at column indent. */
static void print_wrapped(FILE *f, size_t at, size_t indent, bool space_first, const char *text) {
        size_t col = at;
        bool space = space_first;

        for (text += strspn(text, " "); *text; text += strspn(text, " ")) {
                size_t word = 0;
                int depth = 0;

                /* A bracketed group ("[--postgres-to CONNINFO]") is kept on one line. */
                for (; text[word] && (depth > 0 || text[word] != ' '); word++)
                        depth += text[word] == '[' ? 1 : text[word] == ']' ? -1 : 0;
                if (col > indent && col + space + word > USAGE_WIDTH) {
                        fprintf(f, "\n%*s", (int) indent, "");
                        col = indent;
                } else if (space) {
                        fputc(' ', f);
                        col++;
                }
                fprintf(f, "%.*s", (int) word, text);
                col += word;
                text += word;
                space = true;
        }
        fputc('\n', f);
}

static bool verb_grouped(const Verb *v) {
        for (size_t g = 0; g < ELEMENTSOF(groups); g++)
                for (const char *const *n = groups[g].names; *n; n++)
                        if (streq(*n, v->name))
                                return true;
        return false;
}

static const Verb *verb_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i]->name, name))
                        return verbs[i];
        return NULL;
}

static void usage_verb_line(FILE *f, const Verb *v) {
        fprintf(f, "  %-11s", v->name);
        print_wrapped(f, 13, 13, false, v->summary);
}

static void usage(FILE *f) {
        bool other = false;

        fputs("Usage: skyforge-agent [OPTIONS] COMMAND [ARGS...]\n"
              "\n"
              "Backs up PostgreSQL, MinIO and the cluster configuration of a Skyforge node, and\n"
              "restores them.\n", f);
        for (size_t g = 0; g < ELEMENTSOF(groups); g++) {
                fprintf(f, "\n%s:\n", groups[g].title);
                for (const char *const *n = groups[g].names; *n; n++) {
                        const Verb *v = verb_find(*n);
                        if (v)
                                usage_verb_line(f, v);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (!verb_grouped(verbs[i])) {
                        if (!other)
                                fputs("\nOther:\n", f);
                        other = true;
                        usage_verb_line(f, verbs[i]);
                }
        fputs("\n"
              "Options:\n"
              "  -c, --config FILE   configuration file, default:\n"
              "                      " CONFIG_DEFAULT_PATH "\n"
              "  -v, --verbose       log debug messages\n"
              "      --progress      show progress on stderr even when it is not a terminal\n"
              "      --no-progress   never show it there (default: on a terminal)\n"
              "  -h, --help          show this help (COMMAND --help for a command)\n"
              "      --version       show the version\n"
              "\n"
              "Exit status follows sysexits(3): 0 success, 64 usage, 65 damaged backup,\n"
              "69 service unreachable, 70 internal error, 75 try again (job running or\n"
              "cancelled), 77 permission denied, 78 config error.\n"
              "See skyforge-agent(8) and skyforge-agent.conf(5).\n", f);
}

/* One usage line per alternative of v->args (separated by " | "), each wrapped within 80 columns. */
static void usage_lines(const Verb *v, FILE *f) {
        _cleanup_free_ char *args = xstrdup(v->args);
        char *p = args;
        bool first = true;

        for (;;) {
                char *bar = NULL;
                _cleanup_free_ char *head = NULL;
                int depth = 0;

                /* The next " | " outside brackets ("[--time TS | --lsn LSN]" is one alternative). */
                for (char *q = p; *q && !bar; q++)
                        if (*q == '[')
                                depth++;
                        else if (*q == ']')
                                depth--;
                        else if (depth == 0 && startswith(q, " | "))
                                bar = q;

                if (bar)
                        *bar = '\0';
                head = xasprintf("%s skyforge-agent [-c FILE] %s", first ? "Usage:" : "      ", v->name);
                /* The alternatives go on under the command's first argument. */
                fputs(head, f);
                print_wrapped(f, strlen(head), strlen(head) + 1, true, p);
                if (!bar)
                        break;
                p = bar + 3;
                first = false;
        }
}

int cli_bad_option(const char *command, const char *shortopts, const struct option *options, int argc,
                   char *argv[]) {
        const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        const char *prefix = command ? " " : "", *cmd = strempty(command);

        /* A long option's optopt is its val, not a letter the operator typed: go by what was typed. */
        if (optopt != 0 && !startswith(arg, "--")) {
                const char *known = strchr(shortopts, optopt);
                if (known && known[1] == ':')
                        fprintf(stderr, "skyforge-agent%s%s: option -%c needs an argument.\n", prefix, cmd, optopt);
                else
                        fprintf(stderr, "skyforge-agent%s%s: unknown option -%c.\n", prefix, cmd, optopt);
        } else {
                _cleanup_free_ char *name = xstrndup(arg, strcspn(arg, "="));
                _cleanup_free_ const char **longs = NULL;
                size_t n = 0;
                bool needs_arg = false;

                for (const struct option *o = options; o && o->name; o++)
                        n++;
                longs = xcalloc(n + 1, sizeof(char *));
                n = 0;
                for (const struct option *o = options; o && o->name; o++) {
                        _cleanup_free_ char *dashed = xasprintf("--%s", o->name);
                        if (streq(dashed, name))
                                needs_arg = o->has_arg == required_argument;
                        longs[n++] = o->name;
                }
                if (needs_arg)
                        fprintf(stderr, "skyforge-agent%s%s: option %s needs an argument.\n", prefix, cmd, name);
                else {
                        const char *m = closest_word(startswith(name, "--") ?: name, longs, n);
                        fprintf(stderr, "skyforge-agent%s%s: unknown option %s%s%s%s\n", prefix, cmd, name,
                                m ? "; did you mean --" : ".", strempty(m), m ? "?" : "");
                }
        }
        fprintf(stderr, "Try 'skyforge-agent %s%s--help'.\n", cmd, command ? " " : "");
        return EX_USAGE;
}

int cli_unexpected_argument(const char *command, const char *arg) {
        const Verb *v = verb_find(command);

        fprintf(stderr, "skyforge-agent %s: unexpected argument '%s'\n", command, arg);
        if (v)
                usage_lines(v, stderr);
        return EX_USAGE;
}

void cli_verb_help(const Verb *v, FILE *f) {
        usage_lines(v, f);
        fputc('\n', f);
        print_wrapped(f, 0, 0, false, v->summary);
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
                        return cli_bad_option(argv[0], "", options, argc, argv);
        return 0;
}

void cli_json_print(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        fflush(stdout);
        json_object_put(o);
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
        if (argc > 1)
                return cli_unexpected_argument("version", argv[1]);
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
                { "progress", no_argument, NULL, 'P' },
                { "no-progress", no_argument, NULL, 'N' },
                {},
        };
        CliContext ctx = { .config_path = CONFIG_DEFAULT_PATH };
        int c;

        log_setup();
        /* "+": stop at the command, its options are its own. */
        opterr = 0;
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
                case 'P':
                        progress_set_mode(PROGRESS_ALWAYS);
                        break;
                case 'N':
                        progress_set_mode(PROGRESS_NEVER);
                        break;
                default:
                        return cli_bad_option(NULL, "c:vh", options, argc, argv);
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
                opterr = 0; /* their loops call cli_bad_option(): the option, and the closest one */
                int r = verbs[i]->run(&ctx, sub_argc, sub_argv);
                log_journal_sync();
                return r;
        }
        const char *names[ELEMENTSOF(verbs)];
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                names[i] = verbs[i]->name;
        const char *m = closest_word(name, names, ELEMENTSOF(verbs));
        fprintf(stderr, "skyforge-agent: unknown command \"%s\"%s%s%s Try 'skyforge-agent --help'.\n", name,
                m ? "; did you mean \"" : ".", strempty(m), m ? "\"?" : "");
        return EX_USAGE;
}
