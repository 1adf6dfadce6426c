/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <libpq-fe.h>
#include <stdint.h>

#include "pg/wal-name.h"
#include "shared/util.h"

/* The physical replication protocol over libpq (replication=true): what the WAL streamer and the base
 * backup job speak. Nothing here blocks without a bound: every wait is a poll() on the connection's socket
 * with a timeout, and gives up on cancel_requested() (SIGTERM). */

#define PG_LSN_INVALID         UINT64_C(0)

/* "16/B374D848" <-> 0x16B374D848. */
int pg_lsn_parse(const char *s, uint64_t *ret);
char *pg_lsn_format(uint64_t lsn); /* to free */

/* "16MB" (SHOW wal_segment_size) -> bytes; a power of two between 1 MiB and 1 GiB. */
int pg_parse_segment_size(const char *s, uint64_t *ret);

/* Opens a physical replication connection (replication=true added to conninfo). Errors like
 * pg_preflight(): EX_UNAVAILABLE when unreachable, EX_NOPERM when the login or replication is refused. */
int pg_repl_connect(const char *conninfo, PGconn **ret);

typedef struct PgIdentity {
        char *system_id;
        uint32_t timeline;
        uint64_t xlogpos;
} PgIdentity;
void pg_identity_done(PgIdentity *i);
int pg_repl_identify(PGconn *c, PgIdentity *ret);
int pg_repl_segment_size(PGconn *c, uint64_t *ret);

/* Creates the physical slot (RESERVE_WAL) or reuses it when it exists; returns where it stands
 * (READ_REPLICATION_SLOT: restart_lsn and its timeline, 0 when unset). ret_created may be NULL. */
int pg_repl_slot_ensure(PGconn *c, const char *slot, bool *ret_created, uint64_t *ret_restart_lsn,
                        uint32_t *ret_tli);

/* TIMELINE_HISTORY: the content of the history file of timeline tli. */
int pg_repl_timeline_history(PGconn *c, uint32_t tli, char **ret_content, size_t *ret_size);

int pg_repl_start(PGconn *c, const char *slot, uint64_t lsn, uint32_t tli);

typedef enum PgReplKind {
        PG_REPL_NOTHING, /* nothing arrived yet: poll the socket */
        PG_REPL_DATA, /* XLogData */
        PG_REPL_KEEPALIVE, /* primary keepalive */
        PG_REPL_END, /* the server ended the stream (timeline switch or shutdown) */
} PgReplKind;

typedef struct PgReplMessage {
        PgReplKind kind;
        uint64_t start; /* DATA: LSN of data[0] */
        uint64_t wal_end; /* the server's end of WAL */
        bool reply_requested;
        const uint8_t *data;
        size_t size;
        char *buffer; /* PQfreemem() */
} PgReplMessage;
void pg_repl_message_done(PgReplMessage *m);

/* Reads one message without blocking (PG_REPL_NOTHING when none is complete); the caller polls
 * PQsocket() for input in between. */
int pg_repl_read(PGconn *c, PgReplMessage *ret);
/* Standby status update: write/flush/apply positions. */
int pg_repl_send_status(PGconn *c, uint64_t write_lsn, uint64_t flush_lsn, bool reply);
/* After PG_REPL_END: ends our side of the COPY and reads the server's next timeline, if it sent one
 * (*ret_next_tli 0: the server shut down or the stream ended without a switch). */
int pg_repl_end(PGconn *c, uint32_t *ret_next_tli, uint64_t *ret_next_lsn);

/* Waits until the connection's socket is readable, at most timeout_usec; extra_fd (-1: none) wakes the
 * wait too. Returns 1 when readable (either), 0 on timeout, -ECANCELED on a cancellation request. */
int pg_repl_wait(PGconn *c, int extra_fd, uint64_t timeout_usec);

/* BASE_BACKUP (PostgreSQL 15+ protocol: one COPY stream with 'n'ew archive, 'd'ata, 'm'anifest and
 * 'p'rogress messages). */
typedef struct PgBaseBackupStart {
        uint64_t start_lsn;
        uint32_t timeline;
        char **tablespaces; /* "OID\tLOCATION" for each tablespace other than the main one */
} PgBaseBackupStart;
void pg_base_backup_start_done(PgBaseBackupStart *s);
int pg_repl_base_backup_start(PGconn *c, const char *label, bool fast_checkpoint, PgBaseBackupStart *ret);

typedef enum PgBackupKind {
        PG_BACKUP_NOTHING,
        PG_BACKUP_ARCHIVE, /* name: a new archive starts ("base.tar", "16384.tar"), location: its path */
        PG_BACKUP_MANIFEST, /* the backup manifest starts */
        PG_BACKUP_DATA,
        PG_BACKUP_PROGRESS,
        PG_BACKUP_END,
} PgBackupKind;

typedef struct PgBackupMessage {
        PgBackupKind kind;
        const char *name;
        const char *location;
        const uint8_t *data;
        size_t size;
        char *buffer;
} PgBackupMessage;
void pg_backup_message_done(PgBackupMessage *m);
int pg_repl_base_backup_read(PGconn *c, PgBackupMessage *ret);
/* After PG_BACKUP_END: the end position. */
int pg_repl_base_backup_finish(PGconn *c, uint64_t *ret_end_lsn, uint32_t *ret_tli);
