/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libgen.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "jobs/context.h"
#include "jobs/postgres-db.h"
#include "jobs/wal.h"
#include "jobs/wal-spool-take.h"
#include "jobs/wal-status.h"
#include "log/log.h"
#include "pg/pg.h"
#include "pg/replication.h"
#include "pipe/pipe.h"

#define WAL_STATUS_INTERVAL_USEC (10 * USEC_PER_SEC)
#define WAL_POLL_USEC            (1 * USEC_PER_SEC)
/* The largest WAL file we write when fetching: the largest segment size PostgreSQL allows. */
#define WAL_FETCH_MAX (UINT64_C(1) << 30)

void wal_store_done(WalStore *w) {
        store_free(w->store);
        free(w->prefix);
        *w = (WalStore){};
}

char *wal_store_location(const Config *c, char **ret_prefix) {
        if (c->postgres.wal_destination) {
                *ret_prefix = xstrdup("");
                return xstrdup(c->postgres.wal_destination);
        }
        *ret_prefix = xstrdup("wal/");
        return config_job_destination(c, "postgres");
}

int wal_store_open_location(const Config *c, const char *location, const char *prefix, bool for_write,
                            WalStore *ret) {
        WalStore w = {};
        int r;

        r = for_write ? store_open_location_for_write(c, location, &w.store)
                      : store_open_location(c, location, &w.store);
        if (r < 0)
                return r;
        w.prefix = xstrdup(prefix);
        *ret = w;
        return 0;
}

int wal_store_open(const Config *c, bool for_write, WalStore *ret) {
        _cleanup_free_ char *prefix = NULL, *location = wal_store_location(c, &prefix);

        return wal_store_open_location(c, location, prefix, for_write, ret);
}

char *wal_object_name(const WalStore *w, const char *file, bool partial, bool encrypted) {
        uint32_t tli;
        uint64_t lsn;

        if (pg_history_file_parse(file, &tli) >= 0) {
                if (partial)
                        return NULL;
        } else if (pg_wal_file_parse(file, PG_WAL_SEGMENT_DEFAULT, &tli, &lsn) < 0)
                return NULL;
        return xasprintf("%s%08" PRIX32 "/%s%s.zst%s", w->prefix, tli, file, partial ? ".partial" : "",
                         encrypted ? ".age" : "");
}

/* ---- writing ---- */

/* Stores data under name through the dumps' chain (zstd, age) and commits it. */
static int wal_put(Store *s, const PostgresConfig *pc, const char *name, const void *data, size_t size) {
        _cleanup_(store_writer_freep) StoreWriter *w = NULL;
        _cleanup_(sink_freep) Sink *chain = NULL;
        Digest stored = {};
        int r;

        r = store_writer_open(s, name, &w);
        if (r < 0)
                return r;
        r = postgres_sink_chain(pc, w, &stored, &chain);
        if (r < 0)
                return r;
        r = sink_write(chain, data, size);
        if (r >= 0)
                r = sink_finish(chain);
        if (r < 0)
                return err_setf(r, "cannot store %s in %s: %s", name, s->location,
                                err_message() ?: strerror(-r));
        return store_writer_commit(w);
}

/* One upload at a time runs in a worker thread, so that the replication connection keeps being served
 * (feedback, keepalives) while the store is slow or retrying. */
typedef struct WalUpload {
        Store *store;
        const PostgresConfig *pc;
        char *name;
        char *remove; /* removed once name is committed: the .partial a complete segment replaces */
        uint8_t *data;
        size_t size;
        bool keep_existing; /* a complete segment already stored stays as it is */
        uint64_t end_lsn; /* acknowledged to the server once committed; 0: nothing to acknowledge */
        int efd;
        int result;
        bool kept;
        ErrSaved err;
        pthread_t thread;
        bool running;
} WalUpload;

static void *wal_upload_thread(void *p) {
        WalUpload *u = p;
        StoreEntry e = {};
        int r = 0;

        if (u->keep_existing && store_stat(u->store, u->name, &e) >= 0) {
                /* Stored before a restart that came before its acknowledgement: the same bytes, kept. */
                store_entry_done(&e);
                u->kept = true;
        } else
                r = wal_put(u->store, u->pc, u->name, u->data, u->size);
        if (r >= 0 && u->remove) {
                int k = store_remove(u->store, u->remove);
                if (k < 0)
                        log_warning_errno(k,
                                          "Cannot remove %s from %s (%m); it is replaced by %s, ignoring.",
                                          u->remove, u->store->location, u->name);
        }
        if (r < 0)
                err_save(&u->err, r);
        u->result = r;
        (void) eventfd_write(u->efd, 1);
        return NULL;
}

typedef struct WalStreamer {
        const Config *config;
        WalStore ws;
        PGconn *conn;
        char *slot;
        bool encrypted;
        uint64_t segment_size;
        uint32_t tli;
        uint64_t seg_start; /* LSN where buf starts */
        uint64_t pos; /* next LSN expected */
        uint8_t *buf;
        uint64_t flushed; /* acknowledged: everything before it is committed in the store */
        uint64_t stored_pos; /* everything before it is in the store, complete or partial */
        uint64_t last_partial_usec, last_status_usec, last_watchdog_usec;
        uint64_t reported_pos; /* the write position last sent */
        uint64_t slot_start; /* the slot's restart_lsn when we started */
        uint64_t server_end; /* the server's end of WAL, from its messages */
        uint64_t lag_warned_usec;
        bool lag_warned;
        WalUpload up;
        int efd;
        char last_segment[PG_WAL_FILE_NAME_LEN + 1];
        unsigned segments;
} WalStreamer;

static void wal_streamer_done(WalStreamer *s) {
        if (s->up.running)
                (void) pthread_join(s->up.thread, NULL);
        free(s->up.name);
        free(s->up.remove);
        free(s->up.data);
        err_saved_done(&s->up.err);
        if (s->conn)
                PQfinish(s->conn);
        wal_store_done(&s->ws);
        free(s->slot);
        free(s->buf);
        if (s->efd >= 0)
                close(s->efd);
}

/* What the slot keeps on the server's disk: from the last acknowledged position to its end of WAL. */
static uint64_t wal_lag(const WalStreamer *s) {
        uint64_t base = s->flushed ?: s->slot_start;
        return s->server_end > base ? s->server_end - base : 0;
}

static void wal_notify_status(WalStreamer *s) {
        _cleanup_free_ char *pos = pg_lsn_format(s->pos), *flushed = pg_lsn_format(s->flushed);
        char lag[FORMAT_BYTES_MAX];

        (void) sd_notifyf(
                false, "STATUS=Streaming timeline %" PRIu32 " at %s; stored up to %s%s%s; slot holds %s%s",
                s->tli, pos, flushed, s->last_segment[0] ? ", last segment " : "", s->last_segment,
                format_bytes(wal_lag(s), lag, sizeof lag), s->lag_warned ? " (over wal_warn_bytes)" : "");
}

/* A slot keeps WAL on the database's volume for as long as it is not stored: warn, in the journal and the
 * unit's status, while that passes wal_warn_bytes (again every 10 minutes while it lasts). */
static void wal_check_lag(WalStreamer *s) {
        uint64_t lag = wal_lag(s), now = now_usec(CLOCK_MONOTONIC),
                 limit = s->config->postgres.wal_warn_bytes;
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];

        if (limit == 0)
                return;
        if (lag <= limit) {
                if (s->lag_warned)
                        log_info("Replication slot %s is back under wal_warn_bytes (holds %s).", s->slot,
                                 format_bytes(lag, a, sizeof a));
                s->lag_warned = false;
                return;
        }
        if (s->lag_warned && now - s->lag_warned_usec < 600 * USEC_PER_SEC)
                return;
        log_warning("Replication slot %s holds %s of WAL on the server, more than wal_warn_bytes = %s: the "
                    "database's disk fills until the WAL is stored (is the store reachable? set "
                    "max_slot_wal_keep_size on the server to cap it).",
                    s->slot, format_bytes(lag, a, sizeof a), format_bytes(limit, b, sizeof b));
        s->lag_warned = true;
        s->lag_warned_usec = now;
        wal_notify_status(s);
}

/* The state file and metrics (jobs/wal-status.c): rate-limited there. */
static void wal_record_status(WalStreamer *s, bool force) {
        wal_status_update(s->config,
                          &(WalStatusUpdate){ .slot = s->slot,
                                              .timeline = s->tli,
                                              .lag_bytes = wal_lag(s),
                                              .lag_warning = s->lag_warned,
                                              .stored_lsn = s->flushed },
                          force);
}

static int wal_send_status(WalStreamer *s, bool force) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        int r;

        if (now - s->last_watchdog_usec >= USEC_PER_SEC) {
                (void) sd_notify(false, "WATCHDOG=1");
                s->last_watchdog_usec = now;
        }
        if (!s->conn)
                return 0;
        /* Every 10 s, and at most once a second while WAL arrives, so that pg_stat_replication's write_lsn
         * shows what we hold. */
        if (!force && now - s->last_status_usec < WAL_STATUS_INTERVAL_USEC &&
            (s->pos == s->reported_pos || now - s->last_status_usec < USEC_PER_SEC))
                return 0;
        r = pg_repl_send_status(s->conn, s->pos, s->flushed, false);
        if (r < 0)
                return r;
        s->last_status_usec = now;
        s->reported_pos = s->pos;
        wal_notify_status(s);
        return 0;
}

/* Collects the finished upload; with wait, waits for it (serving the connection meanwhile). */
static int wal_upload_reap(WalStreamer *s, bool wait) {
        WalUpload *u = &s->up;
        eventfd_t v;
        int r;

        while (u->running) {
                if (eventfd_read(s->efd, &v) >= 0)
                        break;
                if (!wait)
                        return 0;
                struct pollfd p = { .fd = s->efd, .events = POLLIN };
                (void) poll(&p, 1, (int) (WAL_POLL_USEC / USEC_PER_MSEC));
                /* Feedback keeps the server from timing us out while the store is slow; the data it sends
                 * meanwhile waits in the socket. */
                r = wal_send_status(s, false);
                if (r < 0)
                        log_debug("%s", err_message() ?: "cannot send feedback");
        }
        if (!u->running)
                return 0;
        (void) pthread_join(u->thread, NULL);
        u->running = false;
        r = u->result;
        if (r >= 0 && u->end_lsn > s->flushed) {
                s->flushed = u->end_lsn;
                /* The name of the segment, without the prefix and timeline directory. */
                const char *base = strrchr(u->name, '/');
                snprintf(s->last_segment, sizeof s->last_segment, "%.24s", base ? base + 1 : u->name);
                s->segments++;
                wal_status_segment_stored(s->last_segment, u->size);
                wal_check_lag(s);
                if (s->conn)
                        (void) wal_send_status(s, true);
        }
        free(TAKE_PTR(u->name));
        free(TAKE_PTR(u->remove));
        free(TAKE_PTR(u->data));
        if (r < 0) {
                r = err_restore(&u->err);
                err_saved_done(&u->err);
        }
        return r;
}

static int wal_upload_start(WalStreamer *s, char *name, char *remove, uint8_t *data, bool keep_existing,
                            uint64_t end_lsn) {
        WalUpload *u = &s->up;
        int r;

        r = wal_upload_reap(s, true);
        if (r < 0) {
                free(name);
                free(remove);
                free(data);
                return r;
        }
        *u = (WalUpload){ .store = s->ws.store,
                          .pc = &s->config->postgres,
                          .name = name,
                          .remove = remove,
                          .data = data,
                          .size = s->segment_size,
                          .keep_existing = keep_existing,
                          .end_lsn = end_lsn,
                          .efd = s->efd };
        r = thread_start(&u->thread, wal_upload_thread, u);
        if (r < 0) {
                free(TAKE_PTR(u->name));
                free(TAKE_PTR(u->remove));
                free(TAKE_PTR(u->data));
                return err_set(r, EX_OSERR, "cannot start the upload thread: %s", strerror(-r));
        }
        u->running = true;
        return 0;
}

static void wal_file_of(WalStreamer *s, uint64_t lsn, char ret[static PG_WAL_FILE_NAME_LEN + 1]) {
        pg_wal_file_name(s->tli, lsn, s->segment_size, ret);
}

static int wal_segment_complete(WalStreamer *s) {
        char file[PG_WAL_FILE_NAME_LEN + 1];
        uint8_t *data = s->buf;
        int r;

        wal_file_of(s, s->seg_start, file);
        s->buf = xcalloc(1, s->segment_size);
        r = wal_upload_start(s, wal_object_name(&s->ws, file, false, s->encrypted),
                             wal_object_name(&s->ws, file, true, s->encrypted), data, true,
                             s->seg_start + s->segment_size);
        s->seg_start += s->segment_size;
        s->stored_pos = s->seg_start;
        return r;
}

/* Uploads what there is of the current segment as its .partial (zero-padded to the segment size, as
 * pg_receivewal leaves it). */
static int wal_upload_partial(WalStreamer *s) {
        char file[PG_WAL_FILE_NAME_LEN + 1];
        uint8_t *copy;

        s->last_partial_usec = now_usec(CLOCK_MONOTONIC);
        if (s->pos <= s->seg_start || s->pos <= s->stored_pos || !s->buf)
                return 0;
        wal_file_of(s, s->seg_start, file);
        copy = xmalloc(s->segment_size);
        memcpy(copy, s->buf, s->segment_size);
        s->stored_pos = s->pos;
        log_debug("Uploading the partial segment %s (%" PRIu64 " bytes).", file, s->pos - s->seg_start);
        return wal_upload_start(s, wal_object_name(&s->ws, file, true, s->encrypted), NULL, copy, false, 0);
}

static int wal_data(WalStreamer *s, const PgReplMessage *m) {
        const uint8_t *p = m->data;
        size_t left = m->size;
        int r;

        if (m->start != s->pos) {
                _cleanup_free_ char *got = pg_lsn_format(m->start), *want = pg_lsn_format(s->pos);
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the server sent WAL at %s where %s was next; a gap would "
                               "break the chain, so the stream stops (it restarts from the slot)",
                               got, want);
        }
        while (left > 0) {
                uint64_t off = s->pos - s->seg_start;
                size_t n = (size_t) MIN((uint64_t) left, s->segment_size - off);
                memcpy(s->buf + off, p, n);
                s->pos += n;
                p += n;
                left -= n;
                if (s->pos == s->seg_start + s->segment_size) {
                        r = wal_segment_complete(s);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int wal_ensure_history(WalStreamer *s, uint32_t tli) {
        _cleanup_free_ char *content = NULL, *name = NULL;
        char file[32];
        size_t size;
        StoreEntry e = {};
        int r;

        if (tli <= 1)
                return 0;
        snprintf(file, sizeof file, "%08" PRIX32 ".history", tli);
        name = wal_object_name(&s->ws, file, false, s->encrypted);
        r = wal_upload_reap(s, true);
        if (r < 0)
                return r;
        if (store_stat(s->ws.store, name, &e) >= 0) {
                store_entry_done(&e);
                return 0;
        }
        r = pg_repl_timeline_history(s->conn, tli, &content, &size);
        if (r < 0)
                return r;
        r = wal_put(s->ws.store, &s->config->postgres, name, content, size);
        if (r < 0)
                return r;
        log_info("Stored the history file of timeline %" PRIu32 ".", tli);
        return 0;
}

static bool wal_leftover(const char *name, void *userdata) {
        const WalStore *ws = userdata;
        return !!startswith(name, ws->prefix);
}

static int wal_start(WalStreamer *s) {
        _cleanup_free_ char *pos = pg_lsn_format(s->pos);
        int r;

        r = wal_ensure_history(s, s->tli);
        if (r < 0)
                return r;
        r = pg_repl_start(s->conn, s->slot, s->pos, s->tli);
        if (r < 0)
                return r;
        log_info("Streaming WAL from %s on timeline %" PRIu32 " (slot %s) into %s.", pos, s->tli, s->slot,
                 s->ws.store->location);
        s->last_partial_usec = now_usec(CLOCK_MONOTONIC);
        return 0;
}

static int wal_timeline_end(WalStreamer *s) {
        uint32_t next_tli;
        uint64_t next_lsn;
        int r;

        r = pg_repl_end(s->conn, &next_tli, &next_lsn);
        if (r < 0)
                return r;
        /* The last segment of the timeline that ended stays a .partial, as the server's archiver leaves it.
         */
        r = wal_upload_partial(s);
        if (r >= 0)
                r = wal_upload_reap(s, true);
        if (r < 0)
                return r;
        if (next_tli == 0 || next_tli <= s->tli)
                return err_set(-ECONNRESET, EX_UNAVAILABLE,
                               "the server ended the WAL stream on timeline %" PRIu32
                               " (shutting down?); the partial segment is stored and the stream restarts",
                               s->tli);
        log_info("Timeline %" PRIu32 " ended; following timeline %" PRIu32 ".", s->tli, next_tli);
        s->tli = next_tli;
        s->seg_start = next_lsn - next_lsn % s->segment_size;
        s->pos = s->stored_pos = s->seg_start;
        memset(s->buf, 0, s->segment_size);
        return wal_start(s);
}

/* On the way out: the in-flight upload ends, then whatever is in the buffer is stored as the partial
 * segment. A second SIGTERM cancels this. */
static int wal_drain(WalStreamer *s) {
        int r, k;

        job_cancel_requested = 0;
        /* What has arrived is kept: the messages already in our socket are taken in first (bounded: the
         * server sends no more than the socket holds without our reading). */
        for (unsigned i = 0; s->conn && i < 100000; i++) {
                _cleanup_(pg_repl_message_done) PgReplMessage m = {};
                if (pg_repl_read(s->conn, &m) < 0 || m.kind == PG_REPL_NOTHING || m.kind == PG_REPL_END)
                        break;
                if (m.kind != PG_REPL_DATA)
                        continue;
                if (wal_data(s, &m) < 0) {
                        log_warning("%s", err_message() ?: "cannot take in the last WAL");
                        break;
                }
        }
        r = wal_upload_reap(s, true);
        if (r < 0)
                log_warning("%s", err_message() ?: "the last upload failed");
        k = wal_upload_partial(s);
        if (k >= 0)
                k = wal_upload_reap(s, true);
        if (s->conn && s->flushed)
                (void) pg_repl_send_status(s->conn, s->pos, s->flushed, false);
        return k < 0 ? k : r;
}

int wal_stream(const Config *c) {
        const PostgresConfig *pc = &c->postgres;
        _cleanup_(wal_streamer_done) WalStreamer s = { .config = c, .efd = -EBADF };
        _cleanup_(pg_identity_done) PgIdentity ident = {};
        uint64_t restart_lsn;
        uint32_t slot_tli;
        bool created;
        int r;

        s.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s.efd < 0)
                return err_set(-errno, EX_OSERR, "cannot create an eventfd: %m");
        s.slot = xstrdup(pc->replication_slot ?: "skyforge");
        s.encrypted = !strv_isempty(pc->recipients);
        r = config_check_passfile(pc->conninfo);
        if (r < 0)
                return r;
        r = wal_store_open(c, true, &s.ws);
        if (r < 0)
                return r;
        r = pg_repl_connect(pc->conninfo, &s.conn);
        if (r < 0)
                return r;
        r = pg_repl_identify(s.conn, &ident);
        if (r < 0)
                return r;
        r = pg_repl_segment_size(s.conn, &s.segment_size);
        if (r < 0)
                return r;
        if (s.segment_size != PG_WAL_SEGMENT_DEFAULT)
                return err_set(-EOPNOTSUPP, EX_CONFIG,
                               "the server's wal_segment_size is %" PRIu64 " bytes; "
                               "wal-stream stores 16 MiB segments only (the initdb default)",
                               s.segment_size);
        r = pg_repl_slot_ensure(s.conn, s.slot, &created, &restart_lsn, &slot_tli);
        if (r < 0)
                return r;
        if (created)
                log_info("Created the physical replication slot %s; the server keeps WAL for it until it is "
                         "stored.",
                         s.slot);
        /* The slot's restart_lsn only moves when we acknowledge a committed segment: from the start of its
         * segment on, everything not yet stored is still on the server. */
        if (restart_lsn == 0) {
                restart_lsn = ident.xlogpos;
                slot_tli = ident.timeline;
        }
        s.slot_start = restart_lsn;
        s.server_end = ident.xlogpos;
        wal_check_lag(&s);
        s.tli = slot_tli ?: ident.timeline;
        s.seg_start = restart_lsn - restart_lsn % s.segment_size;
        s.pos = s.stored_pos = s.seg_start;
        s.buf = xcalloc(1, s.segment_size);
        r = wal_start(&s);
        if (r < 0)
                return r;
        /* What a killed stream left half written: the slot is ours now (a second user is refused), and
         * nobody else writes WAL objects. */
        if (store_cleanup_matching(s.ws.store, 0, wal_leftover, &s.ws) < 0)
                log_warning("%s, continuing.", err_message() ?: "cleanup of interrupted WAL uploads failed");
        (void) sd_notify(false, "READY=1");
        wal_notify_status(&s);
        wal_record_status(&s, true);

        for (;;) {
                _cleanup_(pg_repl_message_done) PgReplMessage m = {};

                if (job_cancel_requested)
                        break;
                r = wal_upload_reap(&s, false);
                if (r < 0)
                        break;
                if (now_usec(CLOCK_MONOTONIC) - s.last_partial_usec >= pc->wal_flush_usec && !s.up.running) {
                        r = wal_upload_partial(&s);
                        if (r < 0)
                                break;
                }
                r = wal_send_status(&s, false);
                if (r < 0)
                        break;
                wal_record_status(&s, false);
                r = pg_repl_read(s.conn, &m);
                if (r < 0)
                        break;
                if (m.kind == PG_REPL_NOTHING) {
                        r = pg_repl_wait(s.conn, s.up.running ? s.efd : -1, WAL_POLL_USEC);
                        if (r == -ECANCELED)
                                break;
                        if (r < 0) {
                                r = err_set(r, EX_OSERR, "cannot wait for the replication connection: %s",
                                            strerror(-r));
                                break;
                        }
                        continue;
                }
                if (m.wal_end > s.server_end) {
                        s.server_end = m.wal_end;
                        wal_check_lag(&s);
                }
                if (m.kind == PG_REPL_KEEPALIVE) {
                        if (m.reply_requested) {
                                r = wal_send_status(&s, true);
                                if (r < 0)
                                        break;
                        }
                        continue;
                }
                if (m.kind == PG_REPL_END) {
                        r = wal_timeline_end(&s);
                        if (r < 0)
                                break;
                        continue;
                }
                r = wal_data(&s, &m);
                if (r < 0)
                        break;
        }
        if (r < 0 && !job_cancel_requested) {
                /* Keep what arrived: the partial segment is the recovery point until the restart. */
                _cleanup_free_ char *msg = xstrdup(err_message() ?: strerror(-r));
                int code = err_exit_code(r);
                (void) wal_drain(&s);
                return err_set(r, code, "%s", msg);
        }
        r = wal_drain(&s);
        if (r < 0)
                return r;
        log_info("WAL stream stopped; %u segments stored in this run, the partial segment is stored.",
                 s.segments);
        return 0;
}

/* ---- fetching ---- */

typedef struct WalObjectRead {
        Source *src;
        const char *name;
        const WalStore *ws;
        uint64_t total;
} WalObjectRead;

static ssize_t wal_object_read(void *userdata, void *buf, size_t size) {
        WalObjectRead *w = userdata;
        ssize_t n = source_read(w->src, buf, size);

        if (n < 0)
                return err_set((int) n, err_exit_code((int) n), "cannot read WAL object %s from %s: %s",
                               w->name, w->ws->store->location, err_message() ?: strerror((int) -n));
        w->total += (uint64_t) n;
        if (w->total > WAL_FETCH_MAX)
                return err_set(-EFBIG, EX_DATAERR, "WAL object %s is larger than any WAL file; refused",
                               w->name);
        return n;
}

static int wal_fetch_object(const Config *c, const WalStore *ws, const char *name, const char *path) {
        _cleanup_(source_freep) Source *src = NULL;
        StoreReader *rd = NULL;
        int r;

        r = store_reader_open(ws->store, name, 0, &rd);
        if (r < 0)
                return r;
        src = source_store_new(rd);
        if (endswith(name, ".age")) {
                Source *dec;
                if (isempty(c->postgres.identity_file))
                        return err_set(-ENOKEY, EX_CONFIG,
                                       "WAL object %s is encrypted; set identity_file = in "
                                       "[postgres] to the age identity of one of [postgres] recipients",
                                       name);
                dec = source_age_new(src, c->postgres.identity_file, &r);
                if (!dec)
                        return err_set(r, err_exit_code(r), "cannot decrypt WAL object %s with %s: %s", name,
                                       c->postgres.identity_file, err_message() ?: strerror(-r));
                src = dec;
        }
        src = source_zstd_new(TAKE_PTR(src));
        return wal_file_write_atomic(path, wal_object_read,
                                     &(WalObjectRead){ .src = src, .name = name, .ws = ws });
}

int wal_fetch(const Config *c, const char *file, const char *path) {
        _cleanup_(wal_store_done) WalStore ws = {};
        bool history;
        uint32_t tli;
        int r;

        history = pg_history_file_parse(file, &tli) >= 0;
        if (!history) {
                uint64_t lsn;
                if (pg_wal_file_parse(file, PG_WAL_SEGMENT_DEFAULT, &tli, &lsn) < 0)
                        return -ENOENT; /* backup history files and the like: never stored */
        }
        r = wal_store_open(c, false, &ws);
        if (r < 0)
                return r;
        /* The complete object first, then (segments only) the partial one. Either encrypted or not: the
         * recipients may have changed since it was written. */
        for (unsigned i = 0; i < (history ? 2u : 4u); i++) {
                _cleanup_free_ char *name = wal_object_name(&ws, file, i >= 2, i % 2 == 0);
                StoreEntry e = {};

                r = store_stat(ws.store, name, &e);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return err_set(r, err_exit_code(r), "cannot look up %s in %s: %s", name,
                                       ws.store->location, err_message() ?: strerror(-r));
                store_entry_done(&e);
                r = wal_fetch_object(c, &ws, name, path);
                if (r < 0)
                        return r;
                if (i >= 2)
                        log_info("Restored %s from its partial segment %s (the newest WAL there is).", file,
                                 name);
                else
                        log_debug("Restored %s from %s.", file, name);
                return 0;
        }
        return -ENOENT;
}

/* ---- retention ---- */

typedef struct WalPrune {
        const WalStore *ws;
        uint32_t tli;
        uint64_t start;
        bool dry_run;
        FILE *out;
        char **doomed;
} WalPrune;

static int wal_prune_one(const StoreEntry *e, void *userdata) {
        WalPrune *p = userdata;
        const char *rest = startswith(e->name, p->ws->prefix);
        char file[PG_WAL_FILE_NAME_LEN + 1];
        uint32_t tli;
        uint64_t lsn;

        /* TTTTTTTT/SEGMENT.zst..., nothing else (history files, foreign objects) is touched. */
        if (!rest || strlen(rest) < 9 + PG_WAL_FILE_NAME_LEN || rest[8] != '/')
                return 0;
        memcpy(file, rest + 9, PG_WAL_FILE_NAME_LEN);
        file[PG_WAL_FILE_NAME_LEN] = 0;
        if (!startswith(rest + 9 + PG_WAL_FILE_NAME_LEN, ".") ||
            pg_wal_file_parse(file, PG_WAL_SEGMENT_DEFAULT, &tli, &lsn) < 0 || strncmp(rest, file, 8) != 0)
                return 0;
        if (tli <= p->tli && lsn < p->start)
                strv_push(&p->doomed, xstrdup(e->name));
        return 0;
}

int wal_prune(const Config *c, Store *base_store, const Manifest *oldest, bool dry_run, FILE *out) {
        _cleanup_(wal_store_done) WalStore ws = {};
        _cleanup_strv_free_ char **doomed = NULL;
        json_object *v;
        int r, n = 0;

        /* Not the oldest stored one: with dry_run, the base backups that retention would delete are still
         * there, and the WAL they alone need goes with them. */
        if (!oldest)
                return 0;
        WalPrune p = { .dry_run = dry_run, .out = out };
        if (!oldest->extra || !json_object_object_get_ex(oldest->extra, "start_wal_file", &v) ||
            pg_wal_file_parse(json_object_get_string(v), PG_WAL_SEGMENT_DEFAULT, &p.tli, &p.start) < 0) {
                log_warning("Base backup %s names no start WAL file; no WAL is deleted.", oldest->id);
                return 0;
        }
        r = wal_store_open(c, !dry_run, &ws);
        if (r < 0)
                return r;
        p.ws = &ws;
        p.doomed = xcalloc(1, sizeof(char *));
        r = store_list(ws.store, ws.prefix, wal_prune_one, &p);
        doomed = p.doomed;
        if (r < 0)
                return r;
        STRV_FOREACH (name, doomed) {
                if (out)
                        fprintf(out, "%s %s  before base backup %s, the oldest kept\n",
                                dry_run ? "would delete" : "deleted", *name, oldest->id);
                if (!dry_run) {
                        r = store_remove(ws.store, *name);
                        if (r < 0)
                                return err_set(r, err_exit_code(r),
                                               "cannot delete WAL object %s from %s: %s", *name,
                                               ws.store->location, err_message() ?: strerror(-r));
                }
                n++;
        }
        if (n > 0 && !dry_run)
                log_info("Deleted %d WAL objects from before base backup %s, the oldest kept.", n,
                         oldest->id);
        return n;
}

/* ---- the chain ---- */

typedef struct WalSeen {
        uint32_t tli;
        uint64_t segno;
        bool complete;
} WalSeen;

typedef struct WalChain {
        const WalStore *ws;
        WalSeen *items;
        size_t n, cap;
} WalChain;

static int wal_chain_one(const StoreEntry *e, void *userdata) {
        WalChain *ch = userdata;
        const char *rest = startswith(e->name, ch->ws->prefix), *tail;
        char file[PG_WAL_FILE_NAME_LEN + 1];
        uint32_t tli;
        uint64_t lsn;

        if (!rest || strlen(rest) < 9 + PG_WAL_FILE_NAME_LEN || rest[8] != '/')
                return 0;
        memcpy(file, rest + 9, PG_WAL_FILE_NAME_LEN);
        file[PG_WAL_FILE_NAME_LEN] = 0;
        tail = rest + 9 + PG_WAL_FILE_NAME_LEN;
        if (pg_wal_file_parse(file, PG_WAL_SEGMENT_DEFAULT, &tli, &lsn) < 0 || strncmp(rest, file, 8) != 0 ||
            !(streq(tail, ".zst") || streq(tail, ".zst.age") || streq(tail, ".partial.zst") ||
              streq(tail, ".partial.zst.age")))
                return 0;
        if (ch->n == ch->cap) {
                ch->cap = ch->cap ? ch->cap * 2 : 256;
                ch->items = xrealloc(ch->items, ch->cap * sizeof *ch->items);
        }
        ch->items[ch->n++] = (WalSeen){ .tli = tli,
                                        .segno = lsn / PG_WAL_SEGMENT_DEFAULT,
                                        .complete = !startswith(tail, ".partial") };
        return 0;
}

static int wal_seen_cmp(const void *a, const void *b) {
        const WalSeen *x = a, *y = b;
        if (x->tli != y->tli)
                return x->tli < y->tli ? -1 : 1;
        if (x->segno != y->segno)
                return x->segno < y->segno ? -1 : 1;
        return (int) y->complete - (int) x->complete; /* complete first */
}

static char *wal_name_of(uint32_t tli, uint64_t segno) {
        char f[PG_WAL_FILE_NAME_LEN + 1];
        pg_wal_file_name(tli, segno * PG_WAL_SEGMENT_DEFAULT, PG_WAL_SEGMENT_DEFAULT, f);
        return xstrdup(f);
}

int wal_check_chain(const Config *c, const Manifest *m, char ***problems) {
        _cleanup_(wal_store_done) WalStore ws = {};
        int r;

        r = wal_store_open(c, false, &ws);
        if (r < 0)
                return r;
        return wal_check_chain_in(&ws, m, problems);
}

int wal_check_chain_in(const WalStore *wsp, const Manifest *m, char ***problems) {
        const WalStore ws = *wsp;
        _cleanup_free_ WalSeen *items = NULL;
        json_object *v;
        uint32_t tli, end_tli;
        uint64_t start, end;
        int r, n = 0;

        if (!m->extra || !json_object_object_get_ex(m->extra, "start_wal_file", &v) ||
            pg_wal_file_parse(json_object_get_string(v), PG_WAL_SEGMENT_DEFAULT, &tli, &start) < 0 ||
            !json_object_object_get_ex(m->extra, "end_wal_file", &v) ||
            pg_wal_file_parse(json_object_get_string(v), PG_WAL_SEGMENT_DEFAULT, &end_tli, &end) < 0) {
                strv_push(problems, xstrdup("its manifest names no start and end WAL file"));
                return 1;
        }
        start /= PG_WAL_SEGMENT_DEFAULT;
        end /= PG_WAL_SEGMENT_DEFAULT;
        WalChain ch = { .ws = &ws };
        r = store_list(ws.store, ws.prefix, wal_chain_one, &ch);
        items = ch.items;
        if (r < 0)
                return r;
        qsort(items, ch.n, sizeof *items, wal_seen_cmp);

        /* Per timeline from the base backup's on: the segments present must follow each other (on the
         * backup's timeline from its start segment), and those up to the backup's end must be there. */
        uint32_t cur_tli = 0;
        uint64_t next = 0;
        bool have_end = false;
        for (size_t i = 0; i < ch.n; i++) {
                const WalSeen *w = items + i;
                if (w->tli < tli || (w->tli == tli && w->segno < start))
                        continue;
                if (i > 0 && items[i - 1].tli == w->tli && items[i - 1].segno == w->segno)
                        continue; /* a partial beside its complete segment */
                if (w->tli != cur_tli) {
                        cur_tli = w->tli;
                        next = w->tli == tli ? start : w->segno;
                }
                if (w->segno != next) {
                        _cleanup_free_ char *a = wal_name_of(w->tli, next),
                                            *b = wal_name_of(w->tli, w->segno - 1);
                        strv_push(problems,
                                  xasprintf("WAL gap: %s%s%s missing from %s; recovery cannot go past it", a,
                                            w->segno - 1 > next ? " to " : "", w->segno - 1 > next ? b : "",
                                            ws.store->location));
                        n++;
                }
                if (w->tli == end_tli && w->segno >= end)
                        have_end = true;
                next = w->segno + 1;
        }
        if (!have_end) {
                _cleanup_free_ char *e = wal_name_of(end_tli, end);
                strv_push(problems,
                          xasprintf("WAL segment %s, which the base backup needs to become consistent, "
                                    "is not in %s (is skyforge-wal.service running?)",
                                    e, ws.store->location));
                n++;
        }
        return n;
}
