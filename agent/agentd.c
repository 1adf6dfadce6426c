/* SPDX-License-Identifier: GPL-2.0-or-later */
/* skyforge-agentd: the D-Bus service alone, which `skyforge-agent daemon` becomes (exec). It links only
 * the bus, the state files, logging and their libraries (libsystemd, json-c): an idle daemon that has
 * libcurl, OpenSSL, libpq and libarchive mapped and initialised costs several MiB more for nothing.
 * ListBackups, which needs them, runs the full skyforge-agent in a child (bus/backups.c). */
#include <getopt.h>
#include <sysexits.h>

#include "bus/daemon.h"
#include "log/log.h"

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "state-dir", required_argument, NULL, 'S' },
                { "agent", required_argument, NULL, 'A' },
                { "config", required_argument, NULL, 'c' },
                {},
        };
        const char *state_dir = NULL, *agent = NULL, *config = NULL;
        int o, r;

        log_setup();
        while ((o = getopt_long(argc, argv, "c:", options, NULL)) >= 0)
                switch (o) {
                case 'S':
                        state_dir = optarg;
                        break;
                case 'A':
                        agent = optarg;
                        break;
                case 'c':
                        config = optarg;
                        break;
                default:
                        return EX_USAGE;
                }
        if (!state_dir || optind < argc) {
                fprintf(stderr, "usage: %s --state-dir DIR [--agent PATH [-c FILE]] (started by "
                                "`skyforge-agent daemon`)\n", argv[0]);
                return EX_USAGE;
        }
        r = bus_daemon_run_listing(state_dir, agent, config);
        if (r < 0) {
                log_error("%s", err_message() ?: strerror(-r));
                return err_exit_code(r);
        }
        return EX_OK;
}
