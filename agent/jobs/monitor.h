/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"

/* Optional monitoring outputs of [agent]. Neither ever fails a job: problems are logged as warnings. */

typedef enum JobPing {
        JOB_PING_START,
        JOB_PING_SUCCESS,
        JOB_PING_FAIL,
} JobPing;

/* healthcheck_url, healthchecks.io style: URL/start, URL, URL/fail (a POST with message as body). "%j" in
 * the URL is the job's name. Bounded by a short timeout. */
void job_monitor_ping(const Config *c, const char *job, JobPing what, const char *message);

/* Rewrites metrics_file atomically from the state files of every job. */
void job_monitor_write_metrics(const Config *c);

/* The URL pinged for what (tests). */
char *job_monitor_ping_url(const char *url, const char *job, JobPing what);
/* The textfile for the state files in state_dir (tests). */
char *job_monitor_metrics_text(const char *state_dir);
