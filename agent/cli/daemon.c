/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "bus/daemon.h"
#include "cli/cli.h"
#include "log/log.h"

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
                        return EX_USAGE;
                }
        if (optind < argc) {
                fprintf(stderr, "skyforge-agent daemon: unexpected argument '%s'\n", argv[optind]);
                return EX_USAGE;
        }

        /* The configuration too: ListBackups lists the job destinations. */
        r = cli_load_config(ctx, &config);
        if (r != EX_OK)
                return r;
        if (state_dir) {
                /* The default local destinations live below state_dir: follow the override there too. */
                free(config->agent.state_dir);
                config->agent.state_dir = xstrdup(state_dir);
        } else
                state_dir = config->agent.state_dir;

        r = bus_daemon_run_config(config, state_dir);
        if (r < 0)
                return cli_fail(r, "daemon");
        return EX_OK;
}

const Verb verb_daemon = {
        .name = "daemon",
        .args = "[--state-dir DIR]",
        .summary = "Serve job state and control on the system bus (org.skyforge.Agent1)",
        .help = "Runs the D-Bus service of skyforge-agent.service: one object per job with its state and\n"
                "progress, read from the job state files (followed with inotify), and methods to start and\n"
                "cancel jobs through systemd. Stops on SIGTERM.\n"
                "\n"
                "      --state-dir DIR   follow DIR instead of [agent] state_dir of the configuration\n",
        .run = run_daemon,
};
