/* SPDX-License-Identifier: GPL-2.0-or-later */
/* per_database = yes: pg_dumpall --globals-only plus one pg_dump -Fc per database, and the restore of one
 * database with pg_restore. */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "jobs/postgres-db.h"
#include "log/log.h"
#include "pipe/child.h"
#include "store/objects.h"
#include "sys/process.h"

#define DB_BUFFER_SIZE (256 * 1024)
#define GLOBALS_MAX (64 * 1024 * 1024)

char *postgres_db_object_encode(const char *name) {
        static const char hex[] = "0123456789ABCDEF";
        char *out = xmalloc(strlen(name) * 3 + 1), *o = out;

        /* Everything but [A-Za-z0-9_-] is encoded: no '/', no leading '.', no bytes a store may mangle. */
        for (const unsigned char *p = (const unsigned char *) name; *p; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    *p == '_' || *p == '-')
                        *o++ = (char) *p;
                else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        *o = 0;
        return out;
}

int postgres_sink_chain(const PostgresConfig *pc, StoreWriter *w, Digest *stored, Sink **ret) {
        Sink *chain = sink_digest_new(sink_store_new(w), stored), *next;
        int threads = zstd_threads(pc->compression_threads);
        int r;

        /* Fail closed: with recipients set, the age stage is set up before anything is stored, and a dump
         * that cannot be encrypted is never written in plaintext. */
        if (!strv_isempty(pc->recipients)) {
                next = sink_age_new(chain, pc->recipients, &r);
                if (!next) {
                        {
                                ERR_KEEP_SCOPE();
                                sink_free(chain);
                        }
                        return err_set(r, err_exit_code(r),
                                       "cannot encrypt the dump to the recipients in [postgres]: %s; "
                                       "nothing was stored", err_message() ?: strerror(-r));
                }
                chain = next;
        }
        next = sink_zstd_new(chain, pc->compression_level, threads, &r);
        if (!next) {
                sink_free(chain);
                return r;
        }
        *ret = next;
        return 0;
}

int postgres_source_chain(const PostgresConfig *pc, const Manifest *m, StoreReader *rd, Digest *stored,
                          Source **ret) {
        Source *src = source_digest_new(source_store_new(rd), stored);
        int r;

        if (m->encrypted) {
                r = job_source_decrypt(src, m, pc->identity_file, "postgres", &src);
                if (r < 0)
                        return r;
        }
        *ret = source_zstd_new(src);
        return 0;
}

int postgres_client_argv(const char *program, char *const options[], const char *conninfo,
                         const char *dbname, char ***ret_argv, char ***ret_env) {
        _cleanup_strv_free_ char **argv = xcalloc(1, sizeof(char *)), **env = NULL, **args = NULL;
        int r;

        r = pg_conninfo_for_client(conninfo, dbname, &env, &args);
        if (r < 0)
                return r;
        strv_push(&argv, xstrdup(program));
        STRV_FOREACH(o, (char **) options)
                strv_push(&argv, xstrdup(*o));
        STRV_FOREACH(a, args)
                strv_push(&argv, xstrdup(*a));
        *ret_argv = TAKE_PTR(argv);
        *ret_env = TAKE_PTR(env);
        return 0;
}

int postgres_dump_to_object(JobContext *ctx, char *const argv[], char *const env[], const char *name,
                            Manifest *m, uint64_t *ret_raw) {
        const PostgresConfig *pc = &ctx->config->postgres;
        _cleanup_(store_writer_freep) StoreWriter *w = NULL;
        _cleanup_(sink_freep) Sink *chain = NULL;
        _cleanup_(child_donep) Child child = {};
        _cleanup_free_ uint8_t *buf = NULL;
        Digest stored = {};
        uint64_t raw = 0;
        int r = 0, status;

        r = store_writer_open(ctx->store, name, &w);
        if (r < 0)
                return r;
        r = postgres_sink_chain(pc, w, &stored, &chain);
        if (r < 0)
                return r;
        /* Our application_name unless the conninfo names one (a later assignment wins). */
        _cleanup_strv_free_ char **child_env = xcalloc(1, sizeof(char *));
        strv_push(&child_env, xstrdup("PGAPPNAME=skyforge-agent"));
        STRV_FOREACH(e, (char **) env)
                strv_push(&child_env, xstrdup(*e));
        r = child_spawn(argv, child_env, CHILD_PIPE_STDOUT, &child);
        if (r < 0)
                return r;
        buf = xmalloc(DB_BUFFER_SIZE);
        for (;;) {
                ssize_t k = child_read_stdout(&child, buf, DB_BUFFER_SIZE);
                if (k == -ECANCELED) {
                        child_kill(&child);
                        r = err_set(-ECANCELED, EX_TEMPFAIL,
                                    "job postgres was cancelled; no backup was written");
                        break;
                }
                if (k < 0) {
                        r = err_setf((int) k, "cannot read the output of %s: %m", child.name);
                        break;
                }
                if (k == 0)
                        break;
                r = sink_write(chain, buf, (size_t) k);
                if (r < 0) {
                        child_kill(&child);
                        r = err_setf(r, "cannot store %s in %s: %s", name, ctx->store->location,
                                     err_message() ?: strerror(-r));
                        break;
                }
                raw += (uint64_t) k;
                progress_update(&ctx->progress, ctx->progress.done + (uint64_t) k);
        }
        status = child_wait(&child);
        if (r < 0)
                return r;
        if (status != 0) {
                _cleanup_free_ char *tail = child_stderr_summary(&child);
                if (status > 128)
                        return err_set(-EIO, EX_SOFTWARE, "%s was killed by signal %d: %s; no backup was written",
                                       child.name, status - 128, tail);
                return err_set(-EIO, EX_UNAVAILABLE, "%s failed with exit status %d: %s; no backup was written",
                               child.name, status, tail);
        }
        r = sink_finish(chain);
        if (r < 0)
                return err_setf(r, "cannot store %s in %s: %s", name, ctx->store->location,
                                err_message() ?: strerror(-r));
        r = store_writer_commit(w);
        if (r < 0)
                return r;
        manifest_add_object(m, name, stored.bytes, stored.sha256_hex);
        m->raw_bytes += raw;
        if (ret_raw)
                *ret_raw = raw;
        return 0;
}

int postgres_dump_databases(JobContext *ctx, const PgServerInfo *info, Manifest *m) {
        const PostgresConfig *pc = &ctx->config->postgres;
        _cleanup_(pg_client_done) PgClient dumpall = {}, dump = {};
        /* Encrypted objects end in .age, like the cluster dump. */
        const char *age = strv_isempty(pc->recipients) ? "" : ".age";
        _cleanup_free_ char *globals = xasprintf("%s/globals.sql.zst%s", ctx->id, age);
        json_object *pd, *dbs;
        uint64_t raw;
        int r;

        r = pg_find_client("pg_dumpall", pc->pg_bindir, info->version_num / 10000, &dumpall);
        if (r >= 0)
                r = pg_find_client("pg_dump", pc->pg_bindir, info->version_num / 10000, &dump);
        if (r < 0)
                return r;

        _cleanup_strv_free_ char **gargv = NULL, **genv = NULL;
        r = postgres_client_argv(dumpall.path,
                                 (char *[]){ (char *) "--globals-only", (char *) "--no-password", NULL },
                                 pc->conninfo, NULL, &gargv, &genv);
        if (r < 0)
                return r;
        r = postgres_dump_to_object(ctx, gargv, genv, globals, m, &raw);
        if (r < 0)
                return r;

        pd = json_object_new_object();
        json_object_object_add(pd, "globals", json_object_new_string(globals));
        json_object_object_add(pd, "format", json_object_new_string("custom"));
        json_object_object_add(pd, "tool_version", json_object_new_string(dump.version_line));
        dbs = json_object_new_array();
        json_object_object_add(pd, "databases", dbs);
        if (!m->extra)
                m->extra = json_object_new_object();
        json_object_object_add(m->extra, "per_database", pd);

        progress_init(&ctx->progress, "dumping databases", info->size_estimate, ctx->config->agent.state_dir,
                      ctx->state);
        STRV_FOREACH(d, info->databases) {
                _cleanup_free_ char *enc = NULL, *name = NULL;
                _cleanup_strv_free_ char **argv = NULL, **env = NULL;

                /* template1 holds nothing of the applications; the cluster dump has it anyway. */
                if (streq(*d, "template1"))
                        continue;
                enc = postgres_db_object_encode(*d);
                name = xasprintf("%s/db/%s.dump%s", ctx->id, enc, age);
                /* -Z0: zstd compresses better and faster than pg_dump's zlib, and once is enough. */
                r = postgres_client_argv(
                        dump.path,
                        (char *[]){ (char *) "-Fc", (char *) "-Z0", (char *) "--no-password", NULL },
                        pc->conninfo, *d, &argv, &env);
                if (r < 0)
                        break;
                log_info("Dumping database \"%s\" with %s.", *d, dump.path);
                r = postgres_dump_to_object(ctx, argv, env, name, m, &raw);
                if (r < 0)
                        break;
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(*d));
                json_object_object_add(o, "object", json_object_new_string(name));
                json_object_object_add(o, "raw_bytes", json_object_new_uint64(raw));
                json_object_array_add(dbs, o);
        }
        progress_done(&ctx->progress);
        return r < 0 ? r : 0;
}

typedef struct TargetInfo {
        char **roles;
        bool database_exists;
        int free_connections;
} TargetInfo;

static void target_info_done(TargetInfo *t) {
        strv_free(t->roles);
}

static int target_inspect(const char *conninfo, const char *database, TargetInfo *ret) {
        _cleanup_(pqfinishp) PGconn *conn = NULL;
        _cleanup_(pqclearp) PGresult *roles = NULL, *db = NULL, *conns = NULL;
        const char *keys[] = { "application_name", "dbname", NULL };
        const char *values[] = { "skyforge-agent", conninfo, NULL };
        TargetInfo t = { .roles = xcalloc(1, sizeof(char *)) };

        conn = PQconnectdbParams(keys, values, 1);
        roles = PQexec(conn, "SELECT rolname FROM pg_roles");
        db = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, &database, NULL,
                          NULL, 0);
        conns = PQexec(conn, "SELECT current_setting('max_connections')::int - "
                             "current_setting('superuser_reserved_connections')::int - "
                             "(SELECT count(*) FROM pg_stat_activity)::int");
        if (PQresultStatus(roles) != PGRES_TUPLES_OK || PQresultStatus(db) != PGRES_TUPLES_OK ||
            PQresultStatus(conns) != PGRES_TUPLES_OK) {
                strv_free(t.roles);
                return err_set(-EIO, EX_UNAVAILABLE, "cannot inspect the target server: %s",
                               PQerrorMessage(conn));
        }
        for (int i = 0; i < PQntuples(roles); i++)
                strv_push(&t.roles, xstrdup(PQgetvalue(roles, i, 0)));
        t.database_exists = PQntuples(db) > 0;
        t.free_connections = atoi(PQgetvalue(conns, 0, 0));
        *ret = t;
        return 0;
}

/* An SQL identifier as pg_dumpall writes it: bare, or double-quoted with "" for a quote. */
static char *parse_ident(const char *p) {
        char *out = xmalloc(strlen(p) + 1), *o = out;

        if (*p != '"') {
                while (*p && *p != ' ' && *p != ';' && *p != ',')
                        *o++ = *p++;
        } else
                for (p++; *p; p++) {
                        if (*p == '"' && p[1] == '"')
                                p++;
                        else if (*p == '"')
                                break;
                        *o++ = *p;
                }
        *o = 0;
        return out;
}

char *postgres_globals_for_missing_roles(char *sql, char *const *existing, unsigned *ret_n) {
        _cleanup_free_ char *out = xstrdup("");
        unsigned n = 0;
        char *save = NULL;

        for (char *line = strtok_r(sql, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                const char *role = NULL, *p;
                _cleanup_free_ char *ident = NULL;

                if ((p = startswith(line, "CREATE ROLE ")) || (p = startswith(line, "ALTER ROLE ")))
                        role = p;
                else if (startswith(line, "GRANT ") && (p = strstr(line, " TO ")))
                        role = p + 4;
                if (!role)
                        continue;
                ident = parse_ident(role);
                if (strv_contains(existing, ident))
                        continue;
                if (startswith(line, "CREATE ROLE "))
                        n++;
                char *next = xasprintf("%s%s\n", out, line);
                free(out);
                out = next;
        }
        *ret_n = n;
        return TAKE_PTR(out);
}

static int read_object(const Config *c, Store *s, const Manifest *m, const char *name, size_t max,
                       char **ret) {
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_free_ char *buf = xmalloc(max + 1);
        StoreReader *rd = NULL;
        Digest d = {};
        size_t n = 0;
        ssize_t k;
        int r;

        r = store_reader_open(s, name, 0, &rd);
        if (r < 0)
                return r;
        r = postgres_source_chain(&c->postgres, m, rd, &d, &src);
        if (r < 0)
                return r;
        while ((k = source_read(src, buf + n, max - n)) > 0)
                n += (size_t) k;
        if (k < 0)
                return err_set((int) k, EX_DATAERR, "cannot read %s/%s: %s", s->location, name,
                               err_message() ?: strerror((int) -k));
        if (n >= max)
                return err_set(-EFBIG, EX_DATAERR, "%s/%s is larger than expected", s->location, name);
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int run_psql_script(const PgClient *psql, const char *conninfo, const char *sql) {
        _cleanup_(child_donep) Child child = {};
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;
        int r, status;

        r = postgres_client_argv(psql->path,
                                 (char *[]){ (char *) "-X", (char *) "-q", (char *) "--no-password",
                                             (char *) "-v", (char *) "ON_ERROR_STOP=1", NULL },
                                 conninfo, "postgres", &argv, &env);
        if (r < 0)
                return r;
        r = child_spawn(argv, env, CHILD_PIPE_STDIN, &child);
        if (r < 0)
                return r;
        r = child_write_stdin(&child, sql, strlen(sql));
        status = child_wait(&child);
        if (r < 0 || status != 0) {
                _cleanup_free_ char *tail = child_stderr_summary(&child);
                return err_set(r < 0 ? r : -EIO, EX_SOFTWARE, "psql failed creating the roles: %s", tail);
        }
        return 0;
}

static void unlink_freep(char **p) {
        if (*p) {
                (void) unlink(*p);
                free(*p);
        }
}

static int find_database(const Manifest *m, const char *database, const char **ret_object,
                         const char **ret_globals) {
        json_object *pd, *dbs, *g, *v;

        if (!m->extra || !json_object_object_get_ex(m->extra, "per_database", &pd) ||
            !json_object_object_get_ex(pd, "databases", &dbs) ||
            !json_object_object_get_ex(pd, "globals", &g))
                return err_set(-ENOENT, EX_NOINPUT,
                               "backup %s has no per-database dumps (set per_database = yes "
                               "in [postgres] for future backups; restore the whole cluster with `restore "
                               "postgres` instead)",
                               m->id);
        for (size_t i = 0; i < json_object_array_length(dbs); i++) {
                json_object *e = json_object_array_get_idx(dbs, i), *name;
                if (json_object_object_get_ex(e, "name", &name) &&
                    streq(json_object_get_string(name), database) &&
                    json_object_object_get_ex(e, "object", &v)) {
                        *ret_object = json_object_get_string(v);
                        *ret_globals = json_object_get_string(g);
                        return 0;
                }
        }
        return err_set(-ENOENT, EX_NOINPUT,
                       "backup %s has no dump of database \"%s\" (`skyforge-agent list "
                       "--json` shows details.per_database)",
                       m->id, database);
}

int postgres_restore_database(const Config *c, Store *s, const Manifest *m, const char *database,
                              const char *conninfo, unsigned jobs) {
        _cleanup_(pg_server_info_done) PgServerInfo info = {};
        _cleanup_(pg_client_done) PgClient restore = {}, psql = {};
        _cleanup_(target_info_done) TargetInfo t = {};
        _cleanup_(child_donep) Child child = {};
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_(unlink_freep) char *tmp = NULL;
        _cleanup_free_ char *target = NULL, *globals_sql = NULL, *roles_sql = NULL, *jobs_s = NULL;
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;
        _cleanup_strv_free_ char **problems = xcalloc(1, sizeof(char *));
        const char *object = NULL, *globals = NULL;
        StoreReader *rd = NULL;
        Digest d = {};
        unsigned n_roles;
        bool stopped_reading = false;
        int r, status;

        r = find_database(m, database, &object, &globals);
        if (r < 0)
                return r;
        /* Check what we use before anything reaches the server. */
        r = backup_check_objects(s, m, (char *[]){ (char *) object, (char *) globals, NULL }, NULL,
                                 &problems);
        if (r < 0)
                return r;
        if (r > 0)
                return err_set(-EBADMSG, EX_DATAERR,
                               "backup %s is damaged: %s; pick another backup from "
                               "`skyforge-agent list`",
                               m->id, problems[0]);

        r = pg_preflight(conninfo, &info);
        if (r < 0)
                return r;
        r = pg_find_client("pg_restore", c->postgres.pg_bindir, info.version_num / 10000, &restore);
        if (r >= 0)
                r = pg_find_client("psql", c->postgres.pg_bindir, info.version_num / 10000, &psql);
        if (r >= 0)
                r = pg_conninfo_set(conninfo, "dbname", "postgres", &target);
        if (r >= 0)
                r = target_inspect(target, database, &t);
        if (r < 0)
                return r;
        if (t.database_exists)
                return err_set(-EEXIST, EX_CANTCREAT,
                               "database \"%s\" exists at %s; restore never overwrites: drop "
                               "or rename it first, or restore into another server",
                               database, info.target);

        r = read_object(c, s, m, globals, GLOBALS_MAX, &globals_sql);
        if (r < 0)
                return r;
        roles_sql = postgres_globals_for_missing_roles(globals_sql, t.roles, &n_roles);
        if (n_roles > 0) {
                log_info("Creating %u role(s) missing at %s from the globals of backup %s.", n_roles,
                         info.target, m->id);
                r = run_psql_script(&psql, conninfo, roles_sql);
                if (r < 0)
                        return r;
        }

        /* Parallel jobs need connections to spare, and a file pg_restore can seek in. */
        if (jobs > 1 && t.free_connections - 1 < (int) jobs)
                jobs = t.free_connections > 2 ? (unsigned) t.free_connections - 1 : 1;
        r = store_reader_open(s, object, 0, &rd);
        if (r < 0)
                return r;
        r = postgres_source_chain(&c->postgres, m, rd, &d, &src);
        if (r < 0)
                return r;
        log_info("Restoring database \"%s\" of backup %s into %s with %s (%u job(s)).", database, m->id,
                 info.target, restore.path, jobs);
        jobs_s = xasprintf("%u", jobs);
        /* --create: connects to the postgres database, creates the one in the dump and switches to it. */
        r = postgres_client_argv(restore.path,
                                 (char *[]){ (char *) "--no-password", (char *) "--create",
                                             (char *) "--exit-on-error", NULL },
                                 conninfo, "postgres", &argv, &env);
        if (r < 0)
                return r;
        if (jobs > 1) {
                _cleanup_close_ int fd = -EBADF;
                _cleanup_(sink_freep) Sink *to_file = NULL;

                r = mkdir_p(c->agent.work_dir, 0700);
                if (r < 0)
                        return err_set(r, EX_CANTCREAT, "cannot create work_dir %s: %s", c->agent.work_dir,
                                       strerror(-r));
                tmp = xasprintf("%s/restore-db-XXXXXX", c->agent.work_dir);
                fd = mkostemp(tmp, O_CLOEXEC);
                if (fd < 0) {
                        free(TAKE_PTR(tmp));
                        return err_set(-errno, EX_CANTCREAT, "cannot create a file in work_dir %s: %m",
                                       c->agent.work_dir);
                }
                to_file = sink_fd_new(fd);
                r = pipe_pump(src, to_file);
                if (r < 0)
                        return err_set(r, EX_IOERR, "cannot unpack the dump of \"%s\" into %s: %s", database,
                                       tmp, err_message() ?: strerror(-r));
                strv_push(&argv, xstrdup("-j"));
                strv_push(&argv, xstrdup(jobs_s));
                strv_push(&argv, xstrdup(tmp));
                r = child_spawn(argv, env, 0, &child);
        } else {
                /* no -j: streams from stdin */
                r = child_spawn(argv, env, CHILD_PIPE_STDIN, &child);
                if (r >= 0) {
                        _cleanup_(sink_freep) Sink *to_child = sink_child_new(&child);
                        r = pipe_pump(src, to_child);
                        /* pg_restore stopped reading (--exit-on-error): its status and stderr below say
                         * why. The bare -EPIPE carries no detail of its own. */
                        if (r == -EPIPE)
                                stopped_reading = true, r = 0;
                        if (r < 0)
                                child_kill(&child);
                }
        }
        if (r < 0 && !child.pid)
                return r;
        status = child_wait(&child);
        if (stopped_reading && status == 0)
                return err_set(-EPIPE, EX_SOFTWARE,
                               "pg_restore stopped reading the dump of \"%s\" of backup %s before its end, "
                               "yet reported success",
                               database, m->id);
        if (r < 0)
                return err_set(r, EX_DATAERR, "cannot restore database \"%s\" of backup %s: %s", database,
                               m->id, err_message() ?: strerror(-r));
        for (size_t i = 0; i < m->n_objects && status == 0; i++)
                if (streq(m->objects[i].name, object) && !streq(d.sha256_hex, m->objects[i].sha256))
                        return err_set(-EBADMSG, EX_DATAERR,
                                       "backup %s changed while it was restored (SHA-256 "
                                       "mismatch of %s)",
                                       m->id, object);
        if (status != 0) {
                _cleanup_free_ char *tail = child_stderr_summary(&child);
                return err_set(-EIO, EX_SOFTWARE,
                               "pg_restore failed (status %d) restoring database \"%s\" of "
                               "backup %s into %s: %s",
                               status, database, m->id, info.target, tail);
        }
        log_info("Restored database \"%s\" of backup %s into %s.", database, m->id, info.target);
        return 0;
}
