/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stddef.h>

#include "bus/daemon.h"
#include "bus/job.h"
#include "log/log.h"

static bool is_running(const JobState *s) {
        return streq_ptr(s->state, "running");
}

size_t bus_job_changed_properties(const JobState *old, const JobState *new,
                                  const char *ret[static BUS_JOB_PROPERTIES_MAX + 1]) {
        size_t n = 0;

#define CHANGED_STR(field, prop) \
        if (!streq(strempty(old->field), strempty(new->field))) \
                ret[n++] = prop;
#define CHANGED_NUM(field, prop) \
        if (old->field != new->field) \
                ret[n++] = prop;

        CHANGED_STR(state, "State");
        CHANGED_NUM(progress, "Progress");
        CHANGED_STR(last_result, "LastResult");
        CHANGED_STR(last_error, "LastError");
        CHANGED_STR(last_backup_id, "LastBackupId");
        CHANGED_NUM(last_bytes, "LastBytes");
        CHANGED_NUM(last_start_usec, "LastStartUSec");
        CHANGED_NUM(last_end_usec, "LastEndUSec");
        CHANGED_NUM(last_success_usec, "LastSuccessUSec");
        CHANGED_STR(last_verify, "LastVerify");
#undef CHANGED_STR
#undef CHANGED_NUM
        if (is_running(old) != is_running(new) || old->last_end_usec != new->last_end_usec)
                ret[n++] = "NextElapseUSec";
        ret[n] = NULL;
        return n;
}

bool bus_job_finished(const JobState *old, const JobState *new) {
        if (is_running(new))
                return false;
        return is_running(old) || old->last_end_usec != new->last_end_usec;
}

int bus_job_reload(BusJob *j, bool announce) {
        _cleanup_(job_state_done) JobState new = {};
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];
        sd_bus *bus = j->daemon->bus;
        bool finished;
        size_t n;
        int r;

        r = job_state_read(j->daemon->state_dir, j->name, &new);
        if (r < 0)
                /* A torn or foreign file: keep what we had; the next write brings a fresh event. */
                return log_warning_errno(r, "%s, ignoring.", err_message());

        n = bus_job_changed_properties(&j->state, &new, props);
        finished = bus_job_finished(&j->state, &new);
        job_state_done(&j->state);
        j->state = new;
        new = (JobState){};

        if (!announce || n == 0)
                return 0;
        r = sd_bus_emit_properties_changed_strv(bus, j->path, BUS_JOB_INTERFACE, (char **) props);
        if (r < 0)
                log_warning_errno(r, "Failed to emit PropertiesChanged for job %s: %m, ignoring.", j->name);
        if (finished) {
                log_debug("Job %s finished: %s %s", j->name, j->state.last_result, j->state.last_backup_id);
                r = sd_bus_emit_signal(bus, j->path, BUS_JOB_INTERFACE, "Finished", "sss", j->name,
                                       strempty(j->state.last_result), strempty(j->state.last_backup_id));
                if (r < 0)
                        log_warning_errno(r, "Failed to emit Finished for job %s: %m, ignoring.", j->name);
        }
        return 1;
}

uint64_t bus_job_next_elapse(sd_bus *bus, const char *timer) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;
        uint64_t t;
        int r;

        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", timer, &path);
        if (r < 0)
                return 0;
        r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1", path,
                                           "org.freedesktop.DBus.Properties", "Get");
        if (r < 0)
                return 0;
        r = sd_bus_message_append(m, "ss", "org.freedesktop.systemd1.Timer", "NextElapseUSecRealtime");
        if (r < 0)
                return 0;
        /* A reader waits for this answer: do not let a stuck systemd hold it for the default 25 s. */
        r = sd_bus_call(bus, m, 5 * USEC_PER_SEC, &error, &reply);
        if (r < 0) {
                log_debug("Cannot read NextElapseUSecRealtime of %s: %s", timer,
                          error.message ?: strerror(-r));
                return 0;
        }
        r = sd_bus_message_read(reply, "v", "t", &t);
        if (r < 0)
                return 0;
        return t;
}

static int property_get_next_elapse(sd_bus *bus, const char *path, const char *interface,
                                    const char *property, sd_bus_message *reply, void *userdata,
                                    sd_bus_error *error) {
        BusJob *j = userdata;

        return sd_bus_message_append(reply, "t", bus_job_next_elapse(bus, j->timer));
}

#define JOB_FIELD(f) offsetof(BusJob, state) + offsetof(JobState, f)
#define EMITS SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

const sd_bus_vtable bus_job_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("State", "s", NULL, JOB_FIELD(state), EMITS),
        SD_BUS_PROPERTY("Progress", "d", NULL, JOB_FIELD(progress), EMITS),
        SD_BUS_PROPERTY("LastResult", "s", NULL, JOB_FIELD(last_result), EMITS),
        SD_BUS_PROPERTY("LastError", "s", NULL, JOB_FIELD(last_error), EMITS),
        SD_BUS_PROPERTY("LastBackupId", "s", NULL, JOB_FIELD(last_backup_id), EMITS),
        SD_BUS_PROPERTY("LastBytes", "t", NULL, JOB_FIELD(last_bytes), EMITS),
        SD_BUS_PROPERTY("LastStartUSec", "t", NULL, JOB_FIELD(last_start_usec), EMITS),
        SD_BUS_PROPERTY("LastEndUSec", "t", NULL, JOB_FIELD(last_end_usec), EMITS),
        SD_BUS_PROPERTY("LastSuccessUSec", "t", NULL, JOB_FIELD(last_success_usec), EMITS),
        /* Asked from systemd on each read: its value is systemd's, and caching it would need a
         * subscription to the timer that wakes us for nothing. */
        SD_BUS_PROPERTY("NextElapseUSec", "t", property_get_next_elapse, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
        SD_BUS_PROPERTY("LastVerify", "s", NULL, JOB_FIELD(last_verify), EMITS),
        SD_BUS_SIGNAL_WITH_ARGS("Finished", SD_BUS_ARGS("s", job, "s", result, "s", backup_id), 0),
        SD_BUS_VTABLE_END,
};
