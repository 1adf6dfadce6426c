/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sysexits.h>

#include "jobs/wal-spool.h"
#include "log/log.h"
#include "pg/replication.h"
#include "pipe/pipe.h"

#define SEG PG_WAL_SEGMENT_DEFAULT
/* History files are a line per timeline switch: far below this. */
#define WAL_SPOOL_HISTORY_MAX (UINT64_C(1) << 20)
/* Entries one scan of the spool looks at: its owner could fill it with anything. */
#define WAL_SPOOL_SCAN_MAX   4096
/* The page header fields checked (XLogLongPageHeaderData, unchanged since PostgreSQL 9.3): xlp_info at 2,
 * xlp_pageaddr at 8, xlp_sysid at 24, xlp_seg_size at 32. */
#define XLP_LONG_HEADER     0x0002
#define WAL_LONG_HEADER_LEN 40

/* ---- the pure parts ---- */

int wal_segment_header_check(const uint8_t *page, size_t n, uint64_t segno, uint64_t system_id, bool partial,
                             const char **ret_why) {
        uint16_t info;
        uint32_t seg_size;
        uint64_t pageaddr, sysid;
        bool zero = true;

        if (n < WAL_LONG_HEADER_LEN) {
                *ret_why = "it is shorter than a page header";
                return -EBADMSG;
        }
        for (size_t i = 0; i < WAL_LONG_HEADER_LEN && zero; i++)
                zero = page[i] == 0;
        if (zero) {
                if (partial)
                        return 0; /* nothing of it was written yet */
                *ret_why = "its first page is empty";
                return -EBADMSG;
        }
        memcpy(&info, page + 2, sizeof info);
        memcpy(&pageaddr, page + 8, sizeof pageaddr);
        memcpy(&sysid, page + 24, sizeof sysid);
        memcpy(&seg_size, page + 32, sizeof seg_size);
        if (!(info & XLP_LONG_HEADER))
                *ret_why = "its first page has no segment header";
        else if (pageaddr != segno * SEG)
                *ret_why = "its first page belongs to another WAL position";
        else if (seg_size != SEG)
                *ret_why = "it was written with another WAL segment size";
        else if (system_id != 0 && sysid != system_id)
                *ret_why = "it comes from another cluster (its system identifier differs from the base "
                           "backup's)";
        else
                return 0;
        return -EBADMSG;
}

/* ---- the spool directory ---- */

int wal_spool_create(const char *datadir, uid_t uid, gid_t gid, char **ret_path) {
        _cleanup_free_ char *path = path_join(datadir, WAL_SPOOL_NAME);
        _cleanup_close_ int fd = -EBADF;
        int r;

        /* A leftover of an earlier run inside a directory we restore into would be our own: start empty. */
        r = wal_spool_remove(path);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot remove the old WAL spool %s: %s", path,
                               strerror(-r));
        if (mkdir(path, 0700) < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot create the WAL spool %s: %m", path);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot open the WAL spool %s: %m", path);
        if ((geteuid() == 0 && fchown(fd, uid, gid) < 0) || fchmod(fd, 0700) < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot hand the WAL spool %s to uid %u: %m", path,
                               (unsigned) uid);
        *ret_path = TAKE_PTR(path);
        return 0;
}

/* ---- writing into the spool (the agent, as root) ---- */

typedef struct SpoolDir {
        const char *path; /* for messages */
        int fd;
        uid_t uid;
        gid_t gid;
} SpoolDir;

/* name in the spool, atomically (as .name.tmp, then renamed), owned by the spool's owner. */
static int spool_open_tmp(const SpoolDir *sd, const char *tmp) {
        int fd;

        (void) unlinkat(sd->fd, tmp, 0);
        fd = openat(sd->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot create %s/%s: %m", sd->path, tmp);
        if (geteuid() == 0 && fchown(fd, sd->uid, sd->gid) < 0) {
                int r = err_set(-errno, EX_CANTCREAT, "cannot hand %s/%s to uid %u: %m", sd->path, tmp,
                                (unsigned) sd->uid);
                close(fd);
                (void) unlinkat(sd->fd, tmp, 0);
                return r;
        }
        return fd;
}

static int spool_commit_tmp(const SpoolDir *sd, int fd, const char *tmp, const char *name) {
        if (fsync(fd) < 0)
                return err_set(-errno, EX_IOERR, "cannot write %s/%s: %m", sd->path, tmp);
        if (renameat(sd->fd, tmp, sd->fd, name) < 0)
                return err_set(-errno, EX_IOERR, "cannot rename %s/%s to %s: %m", sd->path, tmp, name);
        return 0;
}

/* An answer to restore_command: FILE.missing or FILE.error with text. */
static int spool_answer(const SpoolDir *sd, const char *file, const char *suffix, const char *text) {
        _cleanup_free_ char *name = xasprintf("%s%s", file, suffix), *tmp = xasprintf(".%s.tmp", name);
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = spool_open_tmp(sd, tmp);
        if (fd < 0)
                return fd;
        r = write_full(fd, strempty(text), strlen(strempty(text)));
        if (r < 0)
                r = err_set(r, EX_IOERR, "cannot write %s/%s: %s", sd->path, tmp, strerror(-r));
        else
                r = spool_commit_tmp(sd, fd, tmp, name);
        if (r < 0)
                (void) unlinkat(sd->fd, tmp, 0);
        return r;
}

/* The object holding FILE: the complete one (encrypted or not: the recipients may have changed since it
 * was written), else, with allow_partial, its .partial. -ENOENT without a message when there is none. */
static int wal_find_object(const WalStore *ws, const char *file, bool history, bool allow_partial,
                           char **ret_name, bool *ret_partial) {
        for (unsigned i = 0; i < (history || !allow_partial ? 2u : 4u); i++) {
                _cleanup_free_ char *name = wal_object_name(ws, file, i >= 2, i % 2 == 0);
                StoreEntry e = {};
                int r;

                if (!name)
                        return -ENOENT;
                r = store_stat(ws->store, name, &e);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return err_set(r, err_exit_code(r), "cannot look up %s in %s: %s", name,
                                       ws->store->location, err_message() ?: strerror(-r));
                store_entry_done(&e);
                *ret_name = TAKE_PTR(name);
                *ret_partial = i >= 2;
                return 0;
        }
        err_clear();
        return -ENOENT;
}

static int spool_write_object(const Config *c, const WalStore *ws, const SpoolDir *sd, const char *object,
                              const char *file, bool history, bool partial, uint64_t segno,
                              uint64_t system_id, int fd, const char *tmp) {
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_free_ char *buf = NULL;
        StoreReader *rd = NULL;
        uint8_t head[WAL_LONG_HEADER_LEN];
        size_t head_n = 0;
        uint64_t total = 0, max = history ? WAL_SPOOL_HISTORY_MAX : SEG;
        const char *why;
        int r;

        r = store_reader_open(ws->store, object, 0, &rd);
        if (r < 0)
                return err_set(r, err_exit_code(r), "cannot read WAL object %s from %s: %s", object,
                               ws->store->location, err_message() ?: strerror(-r));
        src = source_store_new(rd);
        if (endswith(object, ".age")) {
                Source *dec;
                if (isempty(c->postgres.identity_file))
                        return err_set(
                                -ENOKEY, EX_CONFIG,
                                "WAL object %s is encrypted; set identity_file = in [postgres] to the "
                                "age identity of one of [postgres] recipients",
                                object);
                dec = source_age_new(src, c->postgres.identity_file, &r);
                if (!dec)
                        return err_set(r, err_exit_code(r), "cannot decrypt WAL object %s with %s: %s",
                                       object, c->postgres.identity_file, err_message() ?: strerror(-r));
                src = dec;
        }
        src = source_zstd_new(TAKE_PTR(src));
        buf = xmalloc(256 * 1024);
        for (;;) {
                ssize_t n = source_read(src, buf, 256 * 1024);
                if (n < 0)
                        return err_set((int) n, err_exit_code((int) n),
                                       "cannot read WAL object %s from %s: %s", object, ws->store->location,
                                       err_message() ?: strerror((int) -n));
                if (n == 0)
                        break;
                if (total + (uint64_t) n > max)
                        return err_set(-EFBIG, EX_DATAERR,
                                       "WAL object %s in %s is larger than a %s; it is damaged", object,
                                       ws->store->location,
                                       history ? "timeline history file" : "WAL segment");
                if (head_n < sizeof head) {
                        size_t k = MIN(sizeof head - head_n, (size_t) n);
                        memcpy(head + head_n, buf, k);
                        head_n += k;
                }
                total += (uint64_t) n;
                r = write_full(fd, buf, (size_t) n);
                if (r < 0)
                        return err_set(r, EX_IOERR, "cannot write %s/%s: %s%s", sd->path, tmp, strerror(-r),
                                       r == -ENOSPC ? " (free space on the data directory's file system)"
                                                    : "");
        }
        if (!history && total != SEG)
                return err_set(-EBADMSG, EX_DATAERR,
                               "WAL object %s in %s holds %" PRIu64
                               " bytes, not a 16 MiB segment; it is damaged",
                               object, ws->store->location, total);
        if (!history && wal_segment_header_check(head, head_n, segno, system_id, partial, &why) < 0)
                return err_set(-EBADMSG, EX_DATAERR, "WAL object %s in %s is not segment %s: %s", object,
                               ws->store->location, file, why);
        return spool_commit_tmp(sd, fd, tmp, file);
}

/* Fetches object (FILE's, complete or partial) into the spool as FILE: decrypted, decompressed, checked. */
static int spool_fetch(const Config *c, const WalStore *ws, const SpoolDir *sd, const char *object,
                       const char *file, bool partial, uint64_t system_id) {
        _cleanup_free_ char *tmp = xasprintf(".%s.tmp", file);
        _cleanup_close_ int fd = -EBADF;
        uint32_t tli;
        uint64_t segno;
        bool history;
        int r;

        if (wal_spool_file_parse(file, &tli, &segno, &history) < 0)
                return err_set(-EINVAL, EX_SOFTWARE, "internal error: %s is no WAL file name", file);
        fd = spool_open_tmp(sd, tmp);
        if (fd < 0)
                return fd;
        r = spool_write_object(c, ws, sd, object, file, history, partial, segno, system_id, fd, tmp);
        if (r < 0) {
                ERR_KEEP_SCOPE();
                (void) unlinkat(sd->fd, tmp, 0);
        }
        return r;
}

static int spool_free_bytes(const SpoolDir *sd, uint64_t *ret) {
        struct statvfs st;

        if (fstatvfs(sd->fd, &st) < 0)
                return err_set(-errno, EX_IOERR, "cannot look at the file system of %s: %m", sd->path);
        *ret = (uint64_t) st.f_bavail * st.f_frsize;
        return 0;
}

/* ---- the live prefetch ---- */

typedef struct SpoolSegment {
        uint32_t tli;
        uint64_t segno;
        char name[PG_WAL_FILE_NAME_LEN + 1];
} SpoolSegment;

typedef struct SpoolScan {
        char **wants; /* FILE names restore_command asks for */
        SpoolSegment *segs; /* the segments waiting in the spool */
        size_t n_segs, cap;
} SpoolScan;

static void spool_scan_done(SpoolScan *s) {
        strv_free(s->wants);
        free(s->segs);
        *s = (SpoolScan){};
}

static void spool_scan_add(SpoolScan *s, uint32_t tli, uint64_t segno, const char *name) {
        if (s->n_segs == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 16;
                s->segs = xrealloc(s->segs, s->cap * sizeof *s->segs);
        }
        s->segs[s->n_segs] = (SpoolSegment){ .tli = tli, .segno = segno };
        snprintf(s->segs[s->n_segs].name, sizeof s->segs[s->n_segs].name, "%s", name);
        s->n_segs++;
}

static void spool_scan_drop(SpoolScan *s, size_t i) {
        s->segs[i] = s->segs[--s->n_segs];
}

struct WalPrefetch {
        const Config *config;
        WalStore ws; /* the thread's own */
        SpoolDir sd;
        int efd, ifd;
        unsigned ahead;
        uint64_t system_id;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        bool stop; /* under lock */
        Failure failure; /* under lock: the first file that could not be served */
        /* The thread's: the next segment the look-ahead fetches. */
        bool have_cursor, hole, full, low_space;
        uint32_t tli;
        uint64_t next;
        uint64_t fetched;
};

static bool prefetch_stopping(WalPrefetch *p) {
        bool stop;

        pthread_mutex_lock(&p->lock);
        stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        return stop || cancel_requested();
}

static int spool_scan(WalPrefetch *p, SpoolScan *ret) {
        SpoolScan s = { .wants = xcalloc(1, sizeof(char *)) };
        struct dirent *e;
        DIR *d;
        int fd;

        fd = openat(p->sd.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                int r = err_set(-errno, EX_IOERR, "cannot read the WAL spool %s: %m", p->sd.path);
                if (fd >= 0)
                        close(fd);
                spool_scan_done(&s);
                return r;
        }
        for (unsigned i = 0; i < WAL_SPOOL_SCAN_MAX && (e = readdir(d)); i++) {
                const char *want = endswith(e->d_name, ".want");
                uint32_t tli;
                uint64_t segno;
                bool history;

                if (want) {
                        _cleanup_free_ char *file = xstrndup(e->d_name, (size_t) (want - e->d_name));
                        if (wal_spool_file_parse(file, &tli, &segno, &history) >= 0)
                                strv_push(&s.wants, TAKE_PTR(file));
                } else if (wal_spool_file_parse(e->d_name, &tli, &segno, &history) >= 0 && !history)
                        spool_scan_add(&s, tli, segno, e->d_name);
        }
        closedir(d);
        *ret = s;
        return 0;
}

static void prefetch_fail(WalPrefetch *p, const char *file, int r) {
        _cleanup_free_ char *text = xstrdup(err_message() ?: strerror(-r));

        (void) spool_answer(&p->sd, file, ".error", text);
        log_error("Cannot serve WAL file %s to PostgreSQL: %s", file, text);
        pthread_mutex_lock(&p->lock);
        err_set(r, err_exit_code(r), "%s", text);
        failure_capture(&p->failure, r);
        pthread_mutex_unlock(&p->lock);
}

/* PostgreSQL asks for file: what waits in the spool behind it, or on another timeline, will not be asked
 * for any more; the rest stays within `ahead`; then the file itself, or the answer that there is none. */
static void prefetch_serve(WalPrefetch *p, SpoolScan *sc, const char *file) {
        _cleanup_free_ char *want = xasprintf("%s.want", file), *object = NULL;
        uint32_t tli;
        uint64_t segno;
        bool history, partial;
        int r;

        (void) wal_spool_file_parse(file, &tli, &segno, &history);
        (void) unlinkat(p->sd.fd, want, 0);
        if (faccessat(p->sd.fd, file, F_OK, AT_SYMLINK_NOFOLLOW) >= 0)
                return; /* it arrived while restore_command asked */
        if (!history) {
                for (size_t i = 0; i < sc->n_segs;)
                        if (sc->segs[i].segno < segno || sc->segs[i].tli != tli) {
                                (void) unlinkat(p->sd.fd, sc->segs[i].name, 0);
                                spool_scan_drop(sc, i);
                        } else
                                i++;
                while (sc->n_segs > 0 && sc->n_segs >= p->ahead) {
                        size_t far = 0;
                        for (size_t i = 1; i < sc->n_segs; i++)
                                if (sc->segs[i].segno > sc->segs[far].segno)
                                        far = i;
                        (void) unlinkat(p->sd.fd, sc->segs[far].name, 0);
                        spool_scan_drop(sc, far);
                }
                p->have_cursor = true;
                p->hole = false;
                p->tli = tli;
                p->next = segno + 1;
        }
        r = wal_find_object(&p->ws, file, history, true, &object, &partial);
        if (r == -ENOENT) {
                log_debug("WAL file %s is not in %s.", file, p->ws.store->location);
                r = spool_answer(&p->sd, file, ".missing", "");
                if (r < 0)
                        prefetch_fail(p, file, r);
                return;
        }
        if (r >= 0)
                r = spool_fetch(p->config, &p->ws, &p->sd, object, file, partial, p->system_id);
        if (r < 0) {
                prefetch_fail(p, file, r);
                return;
        }
        p->fetched++;
        if (!history)
                spool_scan_add(sc, tli, segno, file);
        if (partial)
                log_info("Serving %s from its partial segment %s (the newest WAL there is).", file, object);
        else
                log_debug("Fetched %s for PostgreSQL (%zu segment(s) in the spool).", file, sc->n_segs);
}

/* The segments after the newest one asked for, on its timeline, complete ones only (a partial one is the
 * end of its timeline or of the stored WAL, fetched when asked for), while fewer than `ahead` wait. */
static void prefetch_ahead(WalPrefetch *p, SpoolScan *sc) {
        while (p->have_cursor && !p->hole && !prefetch_stopping(p)) {
                _cleanup_free_ char *object = NULL;
                char file[PG_WAL_FILE_NAME_LEN + 1];
                uint64_t avail = 0;
                bool partial, there = false;
                int r;

                if (sc->n_segs >= p->ahead) {
                        if (!p->full)
                                log_debug("WAL look-ahead full: %zu segment(s) in %s wait for PostgreSQL.",
                                          sc->n_segs, p->sd.path);
                        p->full = true;
                        return;
                }
                p->full = false;
                pg_wal_file_name(p->tli, p->next * SEG, SEG, file);
                for (size_t i = 0; i < sc->n_segs && !there; i++)
                        there = sc->segs[i].tli == p->tli && sc->segs[i].segno == p->next;
                if (there) {
                        p->next++;
                        continue;
                }
                if (spool_free_bytes(&p->sd, &avail) < 0 || avail < SEG + WAL_SPOOL_RESERVE) {
                        if (!p->low_space)
                                log_warning("Only %" PRIu64 " MiB free beside %s: WAL is fetched when "
                                            "PostgreSQL asks for it, not ahead.",
                                            avail / (1024 * 1024), p->sd.path);
                        p->low_space = true;
                        return;
                }
                p->low_space = false;
                r = wal_find_object(&p->ws, file, false, false, &object, &partial);
                if (r >= 0)
                        r = spool_fetch(p->config, &p->ws, &p->sd, object, file, false, p->system_id);
                if (r < 0) {
                        /* Not there (yet), or it failed: PostgreSQL's request for it tries again and, if
                         * it fails then, stops the recovery with the reason. */
                        if (r != -ENOENT)
                                log_debug("Look-ahead of %s failed, it is fetched when asked for: %s", file,
                                          err_message() ?: strerror(-r));
                        err_clear();
                        p->hole = true;
                        return;
                }
                p->fetched++;
                spool_scan_add(sc, p->tli, p->next, file);
                p->next++;
                log_debug("Prefetched %s (%zu of at most %u segment(s) in the spool).", file, sc->n_segs,
                          p->ahead);
        }
}

static void *prefetch_main(void *userdata) {
        WalPrefetch *p = userdata;

        while (!prefetch_stopping(p)) {
                _cleanup_(spool_scan_done) SpoolScan sc = {};
                struct pollfd fds[2] = { { .fd = p->ifd, .events = POLLIN },
                                         { .fd = p->efd, .events = POLLIN } };
                char buf[4096];

                if (spool_scan(p, &sc) >= 0) {
                        STRV_FOREACH (w, sc.wants)
                                if (!prefetch_stopping(p))
                                        prefetch_serve(p, &sc, *w);
                        prefetch_ahead(p, &sc);
                } else {
                        log_warning("%s", err_message());
                        err_clear();
                }
                /* Woken by restore_command (a request, a file taken away) or by the stop; the timeout
                 * retries a look-ahead that found no space or no segment. */
                if (poll(fds, 2, 1000) < 0 && errno != EINTR)
                        break;
                while (read(p->ifd, buf, sizeof buf) > 0)
                        ;
        }
        return NULL;
}

int wal_prefetch_start(const Config *c, const WalStore *ws, const char *spool, uid_t uid, gid_t gid,
                       unsigned ahead, uint64_t system_id, WalPrefetch **ret) {
        _cleanup_(wal_prefetch_stopp) WalPrefetch *p = xcalloc(1, sizeof *p);
        _cleanup_free_ char *proc = NULL;
        int r;

        *p = (WalPrefetch){ .config = c,
                            .sd = { .path = spool, .fd = -EBADF, .uid = uid, .gid = gid },
                            .efd = -EBADF,
                            .ifd = -EBADF,
                            .ahead = MAX(ahead, 1u),
                            .system_id = system_id };
        pthread_mutex_init(&p->lock, NULL);
        p->sd.fd = open(spool, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (p->sd.fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot open the WAL spool %s: %m", spool);
        if (flock(p->sd.fd, LOCK_EX | LOCK_NB) < 0)
                return err_set(-errno, EX_TEMPFAIL, "cannot lock the WAL spool %s: %m%s", spool,
                               errno == EWOULDBLOCK ? " (another skyforge-agent serves it)" : "");
        p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        p->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        /* The directory we opened, even if its name were moved. */
        proc = xasprintf("/proc/self/fd/%d", p->sd.fd);
        if (p->efd < 0 || p->ifd < 0 ||
            inotify_add_watch(p->ifd, proc,
                              IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR) < 0)
                return err_set(-errno, EX_OSERR, "cannot watch the WAL spool %s: %m", spool);
        r = store_clone(ws->store, &p->ws.store);
        if (r < 0)
                return r;
        p->ws.prefix = xstrdup(ws->prefix);
        r = thread_start(&p->thread, prefetch_main, p);
        if (r < 0)
                return err_set(r, EX_OSERR, "cannot start the WAL prefetch: %s", strerror(-r));
        p->started = true;
        *ret = TAKE_PTR(p);
        return 0;
}

int wal_prefetch_failure(WalPrefetch *p) {
        int r;

        if (!p)
                return 0;
        pthread_mutex_lock(&p->lock);
        r = failure_raise(&p->failure);
        pthread_mutex_unlock(&p->lock);
        return r;
}

void wal_prefetch_stop(WalPrefetch *p) {
        if (!p)
                return;
        if (p->started) {
                uint64_t one = 1;
                pthread_mutex_lock(&p->lock);
                p->stop = true;
                pthread_mutex_unlock(&p->lock);
                (void) !write(p->efd, &one, sizeof one);
                pthread_join(p->thread, NULL);
                log_debug("WAL prefetch stopped; %" PRIu64 " file(s) fetched into %s.", p->fetched,
                          p->sd.path);
        }
        if (p->ifd >= 0)
                close(p->ifd);
        if (p->efd >= 0)
                close(p->efd);
        if (p->sd.fd >= 0)
                close(p->sd.fd); /* releases the flock: restore_command no longer waits for us */
        wal_store_done(&p->ws);
        failure_done(&p->failure);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

/* ---- the whole range up front ---- */

typedef struct FillItem {
        char *object;
        char file[PG_WAL_FILE_NAME_LEN + 1];
        uint32_t tli;
        uint64_t segno;
        bool history, partial;
} FillItem;

typedef struct Fill {
        const WalStore *ws;
        uint32_t tli;
        uint64_t start;
        FillItem *items;
        size_t n, cap;
} Fill;

/* The tail after a WAL file's name in its object name. */
static bool fill_tail(const char *tail, bool history, bool *ret_partial) {
        *ret_partial = startswith(tail, ".partial");
        return streq(tail, ".zst") || streq(tail, ".zst.age") ||
               (!history && (streq(tail, ".partial.zst") || streq(tail, ".partial.zst.age")));
}

static int fill_one(const StoreEntry *e, void *userdata) {
        Fill *f = userdata;
        const char *rest = startswith(e->name, f->ws->prefix);
        char file[PG_WAL_FILE_NAME_LEN + 1] = "";
        uint32_t tli;
        uint64_t segno;
        bool history = false, partial = false;
        size_t len = 0;

        /* TTTTTTTT/FILE{,.partial}.zst{,.age}: FILE a segment or a history file of timeline TTTTTTTT. */
        if (!rest || strlen(rest) < 9 + 16 || rest[8] != '/')
                return 0;
        rest += 9;
        for (size_t l = PG_WAL_FILE_NAME_LEN; l >= 16 && !len; l -= PG_WAL_FILE_NAME_LEN - 16) {
                if (strlen(rest) < l)
                        continue;
                memcpy(file, rest, l);
                file[l] = 0;
                if (wal_spool_file_parse(file, &tli, &segno, &history) >= 0 && history == (l == 16) &&
                    fill_tail(rest + l, history, &partial))
                        len = l;
        }
        if (!len || strncmp(rest - 9, file, 8) != 0)
                return 0;
        if (tli < f->tli || (!history && tli == f->tli && segno < f->start))
                return 0;
        if (f->n == f->cap) {
                f->cap = f->cap ? f->cap * 2 : 256;
                f->items = xrealloc(f->items, f->cap * sizeof *f->items);
        }
        f->items[f->n] = (FillItem){ .object = xstrdup(e->name),
                                     .tli = tli,
                                     .segno = segno,
                                     .history = history,
                                     .partial = partial };
        memcpy(f->items[f->n].file, file, len + 1);
        f->n++;
        return 0;
}

static int fill_item_cmp(const void *a, const void *b) {
        const FillItem *x = a, *y = b;
        int k = strcmp(x->file, y->file);

        if (k != 0)
                return k;
        return (int) x->partial - (int) y->partial; /* complete first */
}

static void fill_done(Fill *f) {
        for (size_t i = 0; i < f->n; i++)
                free(f->items[i].object);
        free(f->items);
        f->items = NULL;
        f->n = f->cap = 0;
}

/* The files recovery can ask for, one object each (the complete one when both are there), sorted; *ret_need:
 * what they take in the spool. */
static int fill_plan(const WalStore *ws, uint32_t tli, uint64_t start_segno, Fill *f, uint64_t *ret_need) {
        uint64_t need = 0;
        size_t n = 0;
        int r;

        *f = (Fill){ .ws = ws, .tli = tli, .start = start_segno };
        r = store_list(ws->store, ws->prefix, fill_one, f);
        if (r < 0) {
                fill_done(f);
                return r;
        }
        qsort(f->items, f->n, sizeof *f->items, fill_item_cmp);
        for (size_t i = 0; i < f->n; i++) {
                if (n > 0 && streq(f->items[n - 1].file, f->items[i].file)) {
                        free(f->items[i].object);
                        continue;
                }
                f->items[n++] = f->items[i];
        }
        f->n = n;
        for (size_t i = 0; i < n; i++)
                need += f->items[i].history ? 64 * 1024 : SEG;
        *ret_need = need;
        return 0;
}

int wal_spool_need(const WalStore *ws, uint32_t tli, uint64_t start_segno, size_t *ret_files,
                   uint64_t *ret_bytes) {
        Fill f;
        uint64_t need;
        int r;

        r = fill_plan(ws, tli, start_segno, &f, &need);
        if (r < 0)
                return r;
        *ret_files = f.n;
        *ret_bytes = need;
        fill_done(&f);
        return 0;
}

int wal_spool_fill(const Config *c, const WalStore *ws, const char *spool, uid_t uid, gid_t gid,
                   uint32_t tli, uint64_t start_segno, uint64_t system_id, uint64_t *ret_bytes) {
        _cleanup_close_ int fd = -EBADF, done = -EBADF;
        _cleanup_(fill_done) Fill f = {};
        SpoolDir sd = { .path = spool, .uid = uid, .gid = gid };
        uint64_t need = 0, avail = 0;
        int r;

        fd = open(spool, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot open the WAL spool %s: %m", spool);
        sd.fd = fd;
        r = fill_plan(ws, tli, start_segno, &f, &need);
        if (r < 0)
                return r;
        r = spool_free_bytes(&sd, &avail);
        if (r < 0)
                return r;
        if (avail < need + WAL_SPOOL_RESERVE) {
                char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX], k[FORMAT_BYTES_MAX];
                return err_set(
                        -ENOSPC, EX_CANTCREAT,
                        "the stored WAL from this base backup on (%zu file(s), %s) does not fit into %s "
                        "(%s free, %s to be kept free): free space there, or restore with --start, which "
                        "fetches the WAL while PostgreSQL replays it (at most [postgres] wal_prefetch "
                        "segments ahead)",
                        f.n, format_bytes(need, a, sizeof a), spool, format_bytes(avail, b, sizeof b),
                        format_bytes(WAL_SPOOL_RESERVE, k, sizeof k));
        }
        for (size_t i = 0; i < f.n; i++) {
                if (cancel_requested())
                        return err_set(-ECANCELED, EX_TEMPFAIL, "the restore was cancelled");
                r = spool_fetch(c, ws, &sd, f.items[i].object, f.items[i].file, f.items[i].partial,
                                system_id);
                if (r < 0)
                        return r;
        }
        done = spool_open_tmp(&sd, "." WAL_SPOOL_COMPLETE ".tmp");
        if (done < 0)
                return done;
        r = spool_commit_tmp(&sd, done, "." WAL_SPOOL_COMPLETE ".tmp", WAL_SPOOL_COMPLETE);
        if (r < 0)
                return r;
        if (ret_bytes)
                *ret_bytes = need;
        return (int) MIN(f.n, (size_t) INT32_MAX);
}
