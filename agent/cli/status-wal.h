/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"

struct json_object;
/* The WAL stream in `status`: one line, or one object of `status --json` ({job: "wal-stream", state,
 * pid, slot, timeline, last_segment, last_segment_time, last_segment_age_seconds, lag_bytes, lag_warning,
 * stored_lsn, segments, started, last_error}). Nothing (NULL) when the stream never ran on this node. */
void status_wal_print(const Config *c, FILE *out);
struct json_object *status_wal_json(const Config *c);
/* "12 s", "5 min", "3 h", "2 days". */
char *status_format_age(uint64_t usec);
