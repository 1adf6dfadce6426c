/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus/backups.h"
#include "bus/context.h"
#include "bus/job.h"
#include "bus/wal.h"

typedef struct Daemon {
        BusContext ctx;
        BusBackups backups;
        sd_event_source *inotify_source;
        BusJob jobs[BUS_N_JOBS];
        BusWal wal;
} Daemon;

BusJob *daemon_find_job(Daemon *d, const char *name);

/* The D-Bus service: exports the jobs of state_dir as org.skyforge.Agent1 on the system bus (the one
 * $DBUS_SYSTEM_BUS_ADDRESS names, if set) and follows the state files with inotify until SIGTERM or SIGINT.
 * Returns 0 on a clean stop, negative errno with err_message() set otherwise. */
int bus_daemon_run(const char *state_dir);
/* Same, answering ListBackups with `agent_path -c config_path list --json` (see bus/backups.h). */
int bus_daemon_run_listing(const char *state_dir, const char *agent_path, const char *config_path);

extern const sd_bus_vtable bus_manager_vtable[];
