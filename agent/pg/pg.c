/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <glob.h>
#include <libpq-fe.h>
#include <sysexits.h>

#include "log/log.h"
#include "pg/pg.h"
#include "sys/process.h"

void pg_server_info_done(PgServerInfo *i) {
        free(i->version);
        free(i->target);
        free(i->user);
        strv_free(i->databases);
        free(i->database_sizes);
        *i = (PgServerInfo){};
}

void pg_client_done(PgClient *c) {
        free(c->path);
        free(c->version_line);
        *c = (PgClient){};
}

static char *describe_target(PGconn *c) {
        const char *host = PQhost(c), *port = PQport(c), *user = PQuser(c);
        return xasprintf("host=%s port=%s user=%s", isempty(host) ? "(default socket)" : host, strempty(port),
                         strempty(user));
}

char *pg_message_one_line(const char *msg) {
        char *s = xstrdup(strempty(msg)), *o = s;
        bool space = false, newline = false;

        for (const char *p = s; *p; p++) {
                if (isspace((unsigned char) *p)) {
                        space = true;
                        newline = newline || *p == '\n';
                        continue;
                }
                if (space && o != s) {
                        /* A new line of libpq's is a new sentence ("...: Connection refused\n\tIs the
                         * server running...?"): end the one before it. */
                        if (newline && !strchr(".:;!?,", o[-1]))
                                *o++ = '.';
                        *o++ = ' ';
                }
                space = newline = false;
                *o++ = *p;
        }
        *o = 0;
        return s;
}

int pg_preflight(const char *conninfo, PgServerInfo *ret) {
        _cleanup_(pqfinishp) PGconn *c = NULL;
        _cleanup_(pqclearp) PGresult *res = NULL;
        _cleanup_free_ char *target = NULL, *msg = NULL;
        /* Later keywords override earlier ones, so the operator's conninfo wins over our defaults. */
        const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
        const char *values[] = { "10", "skyforge-agent", isempty(conninfo) ? "dbname=postgres" : conninfo, NULL };
        PgServerInfo info = {};

        c = PQconnectdbParams(keys, values, 1);
        if (!c)
                return err_set(-ENOMEM, EX_OSERR, "cannot allocate a PostgreSQL connection");
        target = describe_target(c);
        if (PQstatus(c) != CONNECTION_OK) {
                msg = pg_message_one_line(PQerrorMessage(c));
                if (strstr(msg, "password authentication failed") || strstr(msg, "no password supplied") ||
                    strstr(msg, "authentication failed") || strstr(msg, "no pg_hba.conf entry") ||
                    (strstr(msg, "role \"") && strstr(msg, "does not exist")))
                        return err_set(-EACCES, EX_NOPERM,
                                       "PostgreSQL at %s refused the login: %s (check the user and the passfile= "
                                       "in [postgres] conninfo)", target, msg);
                if (strstr(msg, "database \"") && strstr(msg, "does not exist"))
                        return err_set(-ENOENT, EX_CONFIG, "PostgreSQL at %s: %s (fix dbname in [postgres] conninfo)",
                                       target, msg);
                return err_set(-ECONNREFUSED, EX_UNAVAILABLE,
                               "cannot reach PostgreSQL at %s: %s (is the db pod running? is conninfo in [postgres] "
                               "right?)", target, msg);
        }

        info.target = TAKE_PTR(target);
        info.user = xstrdup(strempty(PQuser(c)));
        info.version_num = PQserverVersion(c);
        info.version = xstrdup(strempty(PQparameterStatus(c, "server_version")));
        res = PQexec(c, "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datallowconn ORDER BY datname");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                msg = pg_message_one_line(PQerrorMessage(c));
                int r = err_set(-EIO, EX_UNAVAILABLE, "PostgreSQL at %s: cannot list databases: %s", info.target, msg);
                pg_server_info_done(&info);
                return r;
        }
        info.databases = xcalloc(1, sizeof(char *));
        info.database_sizes = xcalloc((size_t) PQntuples(res) + 1, sizeof(uint64_t));
        for (int i = 0; i < PQntuples(res); i++) {
                uint64_t size = 0;
                strv_push(&info.databases, xstrdup(PQgetvalue(res, i, 0)));
                if (parse_uint64(PQgetvalue(res, i, 1), &size) >= 0)
                        info.size_estimate += size;
                info.database_sizes[i] = size;
        }
        *ret = info;
        return 0;
}

int pg_parse_client_major(const char *line) {
        const char *p = strstr(strempty(line), "(PostgreSQL) ");
        if (!p)
                return -1;
        p += strlen("(PostgreSQL) ");
        if (!isdigit((unsigned char) *p))
                return -1;
        return atoi(p);
}

static int probe_client(const char *path, PgClient *ret) {
        char *argv[] = { (char *) path, (char *) "--version", NULL };
        _cleanup_free_ char *line = NULL;
        int r, major;

        if (access(path, X_OK) < 0)
                return -errno;
        r = run_capture_line(argv, &line);
        if (r < 0)
                return r;
        major = pg_parse_client_major(line);
        if (major < 0)
                return -EINVAL;
        *ret = (PgClient){ .path = xstrdup(path), .major = major, .version_line = TAKE_PTR(line) };
        return 0;
}

int pg_find_client(const char *program, const char *bindir, int server_major, PgClient *ret) {
        PgClient best = {}, c;
        int newest_too_old = -1;
        glob_t g = {};

        if (bindir) {
                _cleanup_free_ char *p = path_join(bindir, program);
                if (probe_client(p, &c) < 0)
                        return err_set(-ENOENT, EX_CONFIG, "no usable %s in pg_bindir %s", program, bindir);
                if (c.major < server_major) {
                        int r = err_set(-EPROTO, EX_UNAVAILABLE,
                                        "%s in %s is version %d, older than the server (%d): install "
                                        "postgresql-client-%d or point pg_bindir at a newer client",
                                        program, bindir, c.major, server_major, server_major);
                        pg_client_done(&c);
                        return r;
                }
                *ret = c;
                return 0;
        }

        _cleanup_free_ char *pattern = xasprintf("/usr/lib/postgresql/*/bin/%s", program);
        if (glob(pattern, 0, NULL, &g) == 0)
                for (size_t i = 0; i < g.gl_pathc; i++) {
                        if (probe_client(g.gl_pathv[i], &c) < 0)
                                continue;
                        /* Prefer the exact major; otherwise the newest newer one. */
                        bool better = c.major >= server_major &&
                                      (!best.path || (best.major != server_major &&
                                                      (c.major == server_major || c.major > best.major)));
                        if (c.major < server_major && c.major > newest_too_old)
                                newest_too_old = c.major;
                        if (better) {
                                pg_client_done(&best);
                                best = c;
                        } else
                                pg_client_done(&c);
                }
        globfree(&g);
        if (!best.path) {
                _cleanup_free_ char *p = path_find_executable(program);
                if (p && probe_client(p, &c) >= 0) {
                        if (c.major >= server_major)
                                best = c;
                        else {
                                if (c.major > newest_too_old)
                                        newest_too_old = c.major;
                                pg_client_done(&c);
                        }
                }
        }
        if (!best.path) {
                if (newest_too_old >= 0)
                        return err_set(-EPROTO, EX_UNAVAILABLE,
                                       "%s is version %d, older than the PostgreSQL server (%d): install "
                                       "postgresql-client-%d", program, newest_too_old, server_major, server_major);
                return err_set(-ENOENT, EX_UNAVAILABLE,
                               "no %s found in /usr/lib/postgresql/*/bin or PATH: install postgresql-client-%d",
                               program, server_major);
        }
        *ret = best;
        return 0;
}

int pg_conninfo_set(const char *conninfo, const char *key, const char *value, char **ret) {
        char *err = NULL;
        PQconninfoOption *opts = PQconninfoParse(strempty(conninfo), &err);
        _cleanup_free_ char *out = xstrdup("");
        bool found = false;

        if (!opts) {
                /* Not the conninfo itself in the message: it may hold a password. */
                int r = err_set(-EINVAL, EX_USAGE, "invalid conninfo: %s",
                                err ? strstrip(err) : "parse error");
                PQfreemem(err);
                return r;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                const char *v = o->val;
                if (streq(o->keyword, key)) {
                        v = value;
                        found = true;
                }
                _cleanup_free_ char *quoted = NULL, *next = NULL;
                size_t n = 0;

                if (!v)
                        continue;
                /* Single-quote values, escaping backslashes and quotes, as libpq expects. */
                quoted = xmalloc(strlen(v) * 2 + 3);
                quoted[n++] = '\'';
                for (const char *p = v; *p; p++) {
                        if (*p == '\'' || *p == '\\')
                                quoted[n++] = '\\';
                        quoted[n++] = *p;
                }
                quoted[n++] = '\'';
                quoted[n] = 0;
                next = xasprintf("%s%s%s=%s", out, *out ? " " : "", o->keyword, quoted);
                free(out);
                out = TAKE_PTR(next);
        }
        PQconninfoFree(opts);
        if (!found) {
                char *next = xasprintf("%s%s%s='%s'", out, *out ? " " : "", key, value);
                free(out);
                out = next;
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* A conninfo value quoted for libpq: in single quotes, with backslashes and quotes escaped. */
static char *conninfo_quote(const char *v) {
        char *q = xmalloc(strlen(v) * 2 + 3);
        size_t n = 0;

        q[n++] = '\'';
        for (const char *p = v; *p; p++) {
                if (*p == '\'' || *p == '\\')
                        q[n++] = '\\';
                q[n++] = *p;
        }
        q[n++] = '\'';
        q[n] = 0;
        return q;
}

static bool option_is_secret(const PQconninfoOption *o) {
        return o->dispchar && strchr(o->dispchar, '*');
}

int pg_conninfo_for_client(const char *conninfo, const char *dbname, char ***ret_env, char ***ret_args) {
        _cleanup_strv_free_ char **env = xcalloc(1, sizeof(char *)), **args = xcalloc(1, sizeof(char *));
        _cleanup_free_ char *rest = xstrdup("");
        char *err = NULL;
        PQconninfoOption *opts = PQconninfoParse(strempty(conninfo), &err);
        int r = 0;

        if (!opts) {
                /* Not the conninfo itself in the message: it may hold a password. */
                r = err_set(-EINVAL, EX_USAGE, "invalid conninfo: %s", err ? strstrip(err) : "parse error");
                PQfreemem(err);
                return r;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                const char *v = streq(o->keyword, "dbname") && dbname ? dbname : o->val;

                if (!v)
                        continue;
                if (option_is_secret(o)) {
                        if (!o->envvar) {
                                r = err_set(
                                        -EPERM, EX_USAGE,
                                        "conninfo sets %s, which PostgreSQL's client programs could only "
                                        "get on their command line, readable by every local user: drop it "
                                        "(for sslpassword: keep the client key unencrypted, chmod 600)",
                                        o->keyword);
                                break;
                        }
                        strv_push(&env, xasprintf("%s=%s", o->envvar, v));
                        continue;
                }
                _cleanup_free_ char *q = conninfo_quote(v);
                char *next = xasprintf("%s%s%s=%s", rest, *rest ? " " : "", o->keyword, q);
                free(rest);
                rest = next;
        }
        PQconninfoFree(opts);
        if (r < 0)
                return r;
        if (*rest) {
                strv_push(&args, xstrdup("-d"));
                strv_push(&args, TAKE_PTR(rest));
        }
        *ret_env = TAKE_PTR(env);
        *ret_args = TAKE_PTR(args);
        return 0;
}

bool pg_conninfo_hide_password(char *conninfo) {
        PQconninfoOption *opts = PQconninfoParse(strempty(conninfo), NULL);
        _cleanup_free_ char *shown = xstrdup("");
        bool found = false;
        size_t n;

        if (!opts)
                return false;
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val)
                        continue;
                if (option_is_secret(o)) {
                        found = true;
                        continue;
                }
                _cleanup_free_ char *q = conninfo_quote(o->val);
                char *next = xasprintf("%s%s%s=%s", shown, *shown ? " " : "", o->keyword, q);
                free(shown);
                shown = next;
        }
        PQconninfoFree(opts);
        if (!found)
                return false;
        /* The same bytes in place (argv cannot grow): what fits of the conninfo without its secrets, then
         * NULs, which ps shows as spaces. */
        n = strlen(conninfo);
        memset(conninfo, 0, n);
        memcpy(conninfo, shown, MIN(n, strlen(shown)));
        return true;
}
