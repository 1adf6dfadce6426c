/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "bus/context.h"
#include "sys/wal-state.h"

/* The WAL stream (skyforge-wal.service) on the bus: /org/skyforge/Agent1/wal, interface
 * org.skyforge.Agent1.WalStream, read from <state_dir>/wal-stream.json like the jobs from theirs. */
#define BUS_WAL_PATH           "/org/skyforge/Agent1/wal"
#define BUS_WAL_INTERFACE      "org.skyforge.Agent1.WalStream"
#define BUS_WAL_PROPERTIES_MAX 8

typedef struct BusWal {
        const BusContext *ctx;
        WalState state;
        /* While running: the stream's process, watched with a pidfd (a kill -9 writes no state). */
        sd_event_source *pid_source;
        uint64_t watched_pid;
} BusWal;

extern const sd_bus_vtable bus_wal_vtable[];

/* Which properties differ between two readings (NULL-terminated in ret); returns how many. */
size_t bus_wal_changed_properties(const WalState *old, const WalState *new,
                                  const char *ret[static BUS_WAL_PROPERTIES_MAX + 1]);
/* Whether name (in the state directory) is the stream's state file. */
bool bus_wal_is_state_file(const char *name);
int bus_wal_reload(BusWal *w, bool announce);
void bus_wal_done(BusWal *w);
