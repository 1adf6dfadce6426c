/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <time.h>

#include "cli/status-wal.h"
#include "log/log.h"
#include "sys/wal-state.h"

char *status_format_age(uint64_t usec) {
        uint64_t s = usec / USEC_PER_SEC;

        if (s < 120)
                return xasprintf("%" PRIu64 " s", s);
        if (s < 120 * 60)
                return xasprintf("%" PRIu64 " min", s / 60);
        if (s < 48 * 3600)
                return xasprintf("%" PRIu64 " h", s / 3600);
        return xasprintf("%" PRIu64 " days", s / 86400);
}

static int status_wal_read(const Config *c, WalState *ret) {
        int r = wal_state_read(c->agent.state_dir, ret);
        if (r < 0) {
                log_warning("%s", err_message());
                return r;
        }
        if (isempty(ret->state)) {
                wal_state_done(ret);
                return 0;
        }
        wal_state_fix_stale(ret);
        return 1;
}

static uint64_t age_of(uint64_t usec) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        return now > usec ? now - usec : 0;
}

void status_wal_print(const Config *c, FILE *out) {
        _cleanup_(wal_state_done) WalState w = {};
        _cleanup_free_ char *what = NULL, *seg = NULL;
        char lag[FORMAT_BYTES_MAX];

        if (status_wal_read(c, &w) <= 0)
                return;
        if (streq(w.state, "running"))
                what = xasprintf("running (PID %" PRIu64 ") on timeline %" PRIu32 ", slot %s holds %s%s",
                                 w.pid, w.timeline, w.slot, format_bytes(w.lag_bytes, lag, sizeof lag),
                                 w.lag_warning ? " (over wal_warn_bytes: is the store reachable?)" : "");
        else if (streq(w.state, "failed"))
                what = xasprintf("failed: %s", w.last_error);
        else
                what = xasprintf("%s", w.state);
        if (!isempty(w.last_segment)) {
                _cleanup_free_ char *age = status_format_age(age_of(w.last_segment_usec));
                seg = xasprintf("; last segment %s stored %s ago", w.last_segment, age);
        } else
                seg = xstrdup("; no segment stored yet");
        fprintf(out, "\nWAL stream: %s%s\n", what, seg);
}

json_object *status_wal_json(const Config *c) {
        _cleanup_(wal_state_done) WalState w = {};
        json_object *o;

        if (status_wal_read(c, &w) <= 0)
                return NULL;
        o = json_object_new_object();
        json_object_object_add(o, "job", json_object_new_string(WAL_STATE_NAME));
        json_object_object_add(o, "state", json_object_new_string(w.state));
        json_object_object_add(o, "pid", w.pid ? json_object_new_uint64(w.pid) : NULL);
        json_object_object_add(o, "slot", json_object_new_string(w.slot));
        json_object_object_add(o, "timeline", w.timeline ? json_object_new_uint64(w.timeline) : NULL);
        json_object_object_add(o, "last_segment",
                               isempty(w.last_segment) ? NULL : json_object_new_string(w.last_segment));
        if (w.last_segment_usec) {
                _cleanup_free_ char *t = format_iso8601(w.last_segment_usec);
                json_object_object_add(o, "last_segment_time", json_object_new_string(t));
                json_object_object_add(o, "last_segment_age_seconds",
                                       json_object_new_uint64(age_of(w.last_segment_usec) / USEC_PER_SEC));
        } else {
                json_object_object_add(o, "last_segment_time", NULL);
                json_object_object_add(o, "last_segment_age_seconds", NULL);
        }
        json_object_object_add(o, "lag_bytes", json_object_new_uint64(w.lag_bytes));
        json_object_object_add(o, "lag_warning", json_object_new_boolean(w.lag_warning));
        json_object_object_add(o, "stored_lsn",
                               isempty(w.stored_lsn) ? NULL : json_object_new_string(w.stored_lsn));
        json_object_object_add(o, "segments", json_object_new_uint64(w.segments));
        if (w.started_usec) {
                _cleanup_free_ char *t = format_iso8601(w.started_usec);
                json_object_object_add(o, "started", json_object_new_string(t));
        } else
                json_object_object_add(o, "started", NULL);
        json_object_object_add(o, "last_error",
                               isempty(w.last_error) ? NULL : json_object_new_string(w.last_error));
        return o;
}
