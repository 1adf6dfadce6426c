/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

/* What every object the daemon exports needs: its event loop, its bus connection and the state directory.
 * The daemon (bus/daemon.c) owns it; the job objects (bus/job.c) and the ListBackups calls
 * (bus/backups.c) get a pointer, so none of them needs the daemon itself. */
typedef struct BusContext {
        sd_event *event;
        sd_bus *bus;
        char *state_dir;
} BusContext;
