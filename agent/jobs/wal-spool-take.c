/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "jobs/wal-spool-take.h"
#include "log/log.h"
#include "pg/wal-name.h"

#define SEG PG_WAL_SEGMENT_DEFAULT
#define WAL_SPOOL_ANSWER_MAX 4096
#define WAL_FILE_BUFFER      (256 * 1024)

int wal_spool_file_parse(const char *file, uint32_t *ret_tli, uint64_t *ret_segno, bool *ret_history) {
        uint32_t tli;
        uint64_t lsn;

        if (!file)
                return -EINVAL;
        if (pg_history_file_parse(file, &tli) >= 0) {
                *ret_tli = tli;
                *ret_segno = 0;
                *ret_history = true;
                return 0;
        }
        if (pg_wal_file_parse(file, SEG, &tli, &lsn) < 0)
                return -EINVAL;
        *ret_tli = tli;
        *ret_segno = lsn / SEG;
        *ret_history = false;
        return 0;
}

int wal_spool_remove(const char *path) {
        int r = 0;

        for (unsigned pass = 0; pass < 3; pass++) {
                int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                struct dirent *e;
                DIR *d;

                if (fd < 0)
                        return errno == ENOENT ? 0 : -errno;
                d = fdopendir(fd);
                if (!d) {
                        r = -errno;
                        close(fd);
                        return r;
                }
                while ((e = readdir(d)))
                        if (!streq(e->d_name, ".") && !streq(e->d_name, "..") &&
                            unlinkat(dirfd(d), e->d_name, 0) < 0 && (errno == EISDIR || errno == EPERM))
                                (void) unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
                closedir(d);
                if (rmdir(path) >= 0 || errno == ENOENT)
                        return 0;
                r = -errno;
                if (r != -ENOTEMPTY)
                        break;
        }
        return r;
}

int wal_file_write_atomic(const char *path, WalFileReadFn read_fn, void *userdata) {
        _cleanup_free_ char *tmp = xasprintf("%s.skyforge-tmp", path), *buf = xmalloc(WAL_FILE_BUFFER);
        _cleanup_close_ int fd = -EBADF;
        int r = 0;

        (void) unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot create %s: %m", tmp);
        for (;;) {
                ssize_t n = read_fn(userdata, buf, WAL_FILE_BUFFER);
                if (n < 0) {
                        r = (int) n;
                        break;
                }
                if (n == 0)
                        break;
                r = write_full(fd, buf, (size_t) n);
                if (r < 0) {
                        r = err_set(r, EX_IOERR, "cannot write %s: %s", tmp, strerror(-r));
                        break;
                }
        }
        if (r >= 0 && fsync(fd) < 0)
                r = err_set(-errno, EX_IOERR, "cannot write %s: %m", tmp);
        if (r >= 0 && rename(tmp, path) < 0)
                r = err_set(-errno, EX_IOERR, "cannot rename %s to %s: %m", tmp, path);
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

/* ---- restore_command's side (the data directory's owner, no configuration) ---- */

typedef struct SpoolRead {
        int fd;
        const char *spool, *name;
} SpoolRead;

static ssize_t spool_read(void *userdata, void *buf, size_t size) {
        SpoolRead *s = userdata;

        for (;;) {
                ssize_t n = read(s->fd, buf, size);
                if (n >= 0)
                        return n;
                if (errno != EINTR)
                        return err_set(-errno, EX_IOERR, "cannot read %s/%s: %m", s->spool, s->name);
        }
}

/* Copies name out of the spool into path (atomically). 0 when there is no such file. */
static int spool_copy_out(int dfd, const char *spool, const char *name, const char *path) {
        _cleanup_close_ int in = -EBADF;
        int r;

        in = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
                return errno == ENOENT ? 0 : err_set(-errno, EX_IOERR, "cannot open %s/%s: %m", spool, name);
        r = wal_file_write_atomic(path, spool_read, &(SpoolRead){ .fd = in, .spool = spool, .name = name });
        if (r < 0)
                return r;
        return 1;
}

/* 1: file is at path; -ENOENT (no message): the agent answered that the store does not hold it; another
 * error: the agent's answer why it could not be fetched; 0: no answer yet. */
static int spool_take_answer(int dfd, const char *spool, const char *file, bool history, const char *path) {
        _cleanup_free_ char *missing = xasprintf("%s.missing", file), *error = xasprintf("%s.error", file);
        _cleanup_close_ int efd = -EBADF;
        char text[WAL_SPOOL_ANSWER_MAX];
        ssize_t n;
        int r;

        if (history)
                r = spool_copy_out(dfd, spool, file, path); /* PostgreSQL reads them more than once */
        else if (renameat(dfd, file, AT_FDCWD, path) >= 0)
                r = 1;
        else if (errno == ENOENT)
                r = 0;
        else if (errno == EXDEV) {
                r = spool_copy_out(dfd, spool, file, path);
                if (r > 0)
                        (void) unlinkat(dfd, file, 0);
        } else
                r = err_set(-errno, EX_IOERR, "cannot move %s/%s to %s: %m", spool, file, path);
        if (r != 0)
                return r;
        if (unlinkat(dfd, missing, 0) >= 0) {
                err_clear();
                return -ENOENT;
        }
        efd = openat(dfd, error, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (efd < 0)
                return 0;
        n = read(efd, text, sizeof text - 1);
        text[MAX(n, (ssize_t) 0)] = 0;
        (void) unlinkat(dfd, error, 0);
        return err_set(-EIO, EX_UNAVAILABLE, "%s", n > 0 ? text : "the agent could not fetch it");
}

/* Whether an agent serves the spool: it holds the directory's flock. */
static bool spool_served(int dfd) {
        if (flock(dfd, LOCK_SH | LOCK_NB) >= 0) {
                (void) flock(dfd, LOCK_UN);
                return false;
        }
        return errno == EWOULDBLOCK;
}

int wal_spool_take(const char *spool, const char *file, const char *path) {
        _cleanup_close_ int dfd = -EBADF, ifd = -EBADF;
        _cleanup_free_ char *want = NULL, *proc = NULL;
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + WAL_SPOOL_WAIT_USEC;
        bool asked = false, history;
        uint32_t tli;
        uint64_t segno;
        int r;

        if (wal_spool_file_parse(file, &tli, &segno, &history) < 0) {
                err_clear();
                return -ENOENT; /* backup history files and the like: never stored */
        }
        dfd = open(spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return err_set(-errno, EX_UNAVAILABLE,
                               "cannot open the WAL spool %s: %m (the restore that set up this recovery "
                               "is over; restore again)",
                               spool);
        ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        proc = xasprintf("/proc/self/fd/%d", dfd);
        if (ifd < 0 || inotify_add_watch(ifd, proc, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0)
                return err_set(-errno, EX_OSERR, "cannot watch the WAL spool %s: %m", spool);
        want = xasprintf("%s.want", file);
        for (;;) {
                struct pollfd pfd = { .fd = ifd, .events = POLLIN };
                char buf[4096];
                bool served;

                r = spool_take_answer(dfd, spool, file, history, path);
                if (r != 0)
                        return r < 0 ? r : 0;
                if (faccessat(dfd, WAL_SPOOL_COMPLETE, F_OK, AT_SYMLINK_NOFOLLOW) >= 0) {
                        err_clear();
                        return -ENOENT; /* everything there is was put here up front */
                }
                served = spool_served(dfd);
                if (!served) {
                        /* It may have answered just before it stopped. */
                        r = spool_take_answer(dfd, spool, file, history, path);
                        if (r != 0)
                                return r < 0 ? r : 0;
                        return err_set(
                                -ESRCH, EX_UNAVAILABLE,
                                "no skyforge-agent serves the WAL spool %s any more (the `restore "
                                "postgres --start` or `recover` that fetches WAL for this recovery has "
                                "stopped); recovery cannot go on without it: restore again",
                                spool);
                }
                if (!asked) {
                        _cleanup_close_ int fd =
                                openat(dfd, want, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                        if (fd < 0)
                                return err_set(-errno, EX_IOERR, "cannot ask for %s in %s: %m", file, spool);
                        asked = true;
                        continue; /* an answer may have come meanwhile */
                }
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return err_set(-ETIMEDOUT, EX_UNAVAILABLE,
                                       "skyforge-agent did not answer for WAL file %s within %" PRIu64
                                       " s (the store is slow or unreachable?)",
                                       file, WAL_SPOOL_WAIT_USEC / USEC_PER_SEC);
                if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
                        return err_set(-errno, EX_OSERR, "cannot wait on the WAL spool %s: %m", spool);
                while (read(ifd, buf, sizeof buf) > 0)
                        ;
        }
}

int wal_spool_clean(const char *spool) {
        _cleanup_close_ int dfd = open(spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r;

        if (dfd < 0)
                return errno == ENOENT ? 0 : err_set(-errno, EX_IOERR, "cannot open %s: %m", spool);
        if (spool_served(dfd))
                return 0; /* the agent that serves it removes it */
        r = wal_spool_remove(spool);
        if (r < 0)
                return err_set(r, EX_IOERR, "cannot remove the WAL spool %s: %s", spool, strerror(-r));
        return 0;
}
