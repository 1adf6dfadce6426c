/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>

#include "bus/wal.h"
#include "log/log.h"

bool bus_wal_is_state_file(const char *name) {
        return streq(name, WAL_STATE_NAME ".json");
}

size_t bus_wal_changed_properties(const WalState *old, const WalState *new,
                                  const char *ret[static BUS_WAL_PROPERTIES_MAX + 1]) {
        size_t n = 0;

        if (!streq(strempty(old->state), strempty(new->state)))
                ret[n++] = "State";
        if (old->lag_bytes != new->lag_bytes)
                ret[n++] = "WalLagBytes";
        if (old->lag_warning != new->lag_warning)
                ret[n++] = "WalLagWarning";
        if (!streq(strempty(old->last_segment), strempty(new->last_segment)))
                ret[n++] = "LastWalSegment";
        if (old->last_segment_usec != new->last_segment_usec)
                ret[n++] = "LastWalUSec";
        if (old->timeline != new->timeline)
                ret[n++] = "Timeline";
        if (!streq(strempty(old->slot), strempty(new->slot)))
                ret[n++] = "Slot";
        if (!streq(strempty(old->last_error), strempty(new->last_error)))
                ret[n++] = "LastError";
        ret[n] = NULL;
        return n;
}

static void wal_unwatch(BusWal *w) {
        w->pid_source = sd_event_source_disable_unref(w->pid_source);
        w->watched_pid = 0;
}

void bus_wal_done(BusWal *w) {
        wal_unwatch(w);
        wal_state_done(&w->state);
}

static void wal_apply(BusWal *w, WalState *new, bool announce);

static int on_wal_process_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        BusWal *w = userdata;

        wal_unwatch(w);
        /* A stream that stops normally has recorded it before exiting; a killed one is marked failed. */
        (void) bus_wal_reload(w, true);
        return 0;
}

static void wal_watch(BusWal *w) {
        int fd, r;

        if (!streq_ptr(w->state.state, "running") || w->state.pid == 0) {
                wal_unwatch(w);
                return;
        }
        if (w->watched_pid == w->state.pid)
                return;
        wal_unwatch(w);
        fd = pidfd_open((pid_t) w->state.pid, 0);
        if (fd < 0)
                return; /* gone already: the next reload (wal_state_fix_stale) shows it */
        r = sd_event_add_io(w->ctx->event, &w->pid_source, fd, EPOLLIN, on_wal_process_exit, w);
        if (r < 0) {
                close(fd);
                log_debug_errno(r, "Cannot watch the WAL stream's PID %" PRIu64 ": %m", w->state.pid);
                return;
        }
        (void) sd_event_source_set_io_fd_own(w->pid_source, true);
        w->watched_pid = w->state.pid;
}

static void wal_apply(BusWal *w, WalState *new, bool announce) {
        const char *props[BUS_WAL_PROPERTIES_MAX + 1];
        size_t n = bus_wal_changed_properties(&w->state, new, props);
        int r;

        wal_state_done(&w->state);
        w->state = *new;
        *new = (WalState){};
        if (announce && n > 0 && w->ctx->bus) {
                r = sd_bus_emit_properties_changed_strv(w->ctx->bus, BUS_WAL_PATH, BUS_WAL_INTERFACE,
                                                        (char **) props);
                if (r < 0)
                        log_warning_errno(r, "Failed to emit PropertiesChanged for the WAL stream: %m, "
                                             "ignoring.");
        }
        wal_watch(w);
}

int bus_wal_reload(BusWal *w, bool announce) {
        WalState new = {};
        int r;

        r = wal_state_read(w->ctx->state_dir, &new);
        if (r < 0)
                return log_warning_errno(r, "%s, ignoring.", err_message());
        wal_state_fix_stale(&new);
        wal_apply(w, &new, announce);
        return 0;
}

static int property_get(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const WalState *s = &((BusWal *) userdata)->state;

        if (streq(property, "State"))
                /* Never ran on this node: "" in the file, "never" here. */
                return sd_bus_message_append(reply, "s", isempty(s->state) ? "never" : s->state);
        if (streq(property, "WalLagBytes"))
                return sd_bus_message_append(reply, "t", s->lag_bytes);
        if (streq(property, "WalLagWarning"))
                return sd_bus_message_append(reply, "b", (int) s->lag_warning);
        if (streq(property, "LastWalSegment"))
                return sd_bus_message_append(reply, "s", strempty(s->last_segment));
        if (streq(property, "LastWalUSec"))
                return sd_bus_message_append(reply, "t", s->last_segment_usec);
        if (streq(property, "Timeline"))
                return sd_bus_message_append(reply, "u", s->timeline);
        if (streq(property, "Slot"))
                return sd_bus_message_append(reply, "s", strempty(s->slot));
        return sd_bus_message_append(reply, "s", strempty(s->last_error)); /* LastError */
}

#define EMITS SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

const sd_bus_vtable bus_wal_vtable[] = {
        SD_BUS_VTABLE_START(0),
        /* "running", "stopped", "failed" (also: its process vanished), "never". */
        SD_BUS_PROPERTY("State", "s", property_get, 0, EMITS),
        /* WAL the replication slot holds on the server that is not stored yet. */
        SD_BUS_PROPERTY("WalLagBytes", "t", property_get, 0, EMITS),
        SD_BUS_PROPERTY("WalLagWarning", "b", property_get, 0, EMITS),
        /* The newest complete segment in the store, and when it was stored (CLOCK_REALTIME usec). */
        SD_BUS_PROPERTY("LastWalSegment", "s", property_get, 0, EMITS),
        SD_BUS_PROPERTY("LastWalUSec", "t", property_get, 0, EMITS),
        SD_BUS_PROPERTY("Timeline", "u", property_get, 0, EMITS),
        SD_BUS_PROPERTY("Slot", "s", property_get, 0, EMITS),
        SD_BUS_PROPERTY("LastError", "s", property_get, 0, EMITS),
        SD_BUS_VTABLE_END,
};
