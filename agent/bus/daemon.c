/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <signal.h>
#include <sysexits.h>
#include <sys/inotify.h>
#include <systemd/sd-daemon.h>

#include "bus/daemon.h"
#include "log/log.h"

static const char *const job_names[BUS_N_JOBS] = { BUS_JOB_NAMES };

BusJob *daemon_find_job(Daemon *d, const char *name) {
        for (size_t i = 0; i < BUS_N_JOBS; i++)
                if (streq(d->jobs[i].name, name))
                        return &d->jobs[i];
        return NULL;
}

static void daemon_done(Daemon *d) {
        bus_backups_stop_all(&d->backups);
        for (size_t i = 0; i < BUS_N_JOBS; i++)
                bus_job_done(&d->jobs[i]);
        bus_wal_done(&d->wal);
        sd_event_source_disable_unref(d->inotify_source);
        sd_bus_flush_close_unref(d->ctx.bus);
        sd_event_unref(d->ctx.event);
        free(d->ctx.state_dir);
        *d = (Daemon){};
}

static int on_state_dir_event(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        Daemon *d = userdata;
        _cleanup_free_ char *job = NULL;
        const char *suffix;
        BusJob *j = NULL;

        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
                /* Without the directory there is nothing to follow; systemd restarts us and StateDirectory=
                 * brings it back. */
                log_error("State directory %s was removed or moved away; exiting.", d->ctx.state_dir);
                return sd_event_exit(sd_event_source_get_event(s), -ENOENT);
        }
        if (ev->mask & IN_Q_OVERFLOW) {
                /* Events were lost: read every job again. */
                for (size_t i = 0; i < BUS_N_JOBS; i++)
                        (void) bus_job_reload(&d->jobs[i], true);
                (void) bus_wal_reload(&d->wal, true);
                return 0;
        }
        if (ev->len == 0)
                return 0;
        if (bus_wal_is_state_file(ev->name))
                return bus_wal_reload(&d->wal, true), 0;
        /* Only <job>.json counts: the writer's temporary files show up here too and are renamed over it. */
        suffix = endswith(ev->name, ".json");
        if (!suffix)
                return 0;
        job = xstrndup(ev->name, (size_t) (suffix - ev->name));
        j = daemon_find_job(d, job);
        if (!j)
                return 0;
        (void) bus_job_reload(j, true);
        return 0;
}

static int daemon_init(Daemon *d, const char *state_dir) {
        int r;

        d->ctx.state_dir = xstrdup(state_dir);
        for (size_t i = 0; i < BUS_N_JOBS; i++) {
                BusJob *j = &d->jobs[i];
                *j = (BusJob){
                        .ctx = &d->ctx,
                        .name = job_names[i],
                        .unit = xasprintf("skyforge-backup@%s.service", job_names[i]),
                        .timer = xasprintf("skyforge-backup-%s.timer", job_names[i]),
                };
                r = sd_bus_path_encode(BUS_JOB_PATH_PREFIX, j->name, &j->path);
                if (r < 0)
                        return err_setf(r, "cannot build the object path of job %s: %m", j->name);
        }

        d->wal = (BusWal){ .ctx = &d->ctx };

        r = mkdir_p(state_dir, 0755);
        if (r < 0)
                return err_setf(r, "cannot create the state directory %s: %m (set [agent] state_dir)",
                                state_dir);

        r = sd_event_default(&d->ctx.event);
        if (r < 0)
                return err_setf(r, "cannot create the event loop: %m");
        /* The events we need exist only when something is written: an idle daemon sleeps in epoll. */
        r = sd_event_add_inotify(d->ctx.event, &d->inotify_source, state_dir,
                                 IN_ONLYDIR | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                         IN_DELETE_SELF | IN_MOVE_SELF,
                                 on_state_dir_event, d);
        if (r < 0)
                return err_setf(r, "cannot watch the state directory %s: %m", state_dir);
        /* Read after the watch is in place, so a write in between is not missed. */
        for (size_t i = 0; i < BUS_N_JOBS; i++)
                (void) bus_job_reload(&d->jobs[i], false);
        (void) bus_wal_reload(&d->wal, false);

        r = sd_event_add_signal(d->ctx.event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(d->ctx.event, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                return err_setf(r, "cannot handle SIGTERM/SIGINT: %m");
        /* Sends WATCHDOG=1 at half of WatchdogSec= when systemd asks for it; nothing otherwise. */
        r = sd_event_set_watchdog(d->ctx.event, true);
        if (r < 0)
                return err_setf(r, "cannot set up the watchdog: %m");
        return 0;
}

static int daemon_connect(Daemon *d) {
        int r;

        r = sd_bus_open_system(&d->ctx.bus);
        if (r < 0)
                return err_setf(r, "cannot connect to the system bus: %m (is dbus running?)");
        r = sd_bus_add_object_vtable(d->ctx.bus, NULL, BUS_MANAGER_PATH, BUS_MANAGER_INTERFACE,
                                     bus_manager_vtable, d);
        if (r < 0)
                return err_setf(r, "cannot export %s: %m", BUS_MANAGER_PATH);
        for (size_t i = 0; i < BUS_N_JOBS; i++) {
                r = sd_bus_add_object_vtable(d->ctx.bus, NULL, d->jobs[i].path, BUS_JOB_INTERFACE,
                                             bus_job_vtable, &d->jobs[i]);
                if (r < 0)
                        return err_setf(r, "cannot export %s: %m", d->jobs[i].path);
        }
        r = sd_bus_add_object_vtable(d->ctx.bus, NULL, BUS_WAL_PATH, BUS_WAL_INTERFACE, bus_wal_vtable, &d->wal);
        if (r < 0)
                return err_setf(r, "cannot export %s: %m", BUS_WAL_PATH);
        r = sd_bus_attach_event(d->ctx.bus, d->ctx.event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return err_setf(r, "cannot attach the bus to the event loop: %m");
        /* Losing the bus ends the loop with a failure: systemd restarts us. */
        r = sd_bus_set_exit_on_disconnect(d->ctx.bus, true);
        if (r < 0)
                return err_setf(r, "cannot set up the bus: %m");
        r = sd_bus_request_name(d->ctx.bus, BUS_NAME, 0);
        if (r == -EEXIST)
                return err_set(r, EX_UNAVAILABLE, "%s is already owned by another process on the system bus "
                               "(is skyforge-agent.service already running?)", BUS_NAME);
        if (r < 0)
                return err_set(r, EX_NOPERM,
                               "cannot own %s on the system bus: %m (only root may; is the policy file "
                               "org.skyforge.Agent1.conf installed?)", BUS_NAME);
        return 0;
}

int bus_daemon_run(const char *state_dir) {
        return bus_daemon_run_listing(state_dir, NULL, NULL);
}

int bus_daemon_run_listing(const char *state_dir, const char *agent_path, const char *config_path) {
        _cleanup_(daemon_done) Daemon d = {};

        d.backups = (BusBackups){ .ctx = &d.ctx, .agent_path = agent_path, .config_path = config_path };
        sigset_t mask;
        int r;

        /* sd-event takes signals as events only when they are blocked (SIGCHLD: ListBackups' children). */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return err_setf(-errno, "cannot block SIGTERM, SIGINT and SIGCHLD: %m");

        r = daemon_init(&d, state_dir);
        if (r < 0)
                return r;
        r = daemon_connect(&d);
        if (r < 0)
                return r;

        (void) sd_notifyf(false, "READY=1\nSTATUS=Following %zu jobs in %s", (size_t) BUS_N_JOBS, state_dir);
        log_debug("Serving %s, following %s", BUS_NAME, state_dir);

        r = sd_event_loop(d.ctx.event);
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        if (r == -ENOENT)
                return err_set(r, EX_UNAVAILABLE, "state directory %s disappeared", state_dir);
        if (r != 0)
                return err_set(r < 0 ? r : -ECONNRESET, EX_UNAVAILABLE,
                               "lost the connection to the system bus (was dbus restarted?)");
        return 0;
}
