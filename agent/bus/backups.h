/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "bus/context.h"

/* ListBackups answer: per backup (newest first) job, id, started and finished (CLOCK_REALTIME usec), bytes,
 * encrypted — the fields of `skyforge-agent list --json`. */
#define BUS_BACKUPS_SIGNATURE "a(sstttb)"
/* ListBackupsWithNode answer: the same with the node after the job: the node folder a volumes backup is in
 * (each node keeps its own, and two nodes' backups may share an id), "" for the other jobs and for volumes
 * backups from before node folders. */
#define BUS_BACKUPS_NODE_SIGNATURE "a(ssstttb)"

/* At most this many listings at once; more are refused with LimitsExceeded until one ends. */
#define BUS_BACKUPS_MAX_PENDING 4
/* A listing that has not ended after this long is killed and answered with an error. Long enough for the
 * S3 client's own retries (retry_time) to end first with their clearer message. */
#define BUS_BACKUPS_TIMEOUT_USEC (600 * USEC_PER_SEC)
/* What a listing may send back (about 80 bytes a backup). */
#define BUS_BACKUPS_MAX_REPLY (16u << 20)

typedef struct BackupsCall BackupsCall;

/* The ListBackups calls being answered, each by a forked child that reads the store, so the daemon's event
 * loop never waits on the network. */
typedef struct BusBackups {
        const BusContext *ctx;
        /* ListBackups runs `AGENT_PATH [-c CONFIG_PATH] list [JOB] --json` in a child and answers from
         * its output: the daemon itself never loads the S3, PostgreSQL or age code (nor their libraries).
         * agent_path NULL: there is nothing to list; config_path NULL: the agent's default file. */
        const char *agent_path;
        const char *config_path;
        BackupsCall *calls;
} BusBackups;

/* Answers the ListBackups call request (with_node: ListBackupsWithNode) for job (NULL: all jobs) later,
 * from the event loop: the stores are listed in a child process (S3 retries can take minutes; the daemon
 * keeps answering and feeding the watchdog meanwhile, and a stop kills the child). Without agent_path the
 * answer, an empty array, is sent at once. Returns 1 when the answer is on its way, negative with error
 * set. */
int bus_backups_start(BusBackups *b, sd_bus_message *request, const char *job, bool with_node,
                      sd_bus_error *error);
/* Kills and forgets every listing still running (the daemon is stopping). */
void bus_backups_stop_all(BusBackups *b);
