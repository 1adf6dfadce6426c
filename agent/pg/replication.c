/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <endian.h>
#include <inttypes.h>
#include <poll.h>
#include <sysexits.h>
#include <time.h>

#include "log/log.h"
#include "pg/pg.h"
#include "pg/replication.h"

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define PG_EPOCH_OFFSET_USEC (UINT64_C(946684800) * USEC_PER_SEC)

int pg_lsn_parse(const char *s, uint64_t *ret) {
        unsigned long long hi, lo;
        int n = 0;

        if (isempty(s) || !isxdigit((unsigned char) s[0]))
                return -EINVAL;
        if (sscanf(s, "%llx/%llx%n", &hi, &lo, &n) != 2 || s[n] != 0 || hi > UINT32_MAX || lo > UINT32_MAX)
                return -EINVAL;
        for (const char *p = s; *p; p++)
                if (!isxdigit((unsigned char) *p) && *p != '/')
                        return -EINVAL;
        *ret = ((uint64_t) hi << 32) | (uint64_t) lo;
        return 0;
}

char *pg_lsn_format(uint64_t lsn) {
        return xasprintf("%X/%X", (unsigned) (lsn >> 32), (unsigned) (lsn & 0xFFFFFFFF));
}

int pg_parse_segment_size(const char *s, uint64_t *ret) {
        uint64_t v = 0, unit = 1;
        const char *p = s;

        if (isempty(s) || !isdigit((unsigned char) *s))
                return -EINVAL;
        for (; isdigit((unsigned char) *p); p++) {
                v = v * 10 + (uint64_t) (*p - '0');
                if (v > (UINT64_C(1) << 40))
                        return -EINVAL;
        }
        if (streq(p, "MB"))
                unit = 1024 * 1024;
        else if (streq(p, "GB"))
                unit = 1024 * 1024 * 1024;
        else if (streq(p, "kB"))
                unit = 1024;
        else if (*p)
                return -EINVAL;
        v *= unit;
        if (v < 1024 * 1024 || v > 1024 * 1024 * 1024 || (v & (v - 1)) != 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

static char *repl_target(PGconn *c) {
        const char *host = PQhost(c), *port = PQport(c), *user = PQuser(c);
        return xasprintf("host=%s port=%s user=%s", isempty(host) ? "(default socket)" : host,
                         strempty(port), strempty(user));
}

/* libpq's message on one line, for journal and state. */
static char *repl_error(PGconn *c) {
        char *s = xstrdup(strempty(PQerrorMessage(c))), *o = s;
        bool space = false;

        for (const char *p = s; *p; p++) {
                if (isspace((unsigned char) *p)) {
                        space = true;
                        continue;
                }
                if (space && o != s)
                        *o++ = ' ';
                space = false;
                *o++ = *p;
        }
        *o = 0;
        return s;
}

int pg_repl_connect(const char *conninfo, PGconn **ret) {
        _cleanup_(pqfinishp) PGconn *c = NULL;
        _cleanup_free_ char *target = NULL, *msg = NULL;
        /* Later keywords override earlier ones: the operator's conninfo wins over our defaults, but
         * replication=true comes last (a conninfo naming replication=database would be a logical one). */
        const char *keys[] = { "connect_timeout", "application_name", "dbname", "replication", NULL };
        const char *values[] = { "10", "skyforge-agent", isempty(conninfo) ? "dbname=postgres" : conninfo,
                                 "true", NULL };

        c = PQconnectdbParams(keys, values, 1);
        if (!c)
                return err_set(-ENOMEM, EX_OSERR, "cannot allocate a PostgreSQL connection");
        target = repl_target(c);
        if (PQstatus(c) != CONNECTION_OK) {
                msg = repl_error(c);
                if (strstr(msg, "no pg_hba.conf entry for replication"))
                        return err_set(
                                -EACCES, EX_NOPERM,
                                "PostgreSQL at %s refused a replication connection: %s (add a "
                                "\"host replication USER ADDRESS scram-sha-256\" line to pg_hba.conf and "
                                "reload the server)",
                                target, msg);
                if (strstr(msg, "must be superuser or replication role") || strstr(msg, "permission denied"))
                        return err_set(
                                -EACCES, EX_NOPERM,
                                "PostgreSQL at %s: %s (ALTER ROLE %s REPLICATION, or use a role that has "
                                "it in [postgres] conninfo)",
                                target, msg, strempty(PQuser(c)));
                if (strstr(msg, "authentication failed") || strstr(msg, "no password supplied") ||
                    strstr(msg, "no pg_hba.conf entry") ||
                    (strstr(msg, "role \"") && strstr(msg, "does not exist")))
                        return err_set(
                                -EACCES, EX_NOPERM,
                                "PostgreSQL at %s refused the login: %s (check the user and the passfile= "
                                "in [postgres] conninfo)",
                                target, msg);
                if (strstr(msg, "number of requested standby connections exceeds max_wal_senders") ||
                    strstr(msg, "max_wal_senders"))
                        return err_set(-EBUSY, EX_UNAVAILABLE,
                                       "PostgreSQL at %s: %s (raise max_wal_senders on the server)", target,
                                       msg);
                return err_set(-ECONNREFUSED, EX_UNAVAILABLE,
                               "cannot reach PostgreSQL at %s: %s (is the db pod running? is conninfo in "
                               "[postgres] right?)",
                               target, msg);
        }
        *ret = TAKE_PTR(c);
        return 0;
}

void pg_identity_done(PgIdentity *i) {
        free(i->system_id);
        *i = (PgIdentity){};
}

/* Runs a replication command that returns rows. */
static int repl_query(PGconn *c, const char *command, int min_columns, PGresult **ret) {
        _cleanup_(pqclearp) PGresult *res = PQexec(c, command);
        _cleanup_free_ char *target = repl_target(c), *msg = NULL;

        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                msg = repl_error(c);
                if (strstr(msg, "wal_level"))
                        return err_set(-EIO, EX_CONFIG,
                                       "PostgreSQL at %s: %s failed: %s (set wal_level = replica "
                                       "on the server and restart it)",
                                       target, command, msg);
                return err_set(-EIO, EX_UNAVAILABLE, "PostgreSQL at %s: %s failed: %s", target, command,
                               msg);
        }
        if (PQntuples(res) != 1 || PQnfields(res) < min_columns)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "PostgreSQL at %s answered %s with %d rows of %d columns", target, command,
                               PQntuples(res), PQnfields(res));
        *ret = TAKE_PTR(res);
        return 0;
}

static int parse_tli(const char *s, uint32_t *ret) {
        uint64_t v;

        if (parse_uint64(s, &v) < 0 || v == 0 || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

int pg_repl_identify(PGconn *c, PgIdentity *ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        PgIdentity id = {};
        int r;

        r = repl_query(c, "IDENTIFY_SYSTEM", 3, &res);
        if (r < 0)
                return r;
        if (parse_tli(PQgetvalue(res, 0, 1), &id.timeline) < 0 ||
            pg_lsn_parse(PQgetvalue(res, 0, 2), &id.xlogpos) < 0)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "IDENTIFY_SYSTEM returned a timeline \"%s\" and position "
                               "\"%s\" that do not parse",
                               PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
        id.system_id = xstrdup(PQgetvalue(res, 0, 0));
        *ret = id;
        return 0;
}

int pg_repl_segment_size(PGconn *c, uint64_t *ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        r = repl_query(c, "SHOW wal_segment_size", 1, &res);
        if (r < 0)
                return r;
        if (pg_parse_segment_size(PQgetvalue(res, 0, 0), ret) < 0)
                return err_set(-EBADMSG, EX_PROTOCOL, "the server's wal_segment_size \"%s\" does not parse",
                               PQgetvalue(res, 0, 0));
        return 0;
}

static bool slot_name_valid(const char *s) {
        if (isempty(s) || strlen(s) > 63)
                return false;
        for (; *s; s++)
                if (!(islower((unsigned char) *s) || isdigit((unsigned char) *s) || *s == '_'))
                        return false;
        return true;
}

int pg_repl_slot_ensure(PGconn *c, const char *slot, bool *ret_created, uint64_t *ret_restart_lsn,
                        uint32_t *ret_tli) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        _cleanup_free_ char *create = NULL, *read = NULL, *target = repl_target(c);
        uint64_t lsn = 0;
        uint32_t tli = 0;
        bool created = false;
        int r;

        if (!slot_name_valid(slot))
                return err_set(-EINVAL, EX_CONFIG,
                               "replication slot name \"%s\" is invalid (lower-case letters, "
                               "digits and _, at most 63; fix replication_slot in [postgres])",
                               slot);
        create = xasprintf("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", slot);
        res = PQexec(c, create);
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
                created = true;
        else {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (!streq_ptr(state, "42710")) { /* duplicate_object: reuse it */
                        _cleanup_free_ char *msg = repl_error(c);
                        return err_set(-EIO, EX_UNAVAILABLE,
                                       "PostgreSQL at %s: cannot create replication slot "
                                       "%s: %s (raise max_replication_slots, or check wal_level = replica)",
                                       target, slot, msg);
                }
        }
        PQclear(TAKE_PTR(res));

        read = xasprintf("READ_REPLICATION_SLOT %s", slot);
        r = repl_query(c, read, 3, &res);
        if (r < 0)
                return r;
        if (PQgetisnull(res, 0, 0))
                return err_set(-ENOENT, EX_UNAVAILABLE, "PostgreSQL at %s: replication slot %s vanished",
                               target, slot);
        if (!streq(PQgetvalue(res, 0, 0), "physical"))
                return err_set(-EINVAL, EX_CONFIG,
                               "PostgreSQL at %s: replication slot %s is a %s slot, not a "
                               "physical one (drop it or choose another replication_slot in [postgres])",
                               target, slot, PQgetvalue(res, 0, 0));
        if (!PQgetisnull(res, 0, 1) && pg_lsn_parse(PQgetvalue(res, 0, 1), &lsn) < 0)
                return err_set(-EBADMSG, EX_PROTOCOL, "slot %s: restart_lsn \"%s\" does not parse", slot,
                               PQgetvalue(res, 0, 1));
        if (!PQgetisnull(res, 0, 2) && parse_tli(PQgetvalue(res, 0, 2), &tli) < 0)
                return err_set(-EBADMSG, EX_PROTOCOL, "slot %s: timeline \"%s\" does not parse", slot,
                               PQgetvalue(res, 0, 2));
        if (ret_created)
                *ret_created = created;
        *ret_restart_lsn = lsn;
        *ret_tli = tli;
        return 0;
}

int pg_repl_timeline_history(PGconn *c, uint32_t tli, char **ret_content, size_t *ret_size) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        _cleanup_free_ char *cmd = xasprintf("TIMELINE_HISTORY %" PRIu32, tli);
        int r;

        r = repl_query(c, cmd, 2, &res);
        if (r < 0)
                return r;
        size_t n = (size_t) PQgetlength(res, 0, 1);
        char *content = xmalloc(n + 1);
        memcpy(content, PQgetvalue(res, 0, 1), n);
        content[n] = 0;
        *ret_content = content;
        *ret_size = n;
        return 0;
}

int pg_repl_start(PGconn *c, const char *slot, uint64_t lsn, uint32_t tli) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        _cleanup_free_ char *pos = pg_lsn_format(lsn), *target = repl_target(c), *cmd = NULL;

        cmd = xasprintf("START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %" PRIu32, slot, pos, tli);
        res = PQexec(c, cmd);
        if (PQresultStatus(res) != PGRES_COPY_BOTH) {
                _cleanup_free_ char *msg = repl_error(c);
                return err_set(-EIO, EX_UNAVAILABLE, "PostgreSQL at %s: %s failed: %s", target, cmd, msg);
        }
        return 0;
}

void pg_repl_message_done(PgReplMessage *m) {
        if (m->buffer)
                PQfreemem(m->buffer);
        *m = (PgReplMessage){};
}

static uint64_t get_u64(const uint8_t *p) {
        uint64_t v;
        memcpy(&v, p, 8);
        return be64toh(v);
}

static void put_u64(uint8_t *p, uint64_t v) {
        v = htobe64(v);
        memcpy(p, &v, 8);
}

/* One CopyData message without blocking: its length (*ret_buf: libpq's, PQfreemem() it), 0 when none is
 * there yet, -1 at the end of the COPY, or an error naming what (the replication stream, BASE_BACKUP). */
static int copy_data_read(PGconn *c, const char *what, char **ret_buf) {
        _cleanup_free_ char *target = NULL, *msg = NULL;
        int n;

        /* What libpq holds first: PQconsumeInput() moves its whole buffer each time, so calling it for every
         * message costs quadratic time when many are queued. */
        n = PQgetCopyData(c, ret_buf, 1);
        if (n == 0) {
                if (PQconsumeInput(c) == 0) {
                        msg = repl_error(c);
                        target = repl_target(c);
                        return err_set(-ECONNRESET, EX_UNAVAILABLE, "lost the connection to %s during %s: %s",
                                       target, what, msg);
                }
                n = PQgetCopyData(c, ret_buf, 1);
        }
        if (n < -1) {
                msg = repl_error(c);
                target = repl_target(c);
                return err_set(-ECONNRESET, EX_UNAVAILABLE, "%s from %s failed: %s", what, target, msg);
        }
        return n;
}

int pg_repl_read(PGconn *c, PgReplMessage *ret) {
        _cleanup_free_ char *target = NULL;
        char *buf = NULL;
        int n;

        n = copy_data_read(c, "the replication stream", &buf);
        if (n < -1)
                return n;
        if (n == 0) {
                *ret = (PgReplMessage){ .kind = PG_REPL_NOTHING };
                return 0;
        }
        if (n == -1) {
                *ret = (PgReplMessage){ .kind = PG_REPL_END };
                return 0;
        }
        PgReplMessage m = { .buffer = buf };
        const uint8_t *p = (const uint8_t *) buf;
        if (p[0] == 'w' && n >= 25) {
                m.kind = PG_REPL_DATA;
                m.start = get_u64(p + 1);
                m.wal_end = get_u64(p + 9);
                m.data = p + 25;
                m.size = (size_t) n - 25;
        } else if (p[0] == 'k' && n >= 18) {
                m.kind = PG_REPL_KEEPALIVE;
                m.wal_end = get_u64(p + 1);
                m.reply_requested = p[17] != 0;
        } else {
                unsigned char type = p[0];
                PQfreemem(buf);
                target = repl_target(c);
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "replication stream from %s sent an unknown message "
                               "(type 0x%02x, %d bytes)",
                               target, type, n);
        }
        *ret = m;
        return 0;
}

int pg_repl_send_status(PGconn *c, uint64_t write_lsn, uint64_t flush_lsn, bool reply) {
        uint8_t msg[34];
        uint64_t now = now_usec(CLOCK_REALTIME);

        msg[0] = 'r';
        put_u64(msg + 1, write_lsn);
        put_u64(msg + 9, flush_lsn);
        put_u64(msg + 17, PG_LSN_INVALID); /* apply: we replay nothing */
        put_u64(msg + 25, now > PG_EPOCH_OFFSET_USEC ? now - PG_EPOCH_OFFSET_USEC : 0);
        msg[33] = reply;
        if (PQputCopyData(c, (const char *) msg, sizeof msg) <= 0 || PQflush(c) < 0) {
                _cleanup_free_ char *msg_text = repl_error(c), *target = repl_target(c);
                return err_set(-ECONNRESET, EX_UNAVAILABLE, "cannot send feedback to %s: %s", target,
                               msg_text);
        }
        return 0;
}

int pg_repl_end(PGconn *c, uint32_t *ret_next_tli, uint64_t *ret_next_lsn) {
        _cleanup_free_ char *target = repl_target(c);
        uint32_t tli = 0;
        uint64_t lsn = 0;

        (void) PQputCopyEnd(c, NULL);
        (void) PQflush(c);
        /* The server's end of COPY is followed by a result set naming the next timeline (when it switched),
         * then the command completion. Bounded: a well-behaved server sends at most these two. */
        for (unsigned i = 0; i < 8; i++) {
                _cleanup_(pqclearp) PGresult *res = PQgetResult(c);
                if (!res)
                        break;
                ExecStatusType st = PQresultStatus(res);
                if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) >= 2) {
                        if (parse_tli(PQgetvalue(res, 0, 0), &tli) < 0 ||
                            pg_lsn_parse(PQgetvalue(res, 0, 1), &lsn) < 0)
                                return err_set(-EBADMSG, EX_PROTOCOL,
                                               "%s ended the stream with a next "
                                               "timeline \"%s\" at \"%s\" that does not parse",
                                               target, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
                } else if (st == PGRES_FATAL_ERROR) {
                        _cleanup_free_ char *msg = repl_error(c);
                        return err_set(-EIO, EX_UNAVAILABLE,
                                       "replication stream from %s ended with an error: %s", target, msg);
                }
        }
        *ret_next_tli = tli;
        *ret_next_lsn = lsn;
        return 0;
}

int pg_repl_wait(PGconn *c, int extra_fd, uint64_t timeout_usec) {
        struct pollfd p[2] = { { .fd = PQsocket(c), .events = POLLIN },
                               { .fd = extra_fd, .events = POLLIN } };
        int n;

        if (cancel_requested())
                return -ECANCELED;
        if (p[0].fd < 0)
                return -ENOTCONN;
        n = poll(p, extra_fd >= 0 ? 2 : 1, (int) ((timeout_usec + 999) / 1000));
        if (n < 0)
                return errno == EINTR ? (cancel_requested() ? -ECANCELED : 0) : -errno;
        return n > 0;
}

void pg_base_backup_start_done(PgBaseBackupStart *s) {
        strv_free(s->tablespaces);
        *s = (PgBaseBackupStart){};
}

int pg_repl_base_backup_start(PGconn *c, const char *label, bool fast_checkpoint, PgBaseBackupStart *ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        _cleanup_free_ char *target = repl_target(c), *cmd = NULL;
        _cleanup_(pg_base_backup_start_done) PgBaseBackupStart s = {};

        if (PQserverVersion(c) < 150000)
                return err_set(
                        -EOPNOTSUPP, EX_UNAVAILABLE,
                        "PostgreSQL at %s is version %d; base backups need "
                        "PostgreSQL 15 or later (the nightly logical dump still covers older servers)",
                        target, PQserverVersion(c) / 10000);
        for (const char *p = label; *p; p++)
                if (*p == '\'' || *p == '\\' || (unsigned char) *p < 0x20)
                        return err_set(-EINVAL, EX_SOFTWARE, "internal error: bad backup label");
        cmd = xasprintf(
                "BASE_BACKUP (LABEL '%s', CHECKPOINT '%s', MANIFEST 'yes', WAIT false, PROGRESS false)",
                label, fast_checkpoint ? "fast" : "spread");
        if (!PQsendQuery(c, cmd)) {
                _cleanup_free_ char *msg = repl_error(c);
                return err_set(-EIO, EX_UNAVAILABLE, "PostgreSQL at %s: cannot send BASE_BACKUP: %s", target,
                               msg);
        }
        /* First the start position, then the tablespaces; then the COPY of the archives. */
        for (unsigned step = 0; step < 2; step++) {
                res = PQgetResult(c);
                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        _cleanup_free_ char *msg = repl_error(c);
                        return err_set(-EIO, EX_UNAVAILABLE, "PostgreSQL at %s: BASE_BACKUP failed: %s",
                                       target, msg);
                }
                if (step == 0) {
                        if (PQntuples(res) != 1 || PQnfields(res) < 2 ||
                            pg_lsn_parse(PQgetvalue(res, 0, 0), &s.start_lsn) < 0 ||
                            parse_tli(PQgetvalue(res, 0, 1), &s.timeline) < 0)
                                return err_set(-EBADMSG, EX_PROTOCOL,
                                               "PostgreSQL at %s: BASE_BACKUP's start "
                                               "position does not parse",
                                               target);
                } else {
                        s.tablespaces = xcalloc(1, sizeof(char *));
                        for (int i = 0; i < PQntuples(res) && PQnfields(res) >= 2; i++)
                                if (!PQgetisnull(res, i, 0))
                                        strv_push(&s.tablespaces, xasprintf("%s\t%s", PQgetvalue(res, i, 0),
                                                                            PQgetvalue(res, i, 1)));
                }
                PQclear(TAKE_PTR(res));
        }
        res = PQgetResult(c);
        if (PQresultStatus(res) != PGRES_COPY_OUT) {
                _cleanup_free_ char *msg = repl_error(c);
                return err_set(-EIO, EX_UNAVAILABLE,
                               "PostgreSQL at %s: BASE_BACKUP did not start its archive "
                               "stream: %s",
                               target, msg);
        }
        *ret = s;
        s = (PgBaseBackupStart){};
        return 0;
}

void pg_backup_message_done(PgBackupMessage *m) {
        if (m->buffer)
                PQfreemem(m->buffer);
        *m = (PgBackupMessage){};
}

int pg_repl_base_backup_read(PGconn *c, PgBackupMessage *ret) {
        _cleanup_free_ char *target = NULL;
        char *buf = NULL;
        int n;

        n = copy_data_read(c, "BASE_BACKUP", &buf);
        if (n < -1)
                return n;
        if (n == 0) {
                *ret = (PgBackupMessage){ .kind = PG_BACKUP_NOTHING };
                return 0;
        }
        if (n == -1) {
                *ret = (PgBackupMessage){ .kind = PG_BACKUP_END };
                return 0;
        }
        PgBackupMessage m = { .buffer = buf };
        const char *end = buf + n;
        switch (buf[0]) {
        case 'n': {
                /* Two NUL-terminated strings: the archive name and the tablespace location. */
                const char *name = buf + 1, *z1 = memchr(name, 0, (size_t) (end - name)), *loc, *z2;
                if (!z1)
                        break;
                loc = z1 + 1;
                z2 = loc < end ? memchr(loc, 0, (size_t) (end - loc)) : NULL;
                if (!z2)
                        break;
                m.kind = PG_BACKUP_ARCHIVE;
                m.name = name;
                m.location = loc;
                *ret = m;
                return 0;
        }
        case 'm':
                m.kind = PG_BACKUP_MANIFEST;
                *ret = m;
                return 0;
        case 'd':
                m.kind = PG_BACKUP_DATA;
                m.data = (const uint8_t *) buf + 1;
                m.size = (size_t) n - 1;
                *ret = m;
                return 0;
        case 'p':
                m.kind = PG_BACKUP_PROGRESS;
                *ret = m;
                return 0;
        }
        unsigned char type = (unsigned char) buf[0];
        PQfreemem(buf);
        target = repl_target(c);
        return err_set(-EBADMSG, EX_PROTOCOL,
                       "BASE_BACKUP from %s sent an unknown or truncated message (type "
                       "0x%02x, %d bytes)",
                       target, type, n);
}

int pg_repl_base_backup_finish(PGconn *c, uint64_t *ret_end_lsn, uint32_t *ret_tli) {
        _cleanup_free_ char *target = repl_target(c);
        uint64_t lsn = 0;
        uint32_t tli = 0;
        bool got = false;

        for (unsigned i = 0; i < 8; i++) {
                _cleanup_(pqclearp) PGresult *res = PQgetResult(c);
                if (!res)
                        break;
                ExecStatusType st = PQresultStatus(res);
                if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) >= 2) {
                        if (pg_lsn_parse(PQgetvalue(res, 0, 0), &lsn) < 0 ||
                            parse_tli(PQgetvalue(res, 0, 1), &tli) < 0)
                                return err_set(-EBADMSG, EX_PROTOCOL,
                                               "PostgreSQL at %s: BASE_BACKUP's end "
                                               "position does not parse",
                                               target);
                        got = true;
                } else if (st == PGRES_FATAL_ERROR) {
                        _cleanup_free_ char *msg = repl_error(c);
                        return err_set(-EIO, EX_UNAVAILABLE, "PostgreSQL at %s: BASE_BACKUP failed: %s",
                                       target, msg);
                }
        }
        if (!got)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "PostgreSQL at %s ended BASE_BACKUP without its end "
                               "position",
                               target);
        *ret_end_lsn = lsn;
        *ret_tli = tli;
        return 0;
}
