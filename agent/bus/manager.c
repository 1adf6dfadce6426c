/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "bus/daemon.h"
#include "log/log.h"

/* The bus policy already keeps everyone but root away from the methods; this is the second lock, for a
 * policy that was edited or a bus without one. */
static int check_root(sd_bus_message *m, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid;
        int r;

        /* On dbus-daemon the bus reports the peer's effective uid (SO_PEERCRED); sd-bus files it as EUID. */
        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return r;
        if (uid != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "only root may start, cancel or list backup jobs (caller uid %u)",
                                         (unsigned) uid);
        return 0;
}

static int find_job_or_error(Daemon *d, const char *name, BusJob **ret, sd_bus_error *error) {
        BusJob *j = daemon_find_job(d, name);

        if (!j)
                return sd_bus_error_setf(error, BUS_ERROR_UNKNOWN_JOB,
                                         "unknown job '%s'; the jobs are postgres, mirror and config", name);
        *ret = j;
        return 0;
}

static int method_list_jobs(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Daemon *d = userdata;
        int r;

        r = check_root(m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ssso)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < BUS_N_JOBS; i++) {
                BusJob *j = &d->jobs[i];
                r = sd_bus_message_append(reply, "(ssso)", j->name, strempty(j->state.state),
                                          strempty(j->state.last_result), j->path);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* A StartJob/CancelJob waiting for systemd's answer; the caller gets systemd's job path or its error. */
typedef struct UnitCall {
        sd_bus_message *request;
        char *unit;
        const char *what; /* "start" / "stop" */
} UnitCall;

static void unit_call_free(UnitCall *c) {
        if (!c)
                return;
        sd_bus_message_unref(c->request);
        free(c->unit);
        free(c);
}

static int unit_call_done(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        UnitCall *c = userdata;
        const char *job_path;
        int r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                const char *hint = sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                                          SD_BUS_ERROR_NAME_HAS_NO_OWNER)
                                           ? " (is systemd running and on this bus?)"
                                           : "";

                r = sd_bus_reply_method_errorf(c->request, BUS_ERROR_SYSTEMD,
                                               "cannot %s %s through systemd: %s: %s%s", c->what, c->unit,
                                               e->name, strna(e->message), hint);
        } else {
                r = sd_bus_message_read(reply, "o", &job_path);
                if (r >= 0)
                        r = sd_bus_reply_method_return(c->request, "o", job_path);
                else
                        r = sd_bus_reply_method_errorf(c->request, BUS_ERROR_SYSTEMD,
                                                       "cannot %s %s: unexpected answer from systemd",
                                                       c->what, c->unit);
        }
        if (r < 0)
                log_warning_errno(r, "Failed to answer the %s request for %s: %m, ignoring.", c->what,
                                  c->unit);
        unit_call_free(c);
        return 0;
}

static int call_systemd_for_job(sd_bus_message *m, void *userdata, sd_bus_error *error, const char *method,
                                const char *what) {
        Daemon *d = userdata;
        const char *name;
        BusJob *j = NULL;
        UnitCall *c;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        r = find_job_or_error(d, name, &j, error);
        if (r < 0)
                return r;
        r = check_root(m, error);
        if (r < 0)
                return r;

        c = xmalloc(sizeof *c);
        *c = (UnitCall){ .request = sd_bus_message_ref(m), .unit = xstrdup(j->unit), .what = what };
        /* Asynchronously: a slow systemd must not stall property reads of the other jobs. */
        r = sd_bus_call_method_async(d->ctx.bus, NULL, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                     "org.freedesktop.systemd1.Manager", method, unit_call_done, c, "ss",
                                     j->unit, "replace");
        if (r < 0) {
                unit_call_free(c);
                return sd_bus_error_set_errnof(error, r, "cannot ask systemd to %s %s: %m", what, j->unit);
        }
        log_info("%s requested for job %s (%s)", method, name, j->unit);
        return 1;
}

static int method_start_job(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return call_systemd_for_job(m, userdata, error, "StartUnit", "start");
}

static int method_cancel_job(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return call_systemd_for_job(m, userdata, error, "StopUnit", "stop");
}

static int list_backups(sd_bus_message *m, void *userdata, bool with_node, sd_bus_error *error) {
        Daemon *d = userdata;
        const char *name;
        BusJob *j = NULL;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        /* "" lists the backups of every job. */
        if (!isempty(name)) {
                r = find_job_or_error(d, name, &j, error);
                if (r < 0)
                        return r;
        }
        r = check_root(m, error);
        if (r < 0)
                return r;
        /* Answered later: the stores are read off the event loop. */
        return bus_backups_start(&d->backups, m, isempty(name) ? NULL : name, with_node, error);
}

static int method_list_backups(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return list_backups(m, userdata, false, error);
}

static int method_list_backups_with_node(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return list_backups(m, userdata, true, error);
}

const sd_bus_vtable bus_manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("ListJobs", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(ssso)", jobs), method_list_jobs,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("StartJob", SD_BUS_ARGS("s", job), SD_BUS_RESULT("o", systemd_job),
                                method_start_job, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CancelJob", SD_BUS_ARGS("s", job), SD_BUS_RESULT("o", systemd_job),
                                method_cancel_job, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListBackups", SD_BUS_ARGS("s", job),
                                SD_BUS_RESULT(BUS_BACKUPS_SIGNATURE, backups), method_list_backups,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListBackupsWithNode", SD_BUS_ARGS("s", job),
                                SD_BUS_RESULT(BUS_BACKUPS_NODE_SIGNATURE, backups),
                                method_list_backups_with_node, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};
