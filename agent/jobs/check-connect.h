/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"

/* `config check --connect`: beside the static check, reach everything the configuration names and say
 * what works, like `pgbackrest check` and `restic check`. The result is built first and rendered after,
 * one line per check. */
typedef enum ConnectStatus {
        CONNECT_OK,
        CONNECT_FAIL,
        CONNECT_SKIP, /* not configured: nothing to reach */
} ConnectStatus;

typedef struct ConnectCheck {
        ConnectStatus status;
        char *what; /* "postgres", "remote minio", "store", "kubernetes", "age [postgres]" */
        char *detail; /* what works, or the error with its fix */
        int exit_code; /* sysexits of a failure, 0 otherwise */
} ConnectCheck;

typedef struct ConnectReport {
        ConnectCheck *items;
        size_t n;
} ConnectReport;

void connect_report_done(ConnectReport *r);

/* Runs every check (PostgreSQL, each location a job writes to or reads from, the mirror source, the
 * Kubernetes API, age identities against recipients); failures are recorded, not returned. */
void config_connect_check(const Config *c, ConnectReport *ret);

/* "ok   postgres: ...", "FAIL remote offsite: ...", "skip ..." one per line. */
void connect_report_print(const ConnectReport *r, FILE *f);

/* 0 when nothing failed; else the most specific sysexits code among the failures: 78 (configuration),
 * then 77 (permission), 65 (data), 76 (protocol), 74 (I/O), 69 (unreachable), then any other. */
int connect_report_exit_code(const ConnectReport *r);
int connect_exit_code_merge(int a, int b);
