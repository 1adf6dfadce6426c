/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libgen.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/backup-source.h"
#include "jobs/context.h"
#include "jobs/pitr.h"
#include "jobs/recover-pg.h"
#include "jobs/wal.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "kube/volumes.h"
#include "log/log.h"
#include "pg/pg.h"
#include "pg/replication.h"
#include "store/objects.h"

/* How long the step waits for the server of the scaled-down workload to leave the data directory. */
#define RECOVER_PG_STOP_TIMEOUT_USEC (600 * USEC_PER_SEC)
/* For the local server that replays the WAL: no TCP, its socket in a directory only its user enters (it
 * needs one socket to start), and nothing of the pod's own setup that may not exist on the node (archiving,
 * TLS files) in its way. */
#define RECOVER_PG_SERVER_OPTIONS \
        "-c listen_addresses='' -c unix_socket_directories='%s' -c archive_mode=off -c ssl=off"

void recover_pg_choice_done(RecoverPgChoice *ch) {
        free(ch->reason);
        free(ch->physical_why_not);
        free(ch->base_id);
        free(ch->wal_newest);
        free(ch->source);
        free(ch->dump_id);
        *ch = (RecoverPgChoice){};
}

typedef struct WalNewest {
        const char *prefix;
        uint64_t usec;
        char *name;
} WalNewest;

static int wal_newest_one(const StoreEntry *e, void *userdata) {
        WalNewest *w = userdata;

        /* TTTTTTTT/<24 hex>[.partial].zst[.age]: segments only (history files come with a new timeline's
         * first segment anyway). */
        const char *rest = startswith(e->name, w->prefix);
        if (!rest || strlen(rest) < 9 + PG_WAL_FILE_NAME_LEN || rest[8] != '/' || strstr(rest, ".history"))
                return 0;
        if (e->mtime_usec > w->usec) {
                w->usec = e->mtime_usec;
                free(w->name);
                w->name = xstrdup(rest + 9);
        }
        return 0;
}

static int physical_candidate(const Config *c, RecoverPgChoice *ch) {
        _cleanup_(physical_source_done) PhysicalSource src = {};
        _cleanup_(pg_client_done) PgClient pg_ctl = {};
        _cleanup_strv_free_ char **problems = NULL;
        WalNewest newest = {};
        json_object *v;
        const Manifest *m;
        int r, major;

        if (isempty(c->postgres.data_directory)) {
                ch->physical_why_not = xstrdup("[postgres] data_directory is not set (the server's data "
                                               "directory on this node)");
                return 0;
        }
        /* The base backups' destination, or its offsite copy when that has none (as pitr_restore reads). */
        r = physical_source_open(c, &src);
        if (r < 0) {
                ch->physical_why_not = xstrdup(err_message() ?: strerror(-r));
                err_clear();
                return 0;
        }
        m = src.base.list.items[0];
        ch->base_id = xstrdup(m->id);
        ch->base_bytes = m->bytes;
        ch->source = xstrdup(src.base.location);
        ch->offsite = src.base.offsite;
        /* Complete: every segment from the backup's start on is stored, without a gap. */
        problems = xcalloc(1, sizeof(char *));
        r = wal_check_chain_in(&src.wal, m, &problems);
        if (r < 0) {
                ch->physical_why_not = xasprintf("cannot check the WAL of base backup %s: %s", m->id,
                                                 err_message() ?: strerror(-r));
                return 0;
        }
        if (r > 0) {
                ch->physical_why_not = xasprintf("base backup %s is not complete: %s", m->id, problems[0]);
                return 0;
        }
        major = m->extra && json_object_object_get_ex(m->extra, "server_version_num", &v)
                        ? json_object_get_int(v) / 10000
                        : 0;
        r = pg_find_client("pg_ctl", c->postgres.pg_bindir, major, &pg_ctl);
        if (r < 0 || (major > 0 && pg_ctl.major != major)) {
                ch->physical_why_not = xasprintf("no PostgreSQL %d server on this node to replay the WAL "
                                                 "(install postgresql-%d)",
                                                 major, major);
                err_clear();
                return 0;
        }
        newest.prefix = src.wal.prefix;
        r = store_list(src.wal.store, src.wal.prefix, wal_newest_one, &newest);
        if (r < 0) {
                free(newest.name);
                ch->physical_why_not = xasprintf("cannot list the WAL: %s", err_message() ?: strerror(-r));
                return 0;
        }
        ch->wal_usec = MAX(newest.usec, m->finished_usec);
        ch->wal_newest = newest.name;
        ch->physical_ok = true;
        return 0;
}

/* The newest dump, from where the logical path would restore it (the destination, or offsite). */
static void logical_candidate(const Config *c, RecoverPgChoice *ch) {
        _cleanup_(backup_source_done) BackupSource src = {};

        if (backup_source_open(c, "postgres", &src) < 0) {
                err_clear();
                return;
        }
        ch->dump_id = xstrdup(src.list.items[0]->id);
        ch->dump_usec = src.list.items[0]->started_usec;
}

int recover_pg_choose(const Config *c, const char *from, RecoverPgChoice *ret) {
        RecoverPgChoice ch = {};

        from = from ?: "auto";
        int r;

        if (!strv_contains((char **) (const char *const[]){ "auto", "logical", "physical", NULL }, from))
                return err_set(-EINVAL, EX_USAGE, "--postgres-from %s: give logical, physical or auto",
                               from);
        if (streq(from, "logical")) {
                ch.reason = xstrdup("--postgres-from logical");
                *ret = ch;
                return 0;
        }
        r = physical_candidate(c, &ch);
        if (r < 0) {
                recover_pg_choice_done(&ch);
                return r;
        }
        if (streq(from, "physical")) {
                if (!ch.physical_ok) {
                        r = err_set(-ENOENT, EX_NOINPUT, "--postgres-from physical: %s",
                                    ch.physical_why_not);
                        recover_pg_choice_done(&ch);
                        return r;
                }
                ch.physical = true;
                ch.reason = xstrdup("--postgres-from physical");
                *ret = ch;
                return 0;
        }
        logical_candidate(c, &ch);
        if (!ch.physical_ok)
                ch.reason = xasprintf("physical: %s", ch.physical_why_not);
        else if (!ch.dump_id) {
                ch.physical = true;
                ch.reason = xstrdup("there is no dump");
        } else {
                _cleanup_free_ char *w = format_iso8601(ch.wal_usec), *d = format_iso8601(ch.dump_usec);
                ch.physical = ch.wal_usec > ch.dump_usec;
                ch.reason =
                        xasprintf("%s: the stored WAL reaches %s, dump %s started %s",
                                  ch.physical ? "physical is newer" : "the dump is newer", w, ch.dump_id, d);
        }
        *ret = ch;
        return 0;
}

int recover_pg_plan(const Config *c, const char *from, FILE *out) {
        _cleanup_(recover_pg_choice_done) RecoverPgChoice ch = {};
        char size[FORMAT_BYTES_MAX];
        int r;

        r = recover_pg_choose(c, from, &ch);
        if (r < 0) {
                fprintf(out, "postgres   cannot: %s\n", err_message() ?: strerror(-r));
                return r;
        }
        if (!ch.physical) {
                fprintf(out, "postgres   logical (%s)\n", ch.reason);
                return 0;
        }
        _cleanup_free_ char *w = format_iso8601(ch.wal_usec);
        fprintf(out, "postgres   physical (%s)\n", ch.reason);
        fprintf(out,
                "           restore base backup %s (%s stored) and the WAL up to %s (stored %s) into %s\n",
                ch.base_id, format_bytes(ch.base_bytes, size, sizeof size), strna(ch.wal_newest), w,
                c->postgres.data_directory);
        fprintf(out, "           from %s%s\n", ch.source, ch.offsite ? " (offsite)" : "");
        if (!isempty(c->postgres.workload))
                fprintf(out, "           with workload %s scaled to 0, then back\n", c->postgres.workload);
        if (ch.dump_id)
                fprintf(out, "           (logical instead: dump %s; --postgres-from logical)\n", ch.dump_id);
        return 1;
}

/* ---- the workload: the scale subresource of a Deployment or StatefulSet ---- */

typedef struct Workload {
        char *ns, *resource, *name;
} Workload;

static void workload_done(Workload *w) {
        free(w->ns);
        free(w->resource);
        free(w->name);
}

static int workload_parse(const char *s, Workload *ret) {
        _cleanup_strv_free_ char **parts = strv_split(s, "/");

        if (strv_length(parts) != 3 || isempty(parts[0]) || isempty(parts[2]) ||
            !strv_contains((char **) (const char *const[]){ "deployment", "statefulset", NULL }, parts[1]))
                return err_set(-EINVAL, EX_CONFIG,
                               "[postgres] workload = %s: give NAMESPACE/deployment/NAME or "
                               "NAMESPACE/statefulset/NAME",
                               s);
        for (size_t i = 0; i < 3; i += 2)
                for (const char *p = parts[i]; *p; p++)
                        if (!(islower((unsigned char) *p) || isdigit((unsigned char) *p) ||
                              strchr("-.", *p)))
                                return err_set(-EINVAL, EX_CONFIG,
                                               "[postgres] workload = %s: \"%s\" is no Kubernetes name", s,
                                               parts[i]);
        *ret = (Workload){ .ns = xstrdup(parts[0]),
                           .resource = xasprintf("%ss", parts[1]),
                           .name = xstrdup(parts[2]) };
        return 0;
}

static int workload_client(const Config *c, KubeClient **ret) {
        _cleanup_(kubeconfig_freep) KubeConfig *kc = NULL;
        const char *path = c->agent.kubeconfig ?: c->config.kubeconfig;
        int r;

        if (isempty(path))
                return err_set(-EINVAL, EX_CONFIG,
                               "[postgres] workload is set but no kubeconfig is: set [agent] kubeconfig");
        r = kubeconfig_load(path, &kc);
        if (r < 0)
                return r;
        r = kube_client_new(kc, ret);
        if (r < 0)
                return r;
        kube_client_set_cancel(*ret, &job_cancel_requested);
        return 0;
}

/* Sets the workload's replicas through its Scale (kube/volumes.h, as the volumes step does); *ret_old: what
 * they were. */
static int workload_scale(KubeClient *k, const Workload *w, int64_t replicas, int64_t *ret_old) {
        _cleanup_free_ char *workload = xasprintf("%s/%s", w->resource, w->name);
        unsigned old = 0;
        int r;

        if (replicas < 0 || replicas > UINT32_MAX)
                return err_set(-ERANGE, EX_SOFTWARE, "internal error: %" PRId64 " replicas", replicas);
        r = kube_scale_set(k, w->ns, workload, (unsigned) replicas, &old);
        if (r < 0)
                return r;
        *ret_old = old;
        if (old != replicas)
                log_info("Scaled %s/%s/%s from %u to %" PRId64 " replica(s).", w->ns, w->resource, w->name, old,
                         replicas);
        return 0;
}

/* ---- the physical path ---- */

static char *stamp_path(const Config *c, const char *what) {
        return xasprintf("%s/recover-postgres-%s", c->agent.state_dir, what);
}

/* A server still owns the directory while its postmaster.pid is there. */
static int wait_server_gone(const char *datadir, bool waiting) {
        _cleanup_free_ char *pid = path_join(datadir, "postmaster.pid");
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + RECOVER_PG_STOP_TIMEOUT_USEC;

        while (access(pid, F_OK) >= 0) {
                if (!waiting)
                        return err_set(
                                -EBUSY, EX_TEMPFAIL,
                                "PostgreSQL runs on %s (its postmaster.pid is there): stop it, or set "
                                "[postgres] workload so that recover scales it to 0, then rerun",
                                datadir);
                if (job_cancel_requested)
                        return err_set(-ECANCELED, EX_TEMPFAIL, "recovery was cancelled");
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return err_set(
                                -ETIMEDOUT, EX_TEMPFAIL,
                                "the server of %s did not stop within %" PRIu64
                                " s of its workload being scaled to 0 (postmaster.pid is still there)",
                                datadir, RECOVER_PG_STOP_TIMEOUT_USEC / USEC_PER_SEC);
                (void) usleep(500 * 1000);
        }
        return 0;
}

static bool dir_empty(const char *path) {
        DIR *d = opendir(path);
        struct dirent *e;
        bool empty = true;

        if (!d)
                return errno == ENOENT;
        while (empty && (e = readdir(d)))
                empty = streq(e->d_name, ".") || streq(e->d_name, "..");
        closedir(d);
        return empty;
}

/* Whatever the volume holds (a fresh cluster the pod made on the rebuilt node, or the damaged old one) is
 * kept beside it, never deleted; the directory itself is made again, empty, with its owner and mode. */
static int move_aside(const char *datadir, char **ret_aside) {
        char id[BACKUP_ID_LEN + 1];
        struct stat st;
        _cleanup_free_ char *aside = NULL;

        *ret_aside = NULL;
        if (dir_empty(datadir))
                return 0;
        if (stat(datadir, &st) < 0)
                return err_set(-errno, EX_IOERR, "cannot stat %s: %m", datadir);
        backup_id_format(now_usec(CLOCK_REALTIME), id);
        aside = xasprintf("%s.skyforge-before-recover-%s", datadir, id);
        if (rename(datadir, aside) < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot move %s aside to %s: %m", datadir, aside);
        if (mkdir(datadir, st.st_mode & 07777) < 0 || chown(datadir, st.st_uid, st.st_gid) < 0 ||
            chmod(datadir, 0700) < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot create %s again (the old content is in %s): %m",
                               datadir, aside);
        log_info("Moved the old content of %s aside to %s.", datadir, aside);
        *ret_aside = TAKE_PTR(aside);
        return 0;
}

static int physical_run(const Config *c, const RecoverPgChoice *ch, bool *ret_skipped, char **ret_note) {
        const char *datadir = c->postgres.data_directory;
        _cleanup_free_ char *stamp = stamp_path(c, "physical"), *done = NULL, *want = NULL,
                            *replicas_path = stamp_path(c, "replicas"), *saved = NULL, *aside = NULL,
                            *version = path_join(datadir, "PG_VERSION"),
                            *signal_path = path_join(datadir, "recovery.signal");
        _cleanup_(kube_client_freep) KubeClient *k = NULL;
        _cleanup_(workload_done) Workload w = {};
        int64_t replicas = 0, ignored;
        int r;

        /* Done before: the same base backup is in place and recovered. */
        want = xasprintf("%s %s\n", ch->base_id, datadir);
        if (read_file_string(stamp, 4096, &done) >= 0 && streq(done, want) && access(version, F_OK) >= 0 &&
            access(signal_path, F_OK) < 0) {
                *ret_skipped = true;
                *ret_note = xasprintf("%s holds base backup %s recovered already", datadir, ch->base_id);
                return 0;
        }
        if (!isempty(c->postgres.workload)) {
                r = workload_parse(c->postgres.workload, &w);
                if (r >= 0)
                        r = workload_client(c, &k);
                if (r < 0)
                        return r;
                /* A rerun after a failure finds it at 0: the count from before is kept in state_dir. */
                if (read_file_string(replicas_path, 64, &saved) >= 0)
                        replicas = strtoll(saved, NULL, 10);
                r = workload_scale(k, &w, 0, saved ? &ignored : &replicas);
                if (r < 0)
                        return r;
                if (!saved) {
                        _cleanup_free_ char *text = xasprintf("%" PRId64 "\n", replicas);
                        r = write_file_atomic(replicas_path, text, strlen(text), 0600);
                        if (r < 0)
                                return err_set(r, EX_CANTCREAT, "cannot write %s: %s", replicas_path,
                                               strerror(-r));
                }
        }
        r = wait_server_gone(datadir, k != NULL);
        if (r < 0)
                return r;
        r = move_aside(datadir, &aside);
        if (r < 0)
                return r;
        /* The server runs as the owner of the directory (or of its parent, for a new one). */
        struct stat st;
        _cleanup_free_ char *parent = xstrdup(datadir), *options = NULL;
        char sockdir[] = "/tmp/skyforge-recover-XXXXXX";
        if (stat(datadir, &st) < 0 && stat(dirname(parent), &st) < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot use %s: %m (create its parent first)", datadir);
        if (!mkdtemp(sockdir))
                return err_set(-errno, EX_CANTCREAT, "cannot create a directory in /tmp: %m");
        if (chown(sockdir, st.st_uid, st.st_gid) < 0) {
                r = err_set(-errno, EX_CANTCREAT, "cannot hand %s to uid %u: %m", sockdir,
                            (unsigned) st.st_uid);
                (void) rmdir(sockdir);
                return r;
        }
        options = xasprintf(RECOVER_PG_SERVER_OPTIONS, sockdir);
        PitrOptions po = { .datadir = datadir,
                           .base_id = ch->base_id,
                           .target = PITR_TARGET_LATEST,
                           .start = true,
                           .stop_after = true,
                           .server_options = options };
        r = pitr_restore(c, &po, stderr);
        (void) rmdir(sockdir);
        if (r < 0)
                return r;
        r = write_file_atomic(stamp, want, strlen(want), 0600);
        if (r < 0)
                log_warning("Cannot write %s (%s); a rerun restores again.", stamp, strerror(-r));
        if (k) {
                r = workload_scale(k, &w, replicas, &ignored);
                if (r < 0)
                        return r;
                (void) unlink(replicas_path);
        }
        *ret_skipped = false;
        *ret_note = xasprintf("restored base backup %s and the WAL up to %s from %s%s into %s%s%s%s%s",
                              ch->base_id, strna(ch->wal_newest), ch->source,
                              ch->offsite ? " (offsite)" : "", datadir,
                              aside ? " (the old content is in " : "",
                              strempty(aside), aside ? ")" : "", k ? "; the workload is scaled back" : "");
        return 0;
}

int recover_pg_run(const Config *c, const char *from, bool *ret_skipped, char **ret_note) {
        _cleanup_(recover_pg_choice_done) RecoverPgChoice ch = {};
        int r;

        r = recover_pg_choose(c, from, &ch);
        if (r < 0)
                return r;
        log_info("PostgreSQL: the %s path (%s).", ch.physical ? "physical" : "logical", ch.reason);
        if (!ch.physical)
                return 0;
        r = physical_run(c, &ch, ret_skipped, ret_note);
        return r < 0 ? r : 1;
}
