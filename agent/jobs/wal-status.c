/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

#include "jobs/monitor.h"
#include "jobs/wal-status.h"
#include "log/log.h"
#include "pg/replication.h"
#include "sys/wal-state.h"

/* One stream per process: its state as last recorded. */
static WalState current;
static uint64_t last_write_usec;
static bool dirty;

static void set_str(char **field, const char *value) {
        if (streq(strempty(*field), strempty(value)))
                return;
        free(*field);
        *field = xstrdup(strempty(value));
        dirty = true;
}

static void set_u64(uint64_t *field, uint64_t value) {
        if (*field == value)
                return;
        *field = value;
        dirty = true;
}

static void wal_status_write(const Config *c) {
        ERR_KEEP_SCOPE();
        int r;

        current.updated_usec = now_usec(CLOCK_REALTIME);
        r = wal_state_write(c->agent.state_dir, &current);
        if (r < 0)
                log_warning("%s; the stream goes on.", err_message());
        job_monitor_write_metrics(c);
        last_write_usec = now_usec(CLOCK_MONOTONIC);
        dirty = false;
}

void wal_status_update(const Config *c, const WalStatusUpdate *u, bool force) {
        static uint64_t stored_lsn;

        set_str(&current.slot, u->slot);
        if (current.timeline != u->timeline) {
                current.timeline = u->timeline;
                dirty = true;
        }
        set_u64(&current.lag_bytes, u->lag_bytes);
        if (current.lag_warning != u->lag_warning) {
                current.lag_warning = u->lag_warning;
                force = true;
        }
        /* Formatted only when it moved: this runs for every message of a busy server. */
        if (u->stored_lsn != stored_lsn || !current.stored_lsn) {
                _cleanup_free_ char *lsn = u->stored_lsn ? pg_lsn_format(u->stored_lsn) : xstrdup("");
                stored_lsn = u->stored_lsn;
                set_str(&current.stored_lsn, lsn);
        }
        if (force || (dirty && now_usec(CLOCK_MONOTONIC) - last_write_usec >= USEC_PER_SEC))
                wal_status_write(c);
}

void wal_status_segment_stored(const char *segment, uint64_t bytes) {
        set_str(&current.last_segment, segment);
        current.last_segment_usec = now_usec(CLOCK_REALTIME);
        current.segments++;
        log_job_event(LOG_INFO, SKYFORGE_MESSAGE_WAL_SEGMENT, WAL_STATE_NAME, segment, bytes, UINT64_MAX,
                      "Stored WAL segment %s.", segment);
}

static uint64_t start_mono;

void wal_status_begin(const Config *c) {
        _cleanup_(wal_state_done) WalState before = {};

        start_mono = now_usec(CLOCK_MONOTONIC);
        /* What the last run stored stays visible until this one stores a segment. */
        if (wal_state_read(c->agent.state_dir, &before) < 0)
                err_clear();
        wal_state_done(&current);
        current = (WalState){ .state = xstrdup("running"),
                              .pid = (uint64_t) getpid(),
                              .slot = xstrdup(c->postgres.replication_slot ?: "skyforge"),
                              .last_segment = TAKE_PTR(before.last_segment),
                              .last_segment_usec = before.last_segment_usec,
                              .stored_lsn = xstrdup(""),
                              .started_usec = now_usec(CLOCK_REALTIME),
                              .last_error = xstrdup("") };
        wal_status_write(c);
        log_job_event(LOG_INFO, SKYFORGE_MESSAGE_JOB_STARTED, WAL_STATE_NAME, NULL, UINT64_MAX, UINT64_MAX,
                      "WAL stream started (slot %s).", current.slot);
}

void wal_status_end(const Config *c, int r) {
        ERR_KEEP_SCOPE();
        uint64_t bytes = current.segments * PG_WAL_SEGMENT_DEFAULT,
                 duration = now_usec(CLOCK_MONOTONIC) - start_mono;
        char size[FORMAT_BYTES_MAX];

        set_str(&current.state, r < 0 ? "failed" : "stopped");
        set_str(&current.last_error, r < 0 ? err_message() ?: strerror(-r) : "");
        current.pid = 0;
        wal_status_write(c);
        if (r < 0)
                log_job_event(LOG_ERR, SKYFORGE_MESSAGE_JOB_FAILED, WAL_STATE_NAME, NULL, bytes, duration,
                              "WAL stream failed: %s", current.last_error);
        else
                log_job_event(LOG_INFO, SKYFORGE_MESSAGE_JOB_SUCCEEDED, WAL_STATE_NAME,
                              isempty(current.last_segment) ? NULL : current.last_segment, bytes, duration,
                              "WAL stream stopped: %" PRIu64 " segment(s) (%s) stored in %.1f s.",
                              current.segments, format_bytes(bytes, size, sizeof size),
                              (double) duration / USEC_PER_SEC);
        wal_state_done(&current);
}
