/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "conf/conf.h"

/* What the WAL stream tells the operator besides its log lines: the state file (sys/wal-state.h) that
 * `status`, the metrics and the D-Bus daemon read, and the journal events of job "wal-stream". */

/* Around wal_stream() (jobs/wal.h): the "started" record (state file, journal event, metrics) before it,
 * and the "stopped" or "failed" one with its result r after it. */
void wal_status_begin(const Config *c);
void wal_status_end(const Config *c, int r);

/* What the stream knows now (jobs/wal.c passes it in). */
typedef struct WalStatusUpdate {
        const char *slot;
        uint32_t timeline;
        uint64_t lag_bytes;
        bool lag_warning;
        uint64_t stored_lsn;
} WalStatusUpdate;

/* Records u; the state file and the metrics are rewritten when something changed, at most once a second
 * unless force. */
void wal_status_update(const Config *c, const WalStatusUpdate *u, bool force);
/* A complete segment was committed and acknowledged: the journal event, and the state's last segment. */
void wal_status_segment_stored(const char *segment, uint64_t bytes);
