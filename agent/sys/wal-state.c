/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>

#include "log/log.h"
#include "sys/state.h"
#include "sys/wal-state.h"

void wal_state_done(WalState *s) {
        free(s->state);
        free(s->slot);
        free(s->last_segment);
        free(s->stored_lsn);
        free(s->last_error);
        *s = (WalState){};
}

char *wal_state_path(const char *state_dir) {
        return xasprintf("%s/%s.json", state_dir, WAL_STATE_NAME);
}

int wal_state_read(const char *state_dir, WalState *ret) {
        _cleanup_free_ char *path = wal_state_path(state_dir), *text = NULL;
        json_object *o, *v;
        int r;

        r = read_file_string(path, 1 << 16, &text);
        if (r == -ENOENT) {
                *ret = (WalState){ .state = xstrdup(""),
                                   .slot = xstrdup(""),
                                   .last_segment = xstrdup(""),
                                   .stored_lsn = xstrdup(""),
                                   .last_error = xstrdup("") };
                return 0;
        }
        if (r < 0)
                return err_setf(r, "cannot read the WAL stream's state %s: %m", path);
        o = json_tokener_parse(text);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return err_setf(-EBADMSG,
                                "the WAL stream's state %s is not a JSON object; remove it to reset it",
                                path);
        }
        *ret = (WalState){
                .state = state_json_str(o, "state"),
                .pid = state_json_u64(o, "pid"),
                .slot = state_json_str(o, "slot"),
                .timeline = (uint32_t) state_json_u64(o, "timeline"),
                .last_segment = state_json_str(o, "last_segment"),
                .last_segment_usec = state_json_u64(o, "last_segment_usec"),
                .lag_bytes = state_json_u64(o, "lag_bytes"),
                .lag_warning = json_object_object_get_ex(o, "lag_warning", &v) && json_object_get_boolean(v),
                .stored_lsn = state_json_str(o, "stored_lsn"),
                .segments = state_json_u64(o, "segments"),
                .started_usec = state_json_u64(o, "started_usec"),
                .updated_usec = state_json_u64(o, "updated_usec"),
                .last_error = state_json_str(o, "last_error"),
        };
        json_object_put(o);
        return 0;
}

int wal_state_write(const char *state_dir, const WalState *s) {
        _cleanup_free_ char *path = wal_state_path(state_dir);
        json_object *o = json_object_new_object();
        const char *text;
        int r;

        json_object_object_add(o, "state", json_object_new_string(strempty(s->state)));
        json_object_object_add(o, "pid", json_object_new_uint64(s->pid));
        json_object_object_add(o, "slot", json_object_new_string(strempty(s->slot)));
        json_object_object_add(o, "timeline", json_object_new_uint64(s->timeline));
        json_object_object_add(o, "last_segment", json_object_new_string(strempty(s->last_segment)));
        json_object_object_add(o, "last_segment_usec", json_object_new_uint64(s->last_segment_usec));
        json_object_object_add(o, "lag_bytes", json_object_new_uint64(s->lag_bytes));
        json_object_object_add(o, "lag_warning", json_object_new_boolean(s->lag_warning));
        json_object_object_add(o, "stored_lsn", json_object_new_string(strempty(s->stored_lsn)));
        json_object_object_add(o, "segments", json_object_new_uint64(s->segments));
        json_object_object_add(o, "started_usec", json_object_new_uint64(s->started_usec));
        json_object_object_add(o, "updated_usec", json_object_new_uint64(s->updated_usec));
        json_object_object_add(o, "last_error", json_object_new_string(strempty(s->last_error)));
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        r = mkdir_p(state_dir, 0755);
        if (r >= 0)
                r = write_file_atomic(path, text, strlen(text), 0644);
        json_object_put(o);
        if (r < 0)
                return err_setf(r, "cannot write the WAL stream's state %s: %s (is state_dir writable?)",
                                path, strerror(-r));
        return 0;
}

void wal_state_fix_stale(WalState *s) {
        if (!streq_ptr(s->state, "running") || s->pid == 0)
                return;
        if (kill((pid_t) s->pid, 0) >= 0 || errno != ESRCH)
                return;
        free(s->state);
        s->state = xstrdup("failed");
        free(s->last_error);
        s->last_error =
                xasprintf("the stream process (PID %" PRIu64 ") ended without recording it (killed?); "
                          "see journalctl -u skyforge-wal",
                          s->pid);
        s->pid = 0;
}
