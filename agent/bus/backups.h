/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "conf/conf.h"

/* ListBackups answer: per backup (newest first) job, id, started and finished (CLOCK_REALTIME usec), bytes,
 * encrypted — the fields of `skyforge-agent list --json`. */
#define BUS_BACKUPS_SIGNATURE "a(sstttb)"

/* Appends the backups of job (NULL: all jobs) in the destinations of c to m as BUS_BACKUPS_SIGNATURE;
 * c NULL (a daemon started without a configuration) lists none. Blocks while the stores are listed. */
int bus_backups_append(sd_bus_message *m, const Config *c, const char *job);
