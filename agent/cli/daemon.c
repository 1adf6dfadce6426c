/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <limits.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "log/log.h"

/* Becomes skyforge-agentd (the same process: systemd's MainPID, the notify socket and the watchdog carry
 * over), found beside this binary (a build tree) or in PKGLIBEXECDIR (the package). Returns only on
 * failure. */
static int daemon_exec(const CliContext *ctx, const Config *config, const char *state_dir) {
        _cleanup_free_ char *self = NULL, *beside = NULL;
        const char *argv[10], *agentd = PKGLIBEXECDIR "/skyforge-agentd";
        size_t n = 0;
        char *slash;

        self = xmalloc(PATH_MAX);
        ssize_t k = readlink("/proc/self/exe", self, PATH_MAX - 1);
        if (k <= 0)
                return err_setf(-errno, "cannot find our own binary (/proc/self/exe): %m (is /proc mounted?)");
        self[k] = '\0';
        slash = strrchr(self, '/');
        beside = xasprintf("%.*s/skyforge-agentd", (int) (slash ? slash - self : 0), self);
        if (access(beside, X_OK) == 0)
                agentd = beside;

        argv[n++] = agentd;
        argv[n++] = "--state-dir";
        argv[n++] = state_dir;
        argv[n++] = "--agent";
        argv[n++] = self;
        if (config->from_file) {
                argv[n++] = "-c";
                argv[n++] = ctx->config_path;
        }
        argv[n] = NULL;
        execv(agentd, (char **) argv);
        return err_set(-errno, EX_OSFILE, "cannot run %s: %m (is the package complete?)", agentd);
}

static int run_daemon(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "state-dir", required_argument, NULL, 'S' },
                {}
        };
        _cleanup_(config_freep) Config *config = NULL;
        const char *state_dir = NULL;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        cli_verb_help(&verb_daemon, stdout);
                        return EX_OK;
                case 'S':
                        state_dir = optarg;
                        break;
                default:
                        return cli_bad_option(argv[0], "h", options, argc, argv);
                }
        if (optind < argc)
                return cli_unexpected_argument(argv[0], argv[optind]);

        /* A configuration with errors is refused here, before the service claims the bus name. */
        r = cli_load_config(ctx, &config);
        if (r != EX_OK)
                return r;
        if (!state_dir)
                state_dir = config->agent.state_dir;

        r = daemon_exec(ctx, config, state_dir);
        return cli_fail(r, "cannot start the daemon");
}

const Verb verb_daemon = {
        .name = "daemon",
        .args = "[--state-dir DIR]",
        .summary = "Serve job state and control on the system bus (org.skyforge.Agent1)",
        .help = "Runs the D-Bus service of skyforge-agent.service: one object per job with its state and\n"
                "progress, read from the job state files (followed with inotify), and methods to start and\n"
                "cancel jobs through systemd. Stops on SIGTERM. The service itself is the small program\n"
                "skyforge-agentd (this command becomes it); ListBackups runs `skyforge-agent list --json`.\n"
                "\n"
                "      --state-dir DIR   follow the job state in DIR instead of [agent] state_dir\n",
        .run = run_daemon,
};
