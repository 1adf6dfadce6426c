/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "shared/util.h"

/* The state of one job, written atomically to <state_dir>/<job>.json on every change of state (and at
 * most once a second with progress while running). `status` and the D-Bus daemon read it; the daemon
 * follows the files with inotify. */
typedef struct JobState {
        char *job;
        char *state;       /* "idle", "running", "failed" (last run failed, not running) */
        char *last_result; /* "success", "failed", "skipped" (another node ran it), "" (never ran) */
        char *last_error;
        char *last_backup_id;
        uint64_t last_bytes;
        uint64_t last_start_usec;
        uint64_t last_end_usec;
        uint64_t last_success_usec;
        double progress;   /* 0..1 while running, -1 unknown */
        char *progress_text;
        char *last_verify; /* verify result summary, "" when never verified */
        uint64_t pid;      /* of the running process, 0 when idle */
        char *lease_holder; /* last_result "skipped": the node that held the job's Lease ("" if none) */
} JobState;

void job_state_done(JobState *s);
/* A missing file reads as a job that never ran. */
int job_state_read(const char *state_dir, const char *job, JobState *ret);
/* Writes the state; last_verify is kept as it is on disk (see job_state_write_verify()). */
int job_state_write(const char *state_dir, const JobState *s);
/* Records a verify result in the job's state, leaving everything else as it is on disk. */
int job_state_write_verify(const char *state_dir, const char *job, const char *last_verify);
char *job_state_path(const char *state_dir, const char *job);
struct json_object;
struct json_object *job_state_to_json(const JobState *s);
int job_state_from_json(struct json_object *o, JobState *ret);
/* A state file's members: a string (copied; "" when missing or of another type), a number (0 when missing). */
char *state_json_str(struct json_object *o, const char *key);
uint64_t state_json_u64(struct json_object *o, const char *key);
