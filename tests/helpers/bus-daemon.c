/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The daemon's core without the command line: `bus-daemon STATE_DIR`. The integration tests use it while
 * `skyforge-agent daemon` is not wired into the command table (they prefer the real command once it is). */
#include "bus/daemon.h"
#include "log/log.h"

int main(int argc, char *argv[]) {
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: %s STATE_DIR\n", argv[0]);
                return 64;
        }
        log_setup();
        r = bus_daemon_run(argv[1]);
        if (r < 0) {
                fprintf(stderr, "bus-daemon: %s\n", err_message() ?: strerror(-r));
                return err_exit_code(r);
        }
        return 0;
}
