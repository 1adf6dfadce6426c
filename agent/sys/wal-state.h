/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "shared/util.h"

/* The state of the WAL stream (skyforge-wal.service), written atomically by `wal-stream` to
 * <state_dir>/wal-stream.json when it starts, stores a segment, when the slot's lag changes (at most once a
 * second) and when it stops. `status`, the metrics and the D-Bus daemon read it. */
#define WAL_STATE_NAME "wal-stream"

typedef struct WalState {
        char *state; /* "running", "stopped" (SIGTERM), "failed"; "" when it never ran */
        uint64_t pid; /* of the stream while running */
        char *slot;
        uint32_t timeline;
        char *last_segment; /* the newest complete segment stored ("" before the first) */
        uint64_t last_segment_usec; /* when it was stored (CLOCK_REALTIME) */
        uint64_t lag_bytes; /* WAL the slot holds on the server: its end of WAL minus what is stored */
        bool lag_warning; /* lag_bytes is over wal_warn_bytes */
        char *stored_lsn; /* everything before it is committed in the store */
        uint64_t segments; /* stored since the stream started */
        uint64_t started_usec;
        uint64_t updated_usec;
        char *last_error;
} WalState;

void wal_state_done(WalState *s);
char *wal_state_path(const char *state_dir);
/* A missing file reads as a stream that never ran (state ""). */
int wal_state_read(const char *state_dir, WalState *ret);
int wal_state_write(const char *state_dir, const WalState *s);
/* A state file saying "running" whose process is gone (kill -9, OOM): reads as "failed", with that said
 * in last_error. */
void wal_state_fix_stale(WalState *s);
