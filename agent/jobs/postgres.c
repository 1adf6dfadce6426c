/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <sysexits.h>

#include "jobs/context.h"
#include "jobs/postgres-db.h"
#include "jobs/postgres.h"
#include "log/log.h"
#include "pg/pg.h"
#include "pipe/child.h"
#include "pipe/pipe.h"
#include "store/objects.h"
#include "sys/process.h"


static int postgres_backup(JobContext *ctx, Manifest *m) {
        const PostgresConfig *pc = &ctx->config->postgres;
        _cleanup_(pg_server_info_done) PgServerInfo info = {};
        _cleanup_(pg_client_done) PgClient dumpall = {};
        _cleanup_free_ char *name = NULL;
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;
        bool encrypted;
        int r;

        r = config_check_passfile(pc->conninfo);
        if (r < 0)
                return r;
        r = pg_preflight(pc->conninfo, &info);
        if (r < 0)
                return r;
        r = pg_find_client("pg_dumpall", pc->pg_bindir, info.version_num / 10000, &dumpall);
        if (r < 0)
                return r;
        log_info("Dumping PostgreSQL %s at %s (%zu databases) with %s.", info.version, info.target,
                 strv_length(info.databases), dumpall.path);

        encrypted = !strv_isempty(pc->recipients);
        name = xasprintf("%s.sql.zst%s", ctx->id, encrypted ? ".age" : "");
        r = postgres_client_argv(dumpall.path, (char *[]){ (char *) "--no-password", NULL }, pc->conninfo,
                                 NULL, &argv, &env);
        if (r < 0)
                return r;
        progress_init(&ctx->progress, "dumping", info.size_estimate, ctx->config->agent.state_dir, ctx->state);
        r = postgres_dump_to_object(ctx, argv, env, name, m, NULL);
        progress_done(&ctx->progress);
        if (r < 0)
                return r;

        m->compression = xstrdup("zstd");
        m->compression_level = pc->compression_level;
        m->encrypted = encrypted;
        m->recipients = strv_copy(pc->recipients);
        m->tool = xstrdup("pg_dumpall");
        m->tool_version = xstrdup(dumpall.version_line);
        m->server_version = xstrdup(info.version);
        json_object *details = json_object_new_object(), *dbs = json_object_new_array();
        STRV_FOREACH(d, info.databases)
                json_object_array_add(dbs, json_object_new_string(*d));
        json_object_object_add(details, "databases", dbs);
        json_object_object_add(details, "server_version_num", json_object_new_int(info.version_num));
        json_object_object_add(details, "size_estimate", json_object_new_uint64(info.size_estimate));
        m->extra = details;
        if (pc->per_database)
                return postgres_dump_databases(ctx, &info, m);
        return 0;
}

const JobDefinition job_postgres = {
        .cluster_wide = true,
        .name = "postgres",
        .has_retention = true,
        /* <id>.sql.zst[.age] (pg_dumpall), <id>/... (per_database) */
        .object_suffixes = (const char *const[]){ ".sql.zst", ".sql.zst.age", "/", NULL },
        .backup = postgres_backup,
};

/* pg_dumpall output always creates the role it connects as; in a fresh cluster that role exists already.
 * That one error is expected and harmless; every other error counts. */
static int restore_filter_stderr(Child *c, const char *line, void *userdata) {
        const char *user = userdata;
        _cleanup_free_ char *expected = xasprintf("ERROR:  role \"%s\" already exists", user);

        if (strstr(line, expected)) {
                log_debug("psql: %s (expected)", line);
                return 0;
        }
        return 1;
}

/* The dump of backup m as plaintext SQL: store -> checksum -> decrypt (if encrypted) -> decompress. An
 * encrypted dump's header is checked here, before anything reaches a server. */
static int dump_source_open(const Config *c, Store *s, const Manifest *m, const ManifestObject *o, Digest *d,
                            Source **ret) {
        _cleanup_(source_freep) Source *src = NULL;
        StoreReader *rd = NULL;
        int r;

        r = store_reader_open(s, o->name, 0, &rd);
        if (r < 0)
                return r;
        src = source_digest_new(source_store_new(rd), d);
        if (m->encrypted || endswith(o->name, ".age")) {
                r = job_source_decrypt(TAKE_PTR(src), m, c->postgres.identity_file, "postgres", &src);
                if (r < 0)
                        return r;
        }
        *ret = source_zstd_new(TAKE_PTR(src));
        return 0;
}

char *postgres_conninfo_from_argv(char *arg) {
        char *copy = xstrdup(arg);

        if (pg_conninfo_hide_password(arg))
                log_debug("Hid the password of the conninfo on our command line; a passfile= keeps it off "
                          "the command line altogether.");
        return copy;
}

int postgres_restore(const Config *c, Store *s, const Manifest *m, const char *conninfo) {
        _cleanup_(pg_server_info_done) PgServerInfo info = {};
        _cleanup_(pg_client_done) PgClient psql = {};
        _cleanup_(child_donep) Child child = {};
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_(sink_freep) Sink *to_psql = NULL;
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;
        const ManifestObject *o = NULL;
        Digest d = {};
        int r, status;

        /* The cluster dump comes first; per-database objects (<id>/...) follow it. */
        for (size_t i = 0; i < m->n_objects && !o; i++)
                if (endswith(m->objects[i].name, ".sql.zst") || endswith(m->objects[i].name, ".sql.zst.age"))
                        o = m->objects + i;
        if (!o)
                return err_set(-ENOENT, EX_DATAERR, "backup %s has no cluster dump (.sql.zst) to restore", m->id);

        /* Check everything before the first statement reaches the server: a damaged dump is refused
         * whole instead of half-applied, and so is one we hold no key for. */
        r = backup_verify_objects(s, m, true);
        if (r < 0)
                return r;
        r = dump_source_open(c, s, m, o, &d, &src);
        if (r < 0)
                return r;

        r = pg_preflight(conninfo, &info);
        if (r < 0)
                return r;
        r = pg_find_client("psql", c->postgres.pg_bindir, info.version_num / 10000, &psql);
        if (r < 0)
                return r;
        r = postgres_client_argv(psql.path,
                                 (char *[]){ (char *) "-X", (char *) "-q", (char *) "--no-password",
                                             (char *) "-v", (char *) "ON_ERROR_STOP=0", NULL },
                                 conninfo, "postgres", &argv, &env);
        if (r < 0)
                return r;
        log_info("Restoring backup %s (%s) into PostgreSQL %s at %s.", m->id, o->name, info.version, info.target);

        r = child_spawn(argv, env, CHILD_PIPE_STDIN, &child);
        if (r < 0)
                return r;
        child.on_stderr_line = restore_filter_stderr;
        child.userdata = info.user;

        to_psql = sink_child_new(&child);
        r = pipe_pump(src, to_psql);
        if (r < 0) {
                child_kill(&child);
                (void) child_wait(&child);
                if (r == -EPIPE) {
                        _cleanup_free_ char *tail = child_stderr_summary(&child);
                        return err_set(r, EX_SOFTWARE, "psql stopped reading the dump: %s", tail);
                }
                return err_set(r, EX_DATAERR, "cannot restore backup %s: %s", m->id, err_message() ?: strerror(-r));
        }
        status = child_wait(&child);
        if (!streq(d.sha256_hex, o->sha256))
                return err_set(-EBADMSG, EX_DATAERR, "backup %s changed while it was restored (SHA-256 mismatch)",
                               m->id);
        if (status != 0 || child.error_lines > 0) {
                _cleanup_free_ char *tail = child_stderr_summary(&child);
                return err_set(-EIO, EX_SOFTWARE, "psql reported %u error(s) restoring backup %s into %s: %s",
                               child.error_lines, m->id, info.target, tail);
        }
        char size[FORMAT_BYTES_MAX];
        log_info("Restored backup %s: %s of SQL replayed.", m->id, format_bytes(m->raw_bytes, size, sizeof size));
        return 0;
}
