/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <time.h>

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
        CHANGED_STR(progress_text, "ProgressText");
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

static void job_unwatch_process(BusJob *j) {
        j->pid_source = sd_event_source_disable_unref(j->pid_source);
        j->watched_pid = 0;
}

void bus_job_done(BusJob *j) {
        job_unwatch_process(j);
        free(j->path);
        free(j->unit);
        free(j->timer);
        job_state_done(&j->state);
}

/* When the process started, in CLOCK_REALTIME usec (field 22 of /proc/PID/stat counts ticks since boot). */
static int process_start_usec(pid_t pid, uint64_t *ret) {
        _cleanup_free_ char *path = xasprintf("/proc/%d/stat", (int) pid), *text = NULL;
        unsigned long long ticks;
        const char *p;
        long hz = sysconf(_SC_CLK_TCK);
        int r;

        r = read_file_string(path, 4096, &text);
        if (r < 0)
                return r;
        /* The command name in parentheses may contain anything: count fields after its closing one. */
        p = strrchr(text, ')');
        if (!p || hz <= 0 ||
            sscanf(p + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                   &ticks) != 1)
                return -EBADMSG;
        *ret = now_usec(CLOCK_REALTIME) - now_usec(CLOCK_BOOTTIME) + ticks * USEC_PER_SEC / (uint64_t) hz;
        return 0;
}

static void job_apply(BusJob *j, JobState *new, bool announce);

/* The state file says running, but the process that wrote it is gone: show the run as failed, as
 * `systemctl status` would. The next run writes a fresh state over it. */
static void job_mark_vanished(BusJob *j, bool announce) {
        json_object *o = job_state_to_json(&j->state);
        JobState s = {};
        int r;

        r = job_state_from_json(o, &s);
        json_object_put(o);
        if (r < 0)
                return;
        log_warning("Job %s: its process (PID %" PRIu64 ") ended without recording a result.", j->name,
                    s.pid);
        free(s.state);
        free(s.last_result);
        free(s.last_error);
        s.state = xstrdup("failed");
        s.last_result = xstrdup("failed");
        s.last_error = xasprintf("the job process (PID %" PRIu64 ") ended without recording a result "
                                 "(killed?); see journalctl -u %s", s.pid, j->unit);
        s.last_end_usec = now_usec(CLOCK_REALTIME);
        s.progress = -1;
        s.pid = 0;
        job_apply(j, &s, announce);
}

static int on_job_process_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        BusJob *j = userdata;
        uint64_t pid = j->watched_pid;

        job_unwatch_process(j);
        /* A job that ends normally has written its result before exiting: read it first. */
        (void) bus_job_reload(j, true);
        if (streq_ptr(j->state.state, "running") && j->state.pid == pid)
                job_mark_vanished(j, true);
        return 0;
}

static void job_watch_process(BusJob *j, bool announce) {
        pid_t pid = (pid_t) j->state.pid;
        uint64_t started;
        int fd, r;

        if (!streq_ptr(j->state.state, "running") || j->state.pid == 0) {
                job_unwatch_process(j);
                return;
        }
        if (j->watched_pid == j->state.pid)
                return;
        job_unwatch_process(j);

        fd = pidfd_open(pid, 0);
        if (fd < 0) {
                if (errno == ESRCH)
                        job_mark_vanished(j, announce);
                else
                        log_debug_errno(errno, "Cannot watch PID %d of job %s: %m", (int) pid, j->name);
                return;
        }
        /* After a reboot the PID may belong to some other process: the job's own started before it
         * recorded its start time. */
        if (j->state.last_start_usec > 0 && process_start_usec(pid, &started) >= 0 &&
            started > j->state.last_start_usec + 5 * USEC_PER_SEC) {
                close(fd);
                job_mark_vanished(j, announce);
                return;
        }
        r = sd_event_add_io(j->ctx->event, &j->pid_source, fd, EPOLLIN, on_job_process_exit, j);
        if (r < 0) {
                close(fd);
                log_debug_errno(r, "Cannot watch PID %d of job %s: %m", (int) pid, j->name);
                return;
        }
        (void) sd_event_source_set_io_fd_own(j->pid_source, true);
        j->watched_pid = j->state.pid;
}

int bus_job_reload(BusJob *j, bool announce) {
        JobState new = {};
        int r;

        r = job_state_read(j->ctx->state_dir, j->name, &new);
        if (r < 0)
                /* A torn or foreign file: keep what we had; the next write brings a fresh event. */
                return log_warning_errno(r, "%s, ignoring.", err_message());
        job_apply(j, &new, announce);
        return 0;
}

static void job_announce(BusJob *j, const char **props, bool finished) {
        sd_bus *bus = j->ctx->bus;
        int r;

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
}

/* Takes over *new as the job's state and announces the difference. */
static void job_apply(BusJob *j, JobState *new, bool announce) {
        const char *props[BUS_JOB_PROPERTIES_MAX + 1];
        bool finished;
        size_t n;

        n = bus_job_changed_properties(&j->state, new, props);
        finished = bus_job_finished(&j->state, new);
        job_state_done(&j->state);
        j->state = *new;
        *new = (JobState){};

        if (announce && n > 0)
                job_announce(j, props, finished);
        job_watch_process(j, announce);
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
        /* The line systemctl status shows (STATUS=): bytes, percent, rate and ETA. */
        SD_BUS_PROPERTY("ProgressText", "s", NULL, JOB_FIELD(progress_text), EMITS),
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
