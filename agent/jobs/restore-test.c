/* SPDX-License-Identifier: GPL-2.0-or-later */
/* verify --restore-test: a throwaway PostgreSQL cluster in work_dir, the newest dump restored into it,
 * every database of the manifest checked and counted, the cluster removed again. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <json-c/json.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/context.h"
#include "jobs/postgres.h"
#include "jobs/restore-test.h"
#include "log/log.h"
#include "pg/pg.h"

#define SCRATCH_PREFIX "restore-test-"
#define SCRATCH_START_TIMEOUT_USEC (120 * USEC_PER_SEC)

typedef struct ScratchCluster {
        char *dir;        /* work_dir/restore-test-XXXXXX: socket, log; owned by us */
        char *data;       /* dir/data: owned by the server's user */
        char *bindir;
        bool switch_user; /* running as root: the server runs as `postgres` */
        uid_t uid;
        gid_t gid;
        int log_fd;
        int port;
        pid_t postmaster;
        char *conninfo;
} ScratchCluster;

static int rm_rf_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (flag == FTW_DP ? rmdir(path) : unlink(path))
                return errno == ENOENT ? 0 : -1;
        return 0;
}

static int rm_rf(const char *path) {
        if (nftw(path, rm_rf_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* Runs argv (or, with argv NULL, removes path) as the cluster's user in a child process. The child gets
 * SIGQUIT (PostgreSQL's immediate shutdown) should we die without cleaning up: no server outlives us. */
static int scratch_spawn(ScratchCluster *sc, char *const argv[], const char *remove_path, pid_t *ret_pid) {
        pid_t parent = getpid(), pid;

        pid = fork();
        if (pid < 0)
                return err_setf(-errno, "cannot fork: %m");
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (sc->switch_user && (setgroups(0, NULL) < 0 || setresgid(sc->gid, sc->gid, sc->gid) < 0 ||
                                        setresuid(sc->uid, sc->uid, sc->uid) < 0))
                        _exit(126);
                /* After the credential change, which clears it. */
                (void) prctl(PR_SET_PDEATHSIG, SIGQUIT);
                if (getppid() != parent)
                        _exit(1);
                /* Its own process group: a Ctrl-C on the terminal reaches us, and we stop it cleanly. */
                (void) setpgid(0, 0);
                if (!argv)
                        _exit(rm_rf(remove_path) < 0 ? 1 : 0);
                if (null >= 0)
                        (void) dup2(null, STDIN_FILENO);
                (void) dup2(sc->log_fd, STDOUT_FILENO);
                (void) dup2(sc->log_fd, STDERR_FILENO);
                execv(argv[0], argv);
                _exit(127);
        }
        *ret_pid = pid;
        return 0;
}

static int wait_status(pid_t pid) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last lines of the cluster's log, for error messages. */
static char *scratch_log_tail(const ScratchCluster *sc) {
        char buf[1024];
        off_t size = lseek(sc->log_fd, 0, SEEK_END);
        off_t from = size > (off_t) sizeof buf - 1 ? size - (off_t) sizeof buf + 1 : 0;
        ssize_t k = pread(sc->log_fd, buf, sizeof buf - 1, from);

        if (k <= 0)
                return xstrdup("(no output)");
        buf[k] = 0;
        for (char *p = buf; *p; p++)
                if (*p == '\n')
                        *p = ' ';
        return xstrdup(strstrip(buf));
}

static int scratch_run(ScratchCluster *sc, char *const argv[]) {
        pid_t pid;
        int r;

        r = scratch_spawn(sc, argv, NULL, &pid);
        if (r < 0)
                return r;
        r = wait_status(pid);
        if (r != 0) {
                _cleanup_free_ char *tail = scratch_log_tail(sc);
                return err_set(-EIO, EX_SOFTWARE, "%s failed (status %d) in %s: %s", argv[0], r, sc->dir,
                               tail);
        }
        return 0;
}

static void scratch_cluster_done(ScratchCluster *sc) {
        int r;

        if (sc->postmaster > 0) {
                /* Immediate shutdown: nothing in a throwaway cluster is worth a checkpoint. */
                (void) kill(sc->postmaster, SIGQUIT);
                (void) wait_status(sc->postmaster);
                sc->postmaster = 0;
        }
        if (sc->dir) {
                /* The data directory belongs to the server's user, and under the unit we lack
                 * CAP_DAC_OVERRIDE: that user removes it, we remove the rest. */
                if (sc->switch_user && sc->data) {
                        pid_t pid;
                        if (scratch_spawn(sc, NULL, sc->data, &pid) >= 0)
                                (void) wait_status(pid);
                }
                r = rm_rf(sc->dir);
                if (r < 0)
                        log_warning_errno(
                                r, "Cannot remove the restore-test cluster %s: %m; remove it by hand.",
                                sc->dir);
                else
                        log_debug("Removed the restore-test cluster %s.", sc->dir);
        }
        if (sc->log_fd >= 0)
                close(sc->log_fd);
        free(sc->dir);
        free(sc->data);
        free(sc->bindir);
        free(sc->conninfo);
        *sc = (ScratchCluster){ .log_fd = -1 };
}

static int free_loopback_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof a;
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof a) < 0 ||
            getsockname(fd, (struct sockaddr *) &a, &l) < 0)
                return err_setf(-errno, "cannot find a free loopback port: %m");
        return ntohs(a.sin_port);
}

/* Leftovers of a run that was killed (SIGKILL, power loss): their servers died with us (PDEATHSIG), the
 * directories stay. The caller holds the work_dir lock, so none of them is in use. */
static void scratch_remove_stale(const char *work_dir, const ScratchCluster *sc) {
        DIR *d = opendir(work_dir);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *data = NULL;
                pid_t pid;

                if (!startswith(de->d_name, SCRATCH_PREFIX))
                        continue;
                path = path_join(work_dir, de->d_name);
                data = path_join(path, "data");
                if (sc->switch_user && scratch_spawn((ScratchCluster *) sc, NULL, data, &pid) >= 0)
                        (void) wait_status(pid);
                if (rm_rf(path) >= 0)
                        log_info("Removed %s, left by an interrupted restore test.", path);
        }
        closedir(d);
}

static int scratch_cluster_start(const char *work_dir, const char *bindir, ScratchCluster *sc) {
        _cleanup_free_ char *initdb = path_join(bindir, "initdb"), *postgres = path_join(bindir, "postgres");
        _cleanup_free_ char *tmpl = NULL, *log_path = NULL, *port_s = NULL, *sockdir = NULL;
        uint64_t deadline;
        int r;

        *sc = (ScratchCluster){ .log_fd = -1, .bindir = xstrdup(bindir) };
        if (geteuid() == 0) {
                /* initdb and postgres refuse to run as root. */
                struct passwd *pw = getpwnam("postgres");
                if (!pw)
                        return err_set(
                                -ESRCH, EX_NOUSER,
                                "the restore test runs PostgreSQL as the user "
                                "\"postgres\", which does not exist (install the postgresql package)");
                sc->switch_user = true;
                sc->uid = pw->pw_uid;
                sc->gid = pw->pw_gid;
        }
        scratch_remove_stale(work_dir, sc);
        if (sc->switch_user) {
                /* The server's user must pass through work_dir (not list it) to reach its directory. */
                struct stat st;
                if (stat(work_dir, &st) < 0 ||
                    ((st.st_mode & 0001) == 0 && chmod(work_dir, (st.st_mode & 07777) | 0001) < 0))
                        return err_set(-errno, EX_CANTCREAT,
                                       "cannot let the postgres user into work_dir %s: %m", work_dir);
        }

        tmpl = xasprintf("%s/" SCRATCH_PREFIX "XXXXXX", work_dir);
        if (!mkdtemp(tmpl))
                return err_set(-errno, EX_CANTCREAT,
                               "cannot create a directory in work_dir %s: %m (set work_dir "
                               "in [agent] to a writable directory)",
                               work_dir);
        sc->dir = TAKE_PTR(tmpl);
        sc->data = path_join(sc->dir, "data");
        /* Only we and the server's group get in: the socket lives here and the cluster trusts local
         * connections. */
        if (sc->switch_user && (chown(sc->dir, (uid_t) -1, sc->gid) < 0 || chmod(sc->dir, 0770) < 0))
                return err_set(-errno, EX_CANTCREAT, "cannot hand %s to the postgres group: %m", sc->dir);
        log_path = path_join(sc->dir, "postgresql.log");
        sc->log_fd = open(log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (sc->log_fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot create %s: %m", log_path);

        log_info("Creating a throwaway PostgreSQL cluster in %s.", sc->dir);
        /* Local (socket) connections are trusted, TCP is refused: the cluster is reachable only through
         * the socket in our own directory. */
        r = scratch_run(sc, (char *[]){ initdb, (char *) "-D", sc->data, (char *) "-U", (char *) "postgres",
                                        (char *) "-E", (char *) "UTF8", (char *) "--locale=C.UTF-8",
                                        (char *) "--auth-local=trust", (char *) "--auth-host=reject",
                                        (char *) "--no-sync", NULL });
        if (r < 0)
                return r;

        r = free_loopback_port();
        if (r < 0)
                return r;
        sc->port = r;
        port_s = xasprintf("%d", sc->port);
        sockdir = xasprintf("unix_socket_directories=%s", sc->dir);
        /* Throwaway data: durability only costs time. */
        char *server[] = { postgres, (char *) "-D", sc->data, (char *) "-p", port_s,
                           (char *) "-c", (char *) "listen_addresses=127.0.0.1",
                           (char *) "-c", sockdir,
                           (char *) "-c", (char *) "fsync=off",
                           (char *) "-c", (char *) "synchronous_commit=off",
                           (char *) "-c", (char *) "full_page_writes=off", NULL };
        r = scratch_spawn(sc, server, NULL, &sc->postmaster);
        if (r < 0)
                return r;
        sc->conninfo = xasprintf("host=%s port=%d user=postgres", sc->dir, sc->port);

        deadline = now_usec(CLOCK_MONOTONIC) + SCRATCH_START_TIMEOUT_USEC;
        for (;;) {
                _cleanup_free_ char *ping = xasprintf("%s dbname=postgres connect_timeout=5", sc->conninfo);
                int status;

                if (PQping(ping) == PQPING_OK)
                        break;
                if (waitpid(sc->postmaster, &status, WNOHANG) == sc->postmaster) {
                        _cleanup_free_ char *tail = scratch_log_tail(sc);
                        sc->postmaster = 0;
                        return err_set(-EIO, EX_SOFTWARE,
                                       "the throwaway PostgreSQL server in %s did not start: %s", sc->dir,
                                       tail);
                }
                if (job_cancel_requested)
                        return err_set(-ECANCELED, EX_TEMPFAIL, "the restore test was cancelled");
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        return err_set(-ETIMEDOUT, EX_SOFTWARE,
                                       "the throwaway PostgreSQL server in %s did not "
                                       "accept connections within 2 minutes",
                                       sc->dir);
                usleep(100 * 1000);
        }
        log_info("Throwaway PostgreSQL cluster listening on 127.0.0.1:%d (socket in %s).", sc->port,
                 sc->dir);
        return 0;
}

/* Counts user tables and their rows exactly (count(*) per table; partitions are counted, their parents
 * not, so no row is counted twice). */
static int count_database(const ScratchCluster *sc, const char *db, RestoreTestDatabase *ret) {
        _cleanup_(pqfinishp) PGconn *conn = NULL;
        _cleanup_(pqclearp) PGresult *tables = NULL;
        _cleanup_free_ char *port = xasprintf("%d", sc->port);
        const char *keys[] = { "host", "port", "user", "dbname", "application_name", NULL };
        const char *values[] = { sc->dir, port, "postgres", db, "skyforge-agent-verify", NULL };
        uint64_t rows = 0;

        conn = PQconnectdbParams(keys, values, 0);
        if (PQstatus(conn) != CONNECTION_OK)
                return err_set(-EIO, EX_SOFTWARE, "cannot connect to restored database \"%s\": %s", db,
                               PQerrorMessage(conn));
        tables = PQexec(conn, "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
                              "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' "
                              "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1");
        if (PQresultStatus(tables) != PGRES_TUPLES_OK)
                return err_set(-EIO, EX_SOFTWARE, "cannot list the tables of restored database \"%s\": %s",
                               db, PQerrorMessage(conn));
        for (int i = 0; i < PQntuples(tables); i++) {
                _cleanup_free_ char *q = xasprintf("SELECT count(*) FROM %s", PQgetvalue(tables, i, 0));
                _cleanup_(pqclearp) PGresult *res = PQexec(conn, q);
                uint64_t n = 0;

                if (PQresultStatus(res) != PGRES_TUPLES_OK || parse_uint64(PQgetvalue(res, 0, 0), &n) < 0)
                        return err_set(-EIO, EX_DATAERR,
                                       "cannot read table %s of restored database \"%s\": %s",
                                       PQgetvalue(tables, i, 0), db, PQerrorMessage(conn));
                rows += n;
                if (job_cancel_requested)
                        return err_set(-ECANCELED, EX_TEMPFAIL, "the restore test was cancelled");
        }
        *ret = (RestoreTestDatabase){ .name = xstrdup(db),
                                      .tables = (uint64_t) PQntuples(tables),
                                      .rows = rows };
        return 0;
}

/* One restore test at a time per work_dir; also makes every restore-test-* directory found there a
 * leftover. */
static int lock_work_dir(const char *work_dir, int *ret_fd) {
        _cleanup_free_ char *path = path_join(work_dir, "restore-test.lock");
        int r;

        r = mkdir_p(work_dir, 0700);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot create work_dir %s: %s (set work_dir in [agent])",
                               work_dir, strerror(-r));
        r = lock_file(path, 0600, false, NULL, ret_fd);
        if (r == -EBUSY)
                return err_set(r, EX_TEMPFAIL, "another restore test is running (lock %s is held)", path);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot open %s: %s", path, strerror(-r));
        return 0;
}

static int manifest_databases(const Manifest *m, char ***ret) {
        json_object *dbs;
        char **l = xcalloc(1, sizeof(char *));

        if (m->extra && json_object_object_get_ex(m->extra, "databases", &dbs) &&
            json_object_is_type(dbs, json_type_array))
                for (size_t i = 0; i < json_object_array_length(dbs); i++)
                        strv_push(&l, xstrdup(strempty(
                                              json_object_get_string(json_object_array_get_idx(dbs, i)))));
        *ret = l;
        return 0;
}

int postgres_restore_test(const Config *c, Store *s, const Manifest *m, RestoreTestResult *result) {
        _cleanup_(scratch_cluster_done) ScratchCluster sc = { .log_fd = -1 };
        _cleanup_(pg_client_done) PgClient initdb = {};
        _cleanup_(pg_server_info_done) PgServerInfo info = {};
        _cleanup_strv_free_ char **expected = NULL;
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_free_ char *bindir = NULL;
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        json_object *v;
        int r, major = 0;

        result->backup_id = xstrdup(m->id);
        /* The server binaries must be at least as new as the dumped server. */
        if (m->extra && json_object_object_get_ex(m->extra, "server_version_num", &v))
                major = json_object_get_int(v) / 10000;
        r = pg_find_client("initdb", c->postgres.pg_bindir, major, &initdb);
        if (r < 0)
                return err_set(r, err_exit_code(r),
                               "restore test: %s (the server package postgresql-%d "
                               "provides initdb and postgres)",
                               err_message(), major);
        bindir = xstrndup(initdb.path, strrchr(initdb.path, '/') - initdb.path);

        r = lock_work_dir(c->agent.work_dir, &lock_fd);
        if (r < 0)
                return r;
        r = scratch_cluster_start(c->agent.work_dir, bindir, &sc);
        if (r < 0)
                return r;
        r = postgres_restore(c, s, m, sc.conninfo);
        if (r < 0 && job_cancel_requested)
                /* psql was stopped by us, whatever it reported. */
                return err_set(-ECANCELED, EX_TEMPFAIL, "the restore test was cancelled");
        if (r < 0)
                return r;

        r = pg_preflight(sc.conninfo, &info);
        if (r < 0)
                return r;
        manifest_databases(m, &expected);
        result->missing = xcalloc(1, sizeof(char *));
        STRV_FOREACH(d, expected)
                if (!strv_contains(info.databases, *d))
                        strv_push(&result->missing, xstrdup(*d));
        result->databases = xcalloc(strv_length(info.databases) + 1, sizeof *result->databases);
        STRV_FOREACH(d, info.databases) {
                /* template1 is in every cluster; it tells nothing about the backup. */
                if (streq(*d, "template1") && !strv_contains(expected, *d))
                        continue;
                r = count_database(&sc, *d, result->databases + result->n_databases);
                if (r < 0)
                        return r;
                result->n_databases++;
        }
        result->duration_usec = now_usec(CLOCK_MONOTONIC) - start;
        if (!strv_isempty(result->missing)) {
                _cleanup_free_ char *list = xstrdup("");
                STRV_FOREACH(d, result->missing) {
                        char *n = xasprintf("%s%s\"%s\"", list, *list ? ", " : "", *d);
                        free(list);
                        list = n;
                }
                return err_set(-EBADMSG, EX_DATAERR,
                               "restore test of backup %s: database(s) %s of the manifest "
                               "missing after the restore",
                               m->id, list);
        }
        return 0;
}
