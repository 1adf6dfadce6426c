/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sysexits.h>

#include "jobs/basebackup.h"
#include "jobs/context.h"
#include "jobs/postgres-db.h"
#include "jobs/wal.h"
#include "log/log.h"
#include "pg/pg.h"
#include "pg/replication.h"
#include "pipe/pipe.h"

/* A physical base backup: BASE_BACKUP over a replication connection, each tablespace's tar and the backup
 * manifest stored as "<id>.base/NAME.zst[.age]" through the same chain as the dumps. Restorable with the
 * WAL that wal-stream stores (jobs/wal.c) from its start position on. */

bool basebackup_archive_name_valid(const char *name) {
        size_t n = strlen(name);

        /* The server names them "base.tar" and "OID.tar"; anything else is refused, never used as a path. */
        if (n < 5 || n > 64 || !endswith(name, ".tar"))
                return false;
        if (streq(name, "base.tar"))
                return true;
        for (size_t i = 0; i < n - 4; i++)
                if (!isdigit((unsigned char) name[i]))
                        return false;
        return true;
}

typedef struct BaseObject {
        StoreWriter *writer;
        Sink *chain;
        Digest stored;
        uint64_t raw;
        char *name;
} BaseObject;

static void base_object_done(BaseObject *o) {
        sink_free(o->chain);
        store_writer_free(o->writer);
        free(o->name);
        *o = (BaseObject){};
}

static int base_object_open(JobContext *ctx, const char *member, BaseObject *o) {
        const PostgresConfig *pc = &ctx->config->postgres;
        int r;

        o->name = xasprintf("%s.base/%s.zst%s", ctx->id, member, strv_isempty(pc->recipients) ? "" : ".age");
        r = store_writer_open(ctx->store, o->name, &o->writer);
        if (r < 0)
                return r;
        return postgres_sink_chain(pc, o->writer, &o->stored, &o->chain);
}

static int base_object_close(JobContext *ctx, BaseObject *o, Manifest *m) {
        int r;

        if (!o->name)
                return 0;
        r = sink_finish(o->chain);
        if (r < 0)
                return err_setf(r, "cannot store %s in %s: %s", o->name, ctx->store->location,
                                err_message() ?: strerror(-r));
        r = store_writer_commit(o->writer);
        if (r < 0)
                return r;
        manifest_add_object(m, o->name, o->stored.bytes, o->stored.sha256_hex);
        m->raw_bytes += o->raw;
        base_object_done(o);
        return 0;
}

static int basebackup_backup(JobContext *ctx, Manifest *m) {
        const PostgresConfig *pc = &ctx->config->postgres;
        _cleanup_(pqfinishp) PGconn *conn = NULL;
        _cleanup_(pg_identity_done) PgIdentity ident = {};
        _cleanup_(pg_base_backup_start_done) PgBaseBackupStart start = {};
        _cleanup_(base_object_done) BaseObject cur = {};
        _cleanup_free_ char *label = NULL, *start_text = NULL, *end_text = NULL;
        char start_file[PG_WAL_FILE_NAME_LEN + 1], end_file[PG_WAL_FILE_NAME_LEN + 1];
        uint64_t segment_size, end_lsn, raw_total = 0;
        uint32_t end_tli;
        json_object *details, *tbs;
        int r;

        r = config_check_passfile(pc->conninfo);
        if (r < 0)
                return r;
        r = pg_repl_connect(pc->conninfo, &conn);
        if (r < 0)
                return r;
        r = pg_repl_identify(conn, &ident);
        if (r < 0)
                return r;
        r = pg_repl_segment_size(conn, &segment_size);
        if (r < 0)
                return r;
        label = xasprintf("skyforge-agent %s", ctx->id);
        r = pg_repl_base_backup_start(conn, label, true, &start);
        if (r < 0)
                return r;
        start_text = pg_lsn_format(start.start_lsn);
        log_info("Base backup %s of PostgreSQL %s started at %s on timeline %" PRIu32 ".", ctx->id,
                 strempty(PQparameterStatus(conn, "server_version")), start_text, start.timeline);
        progress_init(&ctx->progress, "base backup", 0, ctx->config->agent.state_dir, ctx->state);

        for (;;) {
                _cleanup_(pg_backup_message_done) PgBackupMessage msg = {};

                r = pg_repl_base_backup_read(conn, &msg);
                if (r < 0)
                        break;
                if (msg.kind == PG_BACKUP_NOTHING) {
                        /* Bounded: a server that sends nothing for 10 minutes is stuck (a checkpoint
                         * is done before the first message, so give it time). */
                        r = pg_repl_wait(conn, -1, 600 * USEC_PER_SEC);
                        if (r == -ECANCELED) {
                                r = err_set(r, EX_TEMPFAIL,
                                            "job basebackup was cancelled; no backup was written");
                                break;
                        }
                        if (r == 0) {
                                r = err_set(-ETIMEDOUT, EX_UNAVAILABLE,
                                            "BASE_BACKUP sent nothing for 10 minutes; "
                                            "no backup was written (is the server overloaded?)");
                                break;
                        }
                        if (r < 0)
                                break;
                        continue;
                }
                if (msg.kind == PG_BACKUP_END)
                        break;
                if (msg.kind == PG_BACKUP_PROGRESS)
                        continue;
                if (msg.kind == PG_BACKUP_ARCHIVE || msg.kind == PG_BACKUP_MANIFEST) {
                        r = base_object_close(ctx, &cur, m);
                        if (r < 0)
                                break;
                        if (msg.kind == PG_BACKUP_ARCHIVE && !basebackup_archive_name_valid(msg.name)) {
                                r = err_set(-EBADMSG, EX_PROTOCOL,
                                            "BASE_BACKUP sent an archive named \"%.64s\"; "
                                            "expected base.tar or OID.tar",
                                            msg.name);
                                break;
                        }
                        r = base_object_open(
                                ctx, msg.kind == PG_BACKUP_ARCHIVE ? msg.name : "backup_manifest", &cur);
                        if (r < 0)
                                break;
                        continue;
                }
                /* PG_BACKUP_DATA */
                if (!cur.name) {
                        r = err_set(-EBADMSG, EX_PROTOCOL,
                                    "BASE_BACKUP sent data before naming its archive");
                        break;
                }
                r = sink_write(cur.chain, msg.data, msg.size);
                if (r < 0) {
                        r = err_setf(r, "cannot store %s in %s: %s", cur.name, ctx->store->location,
                                     err_message() ?: strerror(-r));
                        break;
                }
                cur.raw += msg.size;
                raw_total += msg.size;
                progress_update(&ctx->progress, raw_total);
        }
        progress_done(&ctx->progress);
        if (r < 0)
                return r;
        r = base_object_close(ctx, &cur, m);
        if (r < 0)
                return r;
        r = pg_repl_base_backup_finish(conn, &end_lsn, &end_tli);
        if (r < 0)
                return r;
        bool have_base = false, have_manifest = false;
        for (size_t i = 0; i < m->n_objects; i++) {
                have_base = have_base || strstr(m->objects[i].name, ".base/base.tar.zst");
                have_manifest = have_manifest || strstr(m->objects[i].name, ".base/backup_manifest.zst");
        }
        if (!have_base || !have_manifest)
                return err_set(-EBADMSG, EX_PROTOCOL, "BASE_BACKUP ended without %s; no backup was written",
                               have_base ? "a backup manifest" : "the main data directory archive");

        end_text = pg_lsn_format(end_lsn);
        pg_wal_file_name(start.timeline, start.start_lsn, segment_size, start_file);
        pg_wal_file_name(end_tli, end_lsn, segment_size, end_file);
        log_info("Base backup %s ended at %s; restoring it needs WAL %s to %s (wal-stream stores it).",
                 ctx->id, end_text, start_file, end_file);

        m->compression = xstrdup("zstd");
        m->compression_level = pc->compression_level;
        m->encrypted = !strv_isempty(pc->recipients);
        m->recipients = strv_copy(pc->recipients);
        m->tool = xstrdup("BASE_BACKUP");
        m->tool_version = xstrdup("replication protocol");
        m->server_version = xstrdup(strempty(PQparameterStatus(conn, "server_version")));
        details = json_object_new_object();
        json_object_object_add(details, "system_identifier", json_object_new_string(ident.system_id));
        json_object_object_add(details, "server_version_num", json_object_new_int(PQserverVersion(conn)));
        json_object_object_add(details, "start_lsn", json_object_new_string(start_text));
        json_object_object_add(details, "end_lsn", json_object_new_string(end_text));
        json_object_object_add(details, "timeline", json_object_new_int64(start.timeline));
        json_object_object_add(details, "end_timeline", json_object_new_int64(end_tli));
        json_object_object_add(details, "wal_segment_size", json_object_new_uint64(segment_size));
        json_object_object_add(details, "start_wal_file", json_object_new_string(start_file));
        json_object_object_add(details, "end_wal_file", json_object_new_string(end_file));
        tbs = json_object_new_array();
        STRV_FOREACH (t, start.tablespaces)
                json_object_array_add(tbs, json_object_new_string(*t));
        json_object_object_add(details, "tablespaces", tbs);
        m->extra = details;
        return 0;
}

const JobDefinition job_basebackup = {
        .name = "basebackup",
        .has_retention = true,
        /* <id>.base/base.tar.zst[.age], <id>.base/OID.tar.zst[.age], <id>.base/backup_manifest.zst[.age] */
        .object_suffixes = (const char *const[]){ ".base/", NULL },
        .backup = basebackup_backup,
        .prune_more = wal_prune,
        .verify_more = wal_check_chain,
};
