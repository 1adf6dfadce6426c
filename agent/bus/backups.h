/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <systemd/sd-bus.h>

/* ListBackups answer: per backup (newest first) job, id, started and finished (CLOCK_REALTIME usec), bytes,
 * encrypted — the fields of `skyforge-agent list --json`. */
#define BUS_BACKUPS_SIGNATURE "a(sstttb)"

/* Appends the backups of job (NULL: all jobs) to m as BUS_BACKUPS_SIGNATURE. */
int bus_backups_append(sd_bus_message *m, const char *job);
