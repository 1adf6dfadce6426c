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
        bool total_final;        /* count_objects: the totals are complete (listing done): an ETA is fair */
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

/* Whether a terminal line is drawn on stderr: auto (stderr is a terminal and SKYFORGE_NO_PROGRESS is not
 * set), always (--progress), never (--no-progress). STATUS= and the state file are not affected. */
typedef enum ProgressMode {
        PROGRESS_AUTO,
        PROGRESS_ALWAYS,
        PROGRESS_NEVER,
} ProgressMode;
void progress_set_mode(ProgressMode mode);

/* "ETA 1h02m", "ETA 3m05s", "ETA 12s" for the time left; "" when it cannot be told yet. */
void progress_format_eta(uint64_t left_usec, char *buf, size_t len);
#define PROGRESS_ETA_MAX 32

void progress_init(Progress *p, const char *verb, uint64_t total_estimate, const char *state_dir, JobState *state);
void progress_update(Progress *p, uint64_t done);
/* Always shows the current figure (ignores the rate limit). */
void progress_flush(Progress *p);
/* Clears the terminal line and the STATUS. */
void progress_done(Progress *p);
char *progress_format(const Progress *p, uint64_t now);
