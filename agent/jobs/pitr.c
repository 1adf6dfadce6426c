/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/backup-source.h"
#include "jobs/context.h"
#include "jobs/pitr.h"
#include "jobs/verify.h"
#include "jobs/wal.h"
#include "jobs/wal-spool.h"
#include "log/log.h"
#include "pg/pg.h"
#include "pg/replication.h"
#include "pipe/pipe.h"
#include "pipe/untar.h"
#include "store/objects.h"
#include "sys/process.h"

/* How long --start waits for the recovery to end: bounded, and SIGTERM ends the wait (not the server). */
#define PITR_START_TIMEOUT_USEC (24 * 3600 * USEC_PER_SEC)

static int parse_digits(const char **p, unsigned n, int *ret) {
        int v = 0;

        for (unsigned i = 0; i < n; i++) {
                if (!isdigit((unsigned char) (*p)[i]))
                        return -EINVAL;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

int pitr_parse_time(const char *s, uint64_t *ret) {
        const char *p = s;
        int y, mo, d, h, mi, sec, zh = 0, zm = 0, sign = 1;
        uint64_t frac = 0, scale = USEC_PER_SEC;
        struct tm tm = {};
        time_t t;

        if (!s || parse_digits(&p, 4, &y) < 0 || *p++ != '-' || parse_digits(&p, 2, &mo) < 0 ||
            *p++ != '-' || parse_digits(&p, 2, &d) < 0 || (*p != ' ' && *p != 'T') || !*p++ ||
            parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &mi) < 0 || *p++ != ':' ||
            parse_digits(&p, 2, &sec) < 0)
                return -EINVAL;
        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                for (; isdigit((unsigned char) *p); p++)
                        if (scale > 1) {
                                scale /= 10;
                                frac += (uint64_t) (*p - '0') * scale;
                        }
        }
        if (*p == 'Z')
                p++;
        else if (*p == '+' || *p == '-') {
                sign = *p++ == '-' ? -1 : 1;
                if (parse_digits(&p, 2, &zh) < 0)
                        return -EINVAL;
                if (*p == ':')
                        p++;
                if (isdigit((unsigned char) *p) && parse_digits(&p, 2, &zm) < 0)
                        return -EINVAL;
        } else
                return -EDOM; /* no zone */
        if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || zh > 14 ||
            zm > 59 || y < 1970)
                return -EINVAL;
        tm = (struct tm){ .tm_year = y - 1900,
                          .tm_mon = mo - 1,
                          .tm_mday = d,
                          .tm_hour = h,
                          .tm_min = mi,
                          .tm_sec = sec };
        t = timegm(&tm);
        if (t == (time_t) -1 || tm.tm_mday != d)
                return -EINVAL;
        t -= sign * (zh * 3600 + zm * 60);
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) t * USEC_PER_SEC + frac;
        return 0;
}

char *pitr_format_time(uint64_t usec) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char buf[64];

        gmtime_r(&t, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
        return xasprintf("%s.%06" PRIu64 "+00", buf, usec % USEC_PER_SEC);
}

/* A value in postgresql.auto.conf's single quotes. */
static char *conf_quote(const char *v) {
        size_t n = 0;
        char *out = xmalloc(strlen(v) * 2 + 3), *o = out;

        *o++ = '\'';
        for (const char *p = v; *p; p++, n++) {
                if (*p == '\'' || *p == '\\')
                        *o++ = *p;
                *o++ = *p == '\n' ? ' ' : *p;
        }
        *o++ = '\'';
        *o = 0;
        return out;
}

char *pitr_setting_line(const char *setting) {
        const char *eq = strchr(setting, '=');
        _cleanup_free_ char *name = NULL, *value = NULL;

        if (!eq || eq == setting)
                return NULL;
        name = xstrndup(setting, (size_t) (eq - setting));
        for (const char *p = name; *p; p++)
                if (!(islower((unsigned char) *p) || *p == '_' || *p == '.' || isdigit((unsigned char) *p)))
                        return NULL;
        value = conf_quote(eq + 1);
        return xasprintf("%s = %s\n", name, value);
}

/* A path that goes into restore_command unquoted through sh and PostgreSQL's % escapes. */
static bool command_path_ok(const char *p) {
        if (isempty(p) || p[0] != '/')
                return false;
        for (; *p; p++)
                if (!(isalnum((unsigned char) *p) || strchr("/._+-@,", *p)))
                        return false;
        return true;
}

static const char *details_string(const Manifest *m, const char *key) {
        json_object *v;

        if (!m->extra || !json_object_object_get_ex(m->extra, key, &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static uint64_t details_uint(const Manifest *m, const char *key) {
        json_object *v;

        if (!m->extra || !json_object_object_get_ex(m->extra, key, &v))
                return 0;
        return (uint64_t) json_object_get_int64(v);
}

static bool base_fits(const Manifest *m, const PitrOptions *o) {
        uint64_t end = 0;

        if (o->target == PITR_TARGET_TIME)
                return m->finished_usec <= o->time_usec;
        if (o->target == PITR_TARGET_LSN)
                return pg_lsn_parse(details_string(m, "end_lsn"), &end) >= 0 && end <= o->lsn;
        return true;
}

/* Every WAL segment from the backup's start to its end must be in the store, or the copy never becomes
 * consistent: checked before anything is written. */
static int check_wal_chain(const WalStore *ws, const Manifest *m) {
        uint64_t start, end, segsize = details_uint(m, "wal_segment_size");
        uint32_t tli = (uint32_t) details_uint(m, "timeline");
        int r;

        if (pg_lsn_parse(details_string(m, "start_lsn"), &start) < 0 ||
            pg_lsn_parse(details_string(m, "end_lsn"), &end) < 0 || segsize != PG_WAL_SEGMENT_DEFAULT ||
            tli == 0)
                return err_set(-EBADMSG, EX_DATAERR,
                               "base backup %s: its manifest lacks start_lsn, end_lsn, "
                               "timeline or wal_segment_size",
                               m->id);
        for (uint64_t lsn = start - start % segsize; lsn <= end; lsn += segsize) {
                char file[PG_WAL_FILE_NAME_LEN + 1];
                bool found = false;

                pg_wal_file_name(tli, lsn, segsize, file);
                for (unsigned i = 0; i < 4 && !found; i++) {
                        _cleanup_free_ char *name = wal_object_name(ws, file, i >= 2, i % 2 == 0);
                        StoreEntry e = {};
                        r = store_stat(ws->store, name, &e);
                        if (r >= 0) {
                                store_entry_done(&e);
                                found = true;
                        } else if (r != -ENOENT)
                                return r;
                }
                if (!found)
                        return err_set(
                                -ENOENT, EX_DATAERR,
                                "base backup %s needs WAL segment %s, which is not in "
                                "%s (is skyforge-wal.service running? `systemctl status skyforge-wal`)",
                                m->id, file, ws->store->location);
        }
        return 0;
}

static int pick_base_backup(const BackupList *l, const PitrOptions *o, const Manifest **ret) {
        const Manifest *found = NULL;

        if (o->base_id && !streq(o->base_id, "latest")) {
                int r = backup_list_find(l, o->base_id, &found);
                if (r < 0)
                        return r;
                if (!base_fits(found, o))
                        return err_set(-EINVAL, EX_USAGE,
                                       "base backup %s ends after the recovery target; pick an "
                                       "older one or leave the id out",
                                       found->id);
                *ret = found;
                return 0;
        }
        for (size_t i = 0; i < l->n && !found; i++) /* newest first */
                if (base_fits(l->items[i], o))
                        found = l->items[i];
        if (!found) {
                if (l->n == 0)
                        return err_set(-ENOENT, EX_NOINPUT,
                                       "there is no base backup; run `skyforge-agent run "
                                       "basebackup` (skyforge-backup-basebackup.timer runs it weekly)");
                return err_set(-ENOENT, EX_NOINPUT,
                               "no base backup ended before the recovery target; the oldest, "
                               "%s, ended later",
                               l->items[l->n - 1]->id);
        }
        *ret = found;
        return 0;
}

/* A base backup named by id that the destination does not hold (its other base backups do not hide the
 * offsite copy's): from the offsite copy, with its WAL, when that holds it. Else the destination's "no
 * backup" stays the error. */
static int pick_offsite_base_backup(const Config *c, const PitrOptions *o, PhysicalSource *src,
                                    const Manifest **ret) {
        _cleanup_(physical_source_done) PhysicalSource off = {};
        const Manifest *m;
        int r;

        {
                ERR_KEEP_SCOPE();
                r = physical_source_open_offsite(c, &off);
                if (r >= 0 && backup_list_find(&off.base.list, o->base_id, &m) < 0)
                        r = -ENOENT;
                if (r < 0)
                        log_debug("Base backup %s is not offsite either (%s).", o->base_id,
                                  r == -ENOENT ? "not there" : strempty(err_message()));
        }
        if (r < 0)
                return -ENOENT; /* the destination's message, still set */
        log_info("Base backup %s is not in %s; reading it and its WAL from the offsite copy %s.", o->base_id,
                 src->base.location, off.base.location);
        physical_source_done(src);
        *src = off;
        off = (PhysicalSource){};
        return pick_base_backup(&src->base.list, o, ret);
}

static int extract_object(const Config *c, Store *s, const Manifest *m, const ManifestObject *obj,
                          const char *datadir, bool is_manifest) {
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_(tar_reader_freep) TarReader *tar = NULL;
        StoreReader *rd = NULL;
        Digest d = {};
        int r;

        r = store_reader_open(s, obj->name, 0, &rd);
        if (r < 0)
                return r;
        src = source_digest_new(source_store_new(rd), &d);
        if (m->encrypted || endswith(obj->name, ".age")) {
                r = job_source_decrypt(TAKE_PTR(src), m, c->postgres.identity_file, "postgres", &src);
                if (r < 0)
                        return r;
        }
        src = source_zstd_new(TAKE_PTR(src));
        if (is_manifest) {
                _cleanup_free_ char *path = path_join(datadir, "backup_manifest");
                _cleanup_close_ int fd =
                        open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                _cleanup_(sink_freep) Sink *to = NULL;
                if (fd < 0)
                        return err_set(-errno, EX_CANTCREAT, "cannot create %s: %m", path);
                to = sink_fd_new(fd);
                r = pipe_pump(src, to);
                if (r < 0)
                        return err_set(r, err_exit_code(r), "cannot restore %s: %s", obj->name,
                                       err_message() ?: strerror(-r));
        } else {
                r = tar_reader_new(TAKE_PTR(src), &tar);
                if (r < 0)
                        return r;
                r = tar_reader_extract(tar, datadir, NULL);
                if (r < 0)
                        return r;
                /* The reader owned the source: the digest was completed while it read to the end. */
        }
        if (d.done && !streq(d.sha256_hex, obj->sha256))
                return err_set(-EBADMSG, EX_DATAERR,
                               "base backup %s changed while it was restored (SHA-256 of "
                               "%s differs)",
                               m->id, obj->name);
        return 0;
}

static uid_t chown_uid;
static gid_t chown_gid;

static int chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (lchown(path, chown_uid, chown_gid) < 0)
                return -errno;
        return 0;
}

/* What restore_command runs: skyforge-wal-fetch (libc alone, it starts in a fraction of the agent's time
 * and recovery runs it once per WAL file), beside this binary (a build tree) or in PKGLIBEXECDIR (the
 * package); without it, this binary's `wal-fetch`, which does the same. */
static char *wal_fetch_command(const char *self, const char **ret_verb) {
        const char *slash = strrchr(self, '/');
        _cleanup_free_ char *beside = xasprintf("%.*s/skyforge-wal-fetch", (int) (slash ? slash - self : 0),
                                                self);

        *ret_verb = "";
        if (access(beside, X_OK) == 0)
                return TAKE_PTR(beside);
        if (access(PKGLIBEXECDIR "/skyforge-wal-fetch", X_OK) == 0)
                return xstrdup(PKGLIBEXECDIR "/skyforge-wal-fetch");
        log_debug("No skyforge-wal-fetch beside %s or in %s: restore_command runs %s wal-fetch.", self,
                  PKGLIBEXECDIR, self);
        *ret_verb = " wal-fetch";
        return xstrdup(self);
}

/* restore_command takes WAL from the spool (jobs/wal-spool.h), which needs neither our configuration nor
 * the identity; without a live agent (offline), recovery_end_command removes the spool when done. */
static int write_recovery_settings(const PitrOptions *o, const Manifest *m, const char *datadir,
                                   const char *spool, bool offline) {
        _cleanup_free_ char *conf = path_join(datadir, "postgresql.auto.conf"),
                            *signal_path = path_join(datadir, "recovery.signal"), *text = NULL, *exe = NULL,
                            *target = NULL, *end_command = NULL;
        _cleanup_close_ int fd = -EBADF, sfd = -EBADF;
        const char *verb;
        char buf[4096];
        ssize_t n;
        int r;

        n = readlink("/proc/self/exe", buf, sizeof buf - 1);
        if (n <= 0)
                return err_set(-errno, EX_OSERR, "cannot find our own executable: %m");
        buf[n] = 0;
        exe = wal_fetch_command(buf, &verb);
        if (!command_path_ok(exe) || !command_path_ok(spool))
                return err_set(-EINVAL, EX_USAGE,
                               "cannot write restore_command: the paths %s and %s must be "
                               "absolute and consist of letters, digits and /._+-@, only",
                               exe, spool);
        if (o->target == PITR_TARGET_TIME) {
                _cleanup_free_ char *t = pitr_format_time(o->time_usec);
                target = xasprintf("recovery_target_time = '%s'\n", t);
        } else if (o->target == PITR_TARGET_LSN) {
                _cleanup_free_ char *l = pg_lsn_format(o->lsn);
                target = xasprintf("recovery_target_lsn = '%s'\n", l);
        } else
                target = xstrdup("");
        end_command = offline ? xasprintf("recovery_end_command = '%s%s --spool %s --clean'\n", exe,
                                          verb, spool)
                              : xstrdup("");
        text = xasprintf("\n# Added by skyforge-agent restore postgres from base backup %s.\n"
                         "restore_command = '%s%s --spool %s %%f %%p'\n"
                         "%s%s"
                         "recovery_target_action = 'promote'\n"
                         "recovery_target_timeline = 'latest'\n",
                         m->id, exe, verb, spool, end_command, target);
        STRV_FOREACH (s, o->settings) {
                _cleanup_free_ char *line = pitr_setting_line(*s);
                char *t;
                if (!line)
                        return err_set(-EINVAL, EX_USAGE,
                                       "--set %s: give NAME=VALUE with a server setting's "
                                       "name (lower case)",
                                       *s);
                t = xasprintf("%s%s", text, line);
                free(text);
                text = t;
        }
        fd = open(conf, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot open %s: %m", conf);
        r = write_full(fd, text, strlen(text));
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                return err_set(r, EX_IOERR, "cannot write %s: %s", conf, strerror(-r));
        sfd = open(signal_path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (sfd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot create %s: %m", signal_path);
        return 0;
}

static int prepare_datadir(const char *datadir, uid_t *ret_uid, gid_t *ret_gid) {
        _cleanup_free_ char *parent = NULL;
        struct stat st;
        DIR *d;

        if (datadir[0] != '/')
                return err_set(-EINVAL, EX_USAGE, "--to-datadir %s: give an absolute path", datadir);
        if (lstat(datadir, &st) >= 0) {
                struct dirent *e;
                bool empty = true;
                if (!S_ISDIR(st.st_mode))
                        return err_set(-ENOTDIR, EX_CANTCREAT,
                                       "%s exists and is no directory; give a new or empty "
                                       "directory",
                                       datadir);
                d = opendir(datadir);
                if (!d)
                        return err_set(-errno, EX_CANTCREAT, "cannot read %s: %m", datadir);
                while ((e = readdir(d)))
                        if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
                                empty = false;
                closedir(d);
                if (!empty)
                        return err_set(-EEXIST, EX_CANTCREAT,
                                       "%s is not empty; restore into a new or empty "
                                       "directory (nothing there was changed)",
                                       datadir);
        } else {
                int r;
                parent = xstrdup(datadir);
                char *slash = strrchr(parent, '/');
                if (slash == parent)
                        slash[1] = 0;
                else
                        *slash = 0;
                if (stat(parent, &st) < 0)
                        return err_set(-errno, EX_CANTCREAT, "cannot use %s: %m (create its parent first)",
                                       parent);
                r = mkdir_p(datadir, 0700);
                if (r < 0)
                        return err_set(r, EX_CANTCREAT, "cannot create %s: %s", datadir, strerror(-r));
        }
        if (chmod(datadir, 0700) < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot chmod %s: %m", datadir);
        *ret_uid = st.st_uid;
        *ret_gid = st.st_gid;
        return 0;
}

/* Whether the cluster's control file says "in production", i.e. promoted: DBState (an int at offset 16 of
 * pg_control, after the system identifier and two version numbers; DB_IN_PRODUCTION is 6 in every release
 * since 9.0). pg_ctl promote -w waits for the same. */
static bool cluster_in_production(const char *datadir) {
        _cleanup_free_ char *path = path_join(datadir, "global/pg_control");
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        int32_t state;

        if (fd < 0 || pread(fd, &state, sizeof state, 16) != (ssize_t) sizeof state)
                return false;
        return state == 6;
}

/* pg_ctl start as the owner of the data directory, then wait until recovery has ended: PostgreSQL removes
 * recovery.signal when it promotes, and marks the control file "in production" once the promotion is done.
 * The server stopping meanwhile (a target that the WAL never reaches) is an error with its log. */
/* The start of a command line that runs as uid (the owner of datadir) when we are root: runuser for a user
 * with a name, setpriv for a bare uid (a container's postgres, 999 or 70, often has no name on the node). */
static int as_owner_argv(const char *datadir, uid_t uid, gid_t gid, char ***ret) {
        _cleanup_strv_free_ char **argv = xcalloc(1, sizeof(char *));

        if (geteuid() == 0 && uid != 0) {
                struct passwd *pw = getpwuid(uid);
                _cleanup_free_ char *runuser = path_find_executable("runuser"),
                                    *setpriv = path_find_executable("setpriv");
                if (pw && runuser) {
                        strv_push(&argv, xstrdup(runuser));
                        strv_push(&argv, xstrdup("-u"));
                        strv_push(&argv, xstrdup(pw->pw_name));
                        strv_push(&argv, xstrdup("--"));
                } else if (setpriv) {
                        strv_push(&argv, xstrdup(setpriv));
                        strv_push(&argv, xasprintf("--reuid=%u", (unsigned) uid));
                        strv_push(&argv, xasprintf("--regid=%u", (unsigned) gid));
                        strv_push(&argv, xstrdup("--clear-groups"));
                        strv_push(&argv, xstrdup("--"));
                } else
                        return err_set(-ESRCH, EX_UNAVAILABLE,
                                       "cannot start PostgreSQL as uid %u, the owner of %s "
                                       "(no such user, or no runuser/setpriv)",
                                       (unsigned) uid, datadir);
        } else if (geteuid() == 0)
                return err_set(-EPERM, EX_USAGE,
                               "%s is owned by root and PostgreSQL does not run as root: chown it "
                               "to the server's user (e.g. postgres) before restoring, or start it yourself",
                               datadir);
        *ret = TAKE_PTR(argv);
        return 0;
}

/* Runs "pg_ctl ... -w -t 3600 ACTION" (argv holds the rest) and waits for it; log: the server's log, named
 * in the error. */
static int pg_ctl_wait(char ***argv, const char *action, const char *datadir, const char *log) {
        _cleanup_(child_donep) Child child = {};
        int r, status;

        strv_push(argv, xstrdup("-w"));
        strv_push(argv, xstrdup("-t"));
        strv_push(argv, xstrdup("3600"));
        strv_push(argv, xstrdup(action));
        r = child_spawn(*argv, NULL, 0, &child);
        if (r < 0)
                return r;
        status = child_wait(&child);
        if (status != 0) {
                _cleanup_free_ char *tail = child_stderr_summary(&child);
                return err_set(-EIO, EX_SOFTWARE, "pg_ctl %s of %s failed (exit status %d): %s%s%s", action,
                               datadir, status, tail, log ? "; see " : "", strempty(log));
        }
        return 0;
}

/* pg_ctl stop -m fast as the owner, waiting (bounded) for the shutdown checkpoint. */
static int stop_server(const char *pg_ctl, const char *datadir, uid_t uid, gid_t gid) {
        _cleanup_strv_free_ char **argv = NULL;
        int r;

        r = as_owner_argv(datadir, uid, gid, &argv);
        if (r < 0)
                return r;
        strv_push(&argv, xstrdup(pg_ctl));
        strv_push(&argv, xstrdup("-D"));
        strv_push(&argv, xstrdup(datadir));
        strv_push(&argv, xstrdup("-m"));
        strv_push(&argv, xstrdup("fast"));
        return pg_ctl_wait(&argv, "stop", datadir, NULL);
}

/* Whether line (of our block in postgresql.auto.conf) is one of the recovery settings we wrote. */
static bool is_recovery_line(const char *line) {
        return startswith(line, "restore_command ") || startswith(line, "recovery_end_command ") ||
               startswith(line, "recovery_target");
}

/* Takes our block (restore_command, the target, --set lines) out of postgresql.auto.conf again, for a
 * data directory that goes back to its own server once recovered; keep_set: only the recovery settings,
 * which name a spool that is gone once recovery is over, and the --set lines stay (the copy `restore
 * --start` leaves running keeps the port and the rest it was given across restarts). */
static int strip_recovery_settings(const char *datadir, uid_t uid, gid_t gid, bool keep_set) {
        _cleanup_free_ char *conf = path_join(datadir, "postgresql.auto.conf"), *text = NULL;
        char *mark;
        int r;

        r = read_file_string(conf, 1 << 20, &text);
        if (r < 0)
                return err_set(r, EX_IOERR, "cannot read %s: %s", conf, strerror(-r));
        mark = strstr(text, "\n# Added by skyforge-agent restore postgres from base backup ");
        if (!mark)
                return 0;
        if (!keep_set)
                mark[1] = 0;
        else {
                /* After the comment line, every line but ours. */
                char *w = strchrnul(mark + 1, '\n'), *rd;

                if (*w)
                        w++;
                for (rd = w; *rd;) {
                        char *eol = strchrnul(rd, '\n');
                        size_t len = (size_t) (eol - rd) + (*eol ? 1 : 0);

                        if (!is_recovery_line(rd)) {
                                memmove(w, rd, len);
                                w += len;
                        }
                        rd += len;
                }
                *w = 0;
        }
        r = write_file_atomic(conf, text, strlen(text), 0600);
        if (r < 0)
                return err_set(r, EX_IOERR, "cannot write %s: %s", conf, strerror(-r));
        /* The server's again: one it cannot read it skips as if missing, with every ALTER SYSTEM setting. */
        if (geteuid() == 0 && lchown(conf, uid, gid) < 0)
                return err_set(-errno, EX_IOERR, "cannot hand %s to uid %u: %m", conf, (unsigned) uid);
        return 0;
}

static int start_and_wait(const Config *c, const PitrOptions *o, const Manifest *m, const char *datadir,
                          uid_t uid, gid_t gid, WalPrefetch *pf) {
        _cleanup_(pg_client_done) PgClient pg_ctl = {};
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *log = path_join(datadir, "skyforge-restore.log"),
                            *sig = path_join(datadir, "recovery.signal"),
                            *pid = path_join(datadir, "postmaster.pid");
        uint64_t deadline;
        int r;

        r = pg_find_client("pg_ctl", c->postgres.pg_bindir,
                           (int) (details_uint(m, "server_version_num") / 10000), &pg_ctl);
        if (r < 0)
                return r;
        r = as_owner_argv(datadir, uid, gid, &argv);
        if (r < 0)
                return r;
        strv_push(&argv, xstrdup(pg_ctl.path));
        strv_push(&argv, xstrdup("-D"));
        strv_push(&argv, xstrdup(datadir));
        strv_push(&argv, xstrdup("-l"));
        strv_push(&argv, xstrdup(log));
        if (o->server_options) {
                strv_push(&argv, xstrdup("-o"));
                strv_push(&argv, xstrdup(o->server_options));
        }
        r = pg_ctl_wait(&argv, "start", datadir, log);
        if (r < 0 && wal_prefetch_failure(pf) < 0) {
                /* It stopped before it was consistent: at a WAL file the agent could not fetch. */
                _cleanup_free_ char *why = xstrdup(strempty(err_message()));
                return err_set(r, EX_UNAVAILABLE,
                               "the recovery of %s stopped at a WAL file the agent could not fetch: %s "
                               "(see %s)",
                               datadir, why, log);
        }
        if (r < 0)
                return r;
        log_info("PostgreSQL started on %s; waiting for the recovery to end.", datadir);
        deadline = now_usec(CLOCK_MONOTONIC) + PITR_START_TIMEOUT_USEC;
        for (;;) {
                if (access(sig, F_OK) < 0 && errno == ENOENT && cluster_in_production(datadir)) {
                        /* Promoted: restore_command and the target name a spool that goes away now and
                         * a recovery that is over; they must not outlive it in the copy. */
                        if (!o->stop_after)
                                return strip_recovery_settings(datadir, uid, gid, true);
                        log_info("Recovery of %s ended; stopping the server again.", datadir);
                        r = stop_server(pg_ctl.path, datadir, uid, gid);
                        if (r < 0)
                                return r;
                        return strip_recovery_settings(datadir, uid, gid, false);
                }
                if (access(pid, F_OK) < 0 && errno == ENOENT && (r = wal_prefetch_failure(pf)) < 0) {
                        _cleanup_free_ char *why = xstrdup(strempty(err_message()));
                        return err_set(r, err_exit_code(r),
                                       "the recovery of %s stopped at a WAL file the agent could not "
                                       "fetch: %s (see %s)",
                                       datadir, why, log);
                }
                if (access(pid, F_OK) < 0 && errno == ENOENT)
                        return err_set(-EIO, EX_SOFTWARE,
                                       "PostgreSQL stopped during the recovery of %s (a target "
                                       "the stored WAL does not reach?); see %s",
                                       datadir, log);
                if (cancel_requested())
                        return err_set(-ECANCELED, EX_TEMPFAIL,
                                       "stopped waiting for the recovery of %s; without the agent "
                                       "fetching its WAL the server stops at the next WAL file",
                                       datadir);
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return err_set(-ETIMEDOUT, EX_TEMPFAIL,
                                       "the recovery of %s has not ended after 24 h; without the "
                                       "agent fetching its WAL the server stops at the next WAL file "
                                       "(see %s)",
                                       datadir, log);
                (void) usleep(200 * 1000);
        }
}

/* Without --start no agent stays to serve the spool: everything recovery can ask for goes in first, if it
 * fits (checked before anything is written into the data directory). */
static int offline_space_check(const WalStore *ws, const Manifest *m, const char *datadir) {
        uint64_t start, need, avail;
        uint32_t tli = (uint32_t) details_uint(m, "timeline");
        size_t files;
        struct statvfs st;
        int r;

        (void) pg_lsn_parse(details_string(m, "start_lsn"), &start);
        r = wal_spool_need(ws, tli, start / PG_WAL_SEGMENT_DEFAULT, &files, &need);
        if (r < 0)
                return r;
        if (statvfs(datadir, &st) < 0)
                return err_set(-errno, EX_IOERR, "cannot look at the file system of %s: %m", datadir);
        avail = (uint64_t) st.f_bavail * st.f_frsize;
        if (avail < m->raw_bytes + need + WAL_SPOOL_RESERVE) {
                char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX], f[FORMAT_BYTES_MAX];
                return err_set(-ENOSPC, EX_CANTCREAT,
                               "base backup %s (%s) and the stored WAL after it (%zu file(s), %s) do not "
                               "fit into %s (%s free); nothing was written. Free space there, or restore "
                               "with --start, which fetches the WAL while PostgreSQL replays it (at most "
                               "[postgres] wal_prefetch segments ahead)",
                               m->id, format_bytes(m->raw_bytes, a, sizeof a), files,
                               format_bytes(need, b, sizeof b), datadir, format_bytes(avail, f, sizeof f));
        }
        return 0;
}

int pitr_restore(const Config *c, const PitrOptions *o, FILE *out) {
        _cleanup_(physical_source_done) PhysicalSource src = {};
        _cleanup_(wal_prefetch_stopp) WalPrefetch *pf = NULL;
        _cleanup_close_ int read_fd = -EBADF;
        _cleanup_free_ char *spool = NULL;
        const Manifest *m = NULL;
        uint64_t system_id = 0, start = 0, bytes = 0;
        uid_t uid = 0;
        gid_t gid = 0;
        int r, k;

        r = job_read_lock(c->agent.state_dir, "basebackup", false, JOB_READ_LOCK_TIMEOUT_USEC, &read_fd);
        if (r < 0)
                return r;
        r = physical_source_open(c, &src);
        if (r < 0)
                return r;
        r = pick_base_backup(&src.base.list, o, &m);
        if (r == -ENOENT && !src.base.offsite && o->base_id && !streq(o->base_id, "latest"))
                r = pick_offsite_base_backup(c, o, &src, &m);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_objects; i++) {
                const char *rest = startswith(m->objects[i].name, m->id);
                if (!rest || !(startswith(rest, ".base/base.tar.zst") ||
                               startswith(rest, ".base/backup_manifest.zst")))
                        return err_set(-EOPNOTSUPP, EX_DATAERR,
                                       "base backup %s holds %s: restoring tablespaces "
                                       "other than the main one is not supported yet",
                                       m->id, m->objects[i].name);
        }
        r = check_wal_chain(&src.wal, m);
        if (r < 0)
                return r;
        r = backup_verify_objects(src.base.store, m, true);
        if (r < 0)
                return r;
        r = prepare_datadir(o->datadir, &uid, &gid);
        if (r < 0)
                return r;
        if (!o->start) {
                r = offline_space_check(&src.wal, m, o->datadir);
                if (r < 0)
                        return r;
        }
        if (src.base.offsite)
                log_info("Reading base backup %s and its WAL from the offsite copy %s.", m->id,
                         src.base.location);
        log_info("Restoring base backup %s (%s to %s) into %s.", m->id, details_string(m, "start_lsn"),
                 details_string(m, "end_lsn"), o->datadir);
        for (size_t i = 0; i < m->n_objects; i++) {
                bool is_manifest = strstr(m->objects[i].name, ".base/backup_manifest.zst");
                r = extract_object(c, src.base.store, m, m->objects + i, o->datadir, is_manifest);
                if (r < 0)
                        return r;
        }
        r = wal_spool_create(o->datadir, uid, gid, &spool);
        if (r < 0)
                return r;
        r = write_recovery_settings(o, m, o->datadir, spool, !o->start);
        if (r < 0)
                return r;
        {
                /* A base backup of a standby carries its standby.signal, which would keep the copy following
                 * the old primary forever instead of stopping at the target. */
                _cleanup_free_ char *standby = path_join(o->datadir, "standby.signal");
                if (unlink(standby) >= 0)
                        log_info("Removed standby.signal (the base backup was taken on a standby): the copy "
                                 "recovers to the target and is promoted.");
                else if (errno != ENOENT)
                        return err_set(-errno, EX_IOERR, "cannot remove %s: %m", standby);
        }
        if (geteuid() == 0 && uid != 0) {
                chown_uid = uid;
                chown_gid = gid;
                r = nftw(o->datadir, chown_one, 64, FTW_PHYS);
                if (r != 0)
                        return err_set(r < 0 ? r : -EIO, EX_IOERR, "cannot hand %s over to uid %u: %s",
                                       o->datadir, (unsigned) uid, strerror(r < 0 ? -r : EIO));
        }
        (void) pg_lsn_parse(details_string(m, "start_lsn"), &start);
        system_id = strtoull(strempty(details_string(m, "system_identifier")), NULL, 10);
        if (!o->start) {
                r = wal_spool_fill(c, &src.wal, spool, uid, gid, (uint32_t) details_uint(m, "timeline"),
                                   start / PG_WAL_SEGMENT_DEFAULT, system_id, &bytes);
                if (r < 0)
                        return r;
        }
        if (out) {
                char size[FORMAT_BYTES_MAX];
                fprintf(out, "Restored base backup %s%s into %s; recovery set up to %s", m->id,
                        src.base.offsite ? " (from the offsite copy)" : "", o->datadir,
                        o->target == PITR_TARGET_LATEST ? "the end of the stored WAL"
                        : o->target == PITR_TARGET_TIME ? "the target time"
                                                        : "the target LSN");
                if (!o->start)
                        fprintf(out, "; %d WAL file(s) (%s) wait in %s for it.\n", r,
                                format_bytes(bytes, size, sizeof size), spool);
                else
                        fputs(".\n", out);
        }
        if (!o->start)
                return 0;
        r = wal_prefetch_start(c, &src.wal, spool, uid, gid, c->postgres.wal_prefetch, system_id, &pf);
        if (r < 0)
                return r;
        r = start_and_wait(c, o, m, o->datadir, uid, gid, pf);
        /* Recovery is over (or failed): nobody asks for WAL any more. */
        wal_prefetch_stop(TAKE_PTR(pf));
        ERR_KEEP_SCOPE();
        k = wal_spool_remove(spool);
        if (k < 0)
                log_warning("Cannot remove the WAL spool %s (%s); remove it by hand.", spool, strerror(-k));
        return r;
}
