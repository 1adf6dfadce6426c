/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "sys/state.h"
#include "shared/util.h"

/* Progress of a long operation, shown at most once a second: on a terminal as a rewritten line on stderr,
 * under systemd as STATUS= (systemctl status) with EXTEND_TIMEOUT_USEC= while work moves, and in the job
 * state file for `status` and the D-Bus daemon. */
typedef struct Progress {
        char *verb;              /* "dumping" */
        uint64_t total_estimate; /* 0: unknown */
        uint64_t done;
        bool count_objects;      /* also show objects_done/objects_total (mirror) */
        uint64_t objects_done;
        uint64_t objects_total;
        uint64_t start_usec;
        uint64_t last_shown_usec;
        bool tty;
        bool notify;
        bool shown;
        const char *state_dir;   /* optional: where to update the state */
        JobState *state;
} Progress;

void progress_init(Progress *p, const char *verb, uint64_t total_estimate, const char *state_dir, JobState *state);
void progress_update(Progress *p, uint64_t done);
/* Always shows the current figure (ignores the rate limit). */
void progress_flush(Progress *p);
/* Clears the terminal line and the STATUS. */
void progress_done(Progress *p);
char *progress_format(const Progress *p, uint64_t now);
