/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>

#include "log/log.h"
#include "sys/fs.h"
#include "store/store.h"

/* The local-directory backend. Objects are files under the directory; a write goes to a hidden temporary
 * file next to its target and becomes visible by rename after fsync, and the directory is fsynced so the
 * rename survives a crash. Hidden files are never listed. */

#define TMP_MARKER   ".tmp."
#define TMP_ATTEMPTS 64

/* Every name is opened below the store's directory fd and never through a symlink (sys/fs.h): a link
 * planted inside the store, with a manifest naming a path through it, would otherwise let prune delete
 * and verify or restore read files anywhere the agent can reach. The store's own path may be a symlink;
 * what is inside it may not. */
typedef struct LocalStore {
        int fd;
} LocalStore;

typedef struct LocalWriter {
        StoreWriter w;
        int dir_fd; /* the object's directory */
        char *base; /* the object's name in it */
        char *tmp; /* the temporary file's name in it */
        int fd;
        bool committed;
} LocalWriter;

typedef struct LocalReader {
        StoreReader r;
        int fd;
} LocalReader;

static int local_root_fd(Store *s) {
        return ((LocalStore *) s->data)->fd;
}

/* A name is a relative path of plain segments, so that one name is one file under the store and no other
 * name reaches it: no empty segments ("a//b", a leading or trailing '/'), no "." or ".." (which the kernel
 * resolves, so "a/./b" would alias "a/b" and "../x" leave the store), and no segment starting with '.'
 * (hidden: never listed, and where temporary files live). */
static bool local_name_valid(const char *name) {
        const char *p = name;

        if (isempty(name))
                return false;
        for (;;) {
                size_t k = strcspn(p, "/");
                if (k == 0 || p[0] == '.')
                        return false;
                p += k;
                if (*p == 0)
                        return true;
                p++; /* the '/' */
        }
}

static int local_check_name(Store *s, const char *name) {
        if (!local_name_valid(strempty(name)))
                return err_setf(-EINVAL, "invalid object name \"%s\" in %s", strempty(name), s->location);
        return 0;
}

/* The error for a failed open of name: a symlink on the way is refused by name, with the fix. */
static int local_fail(Store *s, const char *name, int r, const char *action) {
        if (r == -ELOOP || r == -EXDEV)
                return err_set(
                        -ELOOP, EX_DATAERR,
                        "refusing %s/%s: it is or leads through a symlink inside the store, which the "
                        "agent never follows (remove the symlink or fix the store)",
                        s->location, name);
        errno = -r;
        return err_setf(r, "cannot %s %s/%s: %m", action, s->location, name);
}

static int local_writer_open(Store *s, const char *name, StoreWriter **ret) {
        _cleanup_close_ int dir_fd = -EBADF, fd = -EBADF;
        _cleanup_free_ char *tmp = NULL;
        const char *base;
        LocalWriter *w;
        int r;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        dir_fd = open_parent_beneath(local_root_fd(s), name, 0750, &base);
        if (dir_fd < 0)
                return local_fail(s, name, dir_fd, "create the directory of");
        for (unsigned i = 0; fd < 0 && i < TMP_ATTEMPTS; i++) {
                uint32_t rnd;

                if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                        rnd = (uint32_t) now_usec(CLOCK_MONOTONIC) ^ ((uint32_t) getpid() << 16) ^ i;
                free(tmp);
                tmp = xasprintf(".%s" TMP_MARKER "%08" PRIx32, base, rnd);
                fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
                if (fd < 0 && errno != EEXIST)
                        return err_setf(-errno, "cannot create %s/%s: %m (is the store writable?)",
                                        s->location, name);
        }
        if (fd < 0)
                return err_setf(-EEXIST, "cannot create a temporary file for %s/%s: all names taken",
                                s->location, name);
        (void) fchmod(fd, 0640);

        w = xcalloc(1, sizeof *w);
        w->w = (StoreWriter){ .store = s, .name = xstrdup(name) };
        w->base = xstrdup(base);
        w->tmp = TAKE_PTR(tmp);
        w->dir_fd = TAKE_FD(dir_fd);
        w->fd = TAKE_FD(fd);
        *ret = &w->w;
        return 0;
}

static int local_writer_write(StoreWriter *sw, const void *buf, size_t n) {
        LocalWriter *w = (LocalWriter *) sw;
        int r = write_full(w->fd, buf, n);
        if (r < 0)
                return err_setf(r, "cannot write %s/%s: %m", sw->store->location, sw->name);
        return 0;
}

static int local_writer_commit(StoreWriter *sw) {
        LocalWriter *w = (LocalWriter *) sw;

        if (fsync(w->fd) < 0)
                return err_setf(-errno, "cannot write %s/%s: fsync: %m", sw->store->location, sw->name);
        /* renameat() replaces the entry itself, never what a symlink there points to. */
        if (renameat(w->dir_fd, w->tmp, w->dir_fd, w->base) < 0)
                return err_setf(-errno, "cannot rename %s to %s/%s: %m", w->tmp, sw->store->location,
                                sw->name);
        w->committed = true;
        if (fsync(w->dir_fd) < 0)
                return err_setf(-errno, "cannot sync the directory of %s/%s: %m", sw->store->location,
                                sw->name);
        return 0;
}

static void local_writer_free(StoreWriter *sw) {
        LocalWriter *w = (LocalWriter *) sw;

        if (w->fd >= 0)
                close(w->fd);
        if (!w->committed)
                (void) unlinkat(w->dir_fd, w->tmp, 0);
        if (w->dir_fd >= 0)
                close(w->dir_fd);
        free(w->base);
        free(w->tmp);
        free(w->w.name);
        free(w);
}

static int local_reader_open(Store *s, const char *name, uint64_t offset, StoreReader **ret) {
        _cleanup_close_ int fd = -EBADF;
        LocalReader *rd;
        struct stat st;
        int r;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        /* O_NONBLOCK: a FIFO planted in the store must not hang the open; regular files ignore it. */
        fd = open_beneath(local_root_fd(s), name, O_RDONLY | O_NONBLOCK, 0);
        if (fd < 0)
                return local_fail(s, name, fd, "open");
        if (fstat(fd, &st) < 0)
                return err_setf(-errno, "cannot stat %s/%s: %m", s->location, name);
        if (!S_ISREG(st.st_mode))
                return err_set(S_ISDIR(st.st_mode) ? -EISDIR : -EBADF, EX_DATAERR,
                               "cannot read %s/%s: not a regular file (fix the store)", s->location, name);
        if (fcntl(fd, F_SETFL, 0) < 0)
                return err_setf(-errno, "cannot open %s/%s: %m", s->location, name);
        if (offset > 0 && lseek(fd, (off_t) offset, SEEK_SET) < 0)
                return err_setf(-errno, "cannot seek in %s/%s: %m", s->location, name);
        (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        rd = xcalloc(1, sizeof *rd);
        rd->r = (StoreReader){ .store = s, .name = xstrdup(name) };
        rd->fd = TAKE_FD(fd);
        *ret = &rd->r;
        return 0;
}

static ssize_t local_reader_read(StoreReader *sr, void *buf, size_t n) {
        LocalReader *rd = (LocalReader *) sr;
        for (;;) {
                ssize_t k = read(rd->fd, buf, n);
                if (k >= 0)
                        return k;
                if (errno != EINTR)
                        return err_setf(-errno, "cannot read %s/%s: %m", sr->store->location, sr->name);
        }
}

static void local_reader_free(StoreReader *sr) {
        LocalReader *rd = (LocalReader *) sr;
        if (rd->fd >= 0)
                close(rd->fd);
        free(rd->r.name);
        free(rd);
}

/* Directory entries sorted so that the recursive walk yields names in byte order of the full path:
 * a directory "a" sorts as "a/", so "a-b" (0x2d) comes before "a/x" (0x2f). */
typedef struct DirItem {
        char *key; /* name, plus '/' for directories */
        bool dir;
        uint64_t size;
        uint64_t mtime_usec;
} DirItem;

static int dir_item_cmp(const void *a, const void *b) {
        return strcmp(((const DirItem *) a)->key, ((const DirItem *) b)->key);
}

/* Opens the directory rel ("" for the top) below the store for reading its entries. Symlinks are never
 * descended into: they are skipped where they are found, and one swapped in meanwhile fails the open. */
static int local_opendir(Store *s, const char *rel, DIR **ret) {
        int fd = open_beneath(local_root_fd(s), rel, O_RDONLY | O_DIRECTORY, 0);
        DIR *d;

        if (fd < 0)
                return fd;
        d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = d;
        return 0;
}

static int local_walk(Store *s, const char *rel, const char *prefix, StoreListFunc f, void *userdata) {
        _cleanup_free_ DirItem *items = NULL;
        size_t n = 0, cap = 0;
        DIR *d;
        struct dirent *de;
        int r = 0;

        r = local_opendir(s, rel, &d);
        if (r == -ENOENT)
                return 0; /* gone meanwhile, or no store yet */
        if (r < 0)
                return local_fail(s, isempty(rel) ? "." : rel, r, "list");
        while ((de = readdir(d))) {
                struct stat st;
                bool dir;

                if (de->d_name[0] == '.')
                        continue; /* temp files and . / .. */
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        dir = true;
                else if (S_ISREG(st.st_mode))
                        dir = false;
                else {
                        if (S_ISLNK(st.st_mode))
                                log_debug("Not listing %s/%s%s: a symlink inside the store.", s->location,
                                          rel, de->d_name);
                        continue;
                }
                if (n == cap) {
                        cap = cap ? cap * 2 : 64;
                        items = xrealloc(items, cap * sizeof *items);
                }
                items[n++] = (DirItem){
                        .key = xasprintf("%s%s", de->d_name, dir ? "/" : ""),
                        .dir = dir,
                        .size = (uint64_t) st.st_size,
                        .mtime_usec = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC +
                                      (uint64_t) st.st_mtim.tv_nsec / 1000,
                };
        }
        closedir(d);
        r = 0;
        if (n > 0)
                qsort(items, n, sizeof *items, dir_item_cmp);

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *name = xasprintf("%s%s", rel, items[i].key);
                size_t lp = strlen(prefix), ln = strlen(name);

                if (r != 0)
                        continue; /* stopped: just free the rest */
                /* Descend only where the prefix can still match. */
                if (strncmp(name, prefix, ln < lp ? ln : lp) != 0)
                        continue;
                if (items[i].dir)
                        r = local_walk(s, name, prefix, f, userdata);
                else if (ln >= lp) {
                        StoreEntry e = { .name = name,
                                         .size = items[i].size,
                                         .mtime_usec = items[i].mtime_usec };
                        r = f(&e, userdata);
                }
        }
        for (size_t i = 0; i < n; i++)
                free(items[i].key);
        return r;
}

static int local_list(Store *s, const char *prefix, StoreListFunc f, void *userdata) {
        int r = local_walk(s, "", prefix, f, userdata);
        return r < 0 ? r : 0;
}

/* The entry name itself, not followed: -ELOOP (error set) for a symlink at or on the way to it. */
static int local_lstat(Store *s, const char *name, struct stat *ret, int *ret_dir_fd,
                       const char **ret_base) {
        _cleanup_close_ int dir_fd = -EBADF;
        const char *base;

        dir_fd = open_parent_beneath(local_root_fd(s), name, 0, &base);
        if (dir_fd == -ENOENT || dir_fd == -ENOTDIR)
                return -ENOENT;
        if (dir_fd < 0)
                return local_fail(s, name, dir_fd, "open the directory of");
        if (fstatat(dir_fd, base, ret, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? -ENOENT : local_fail(s, name, -errno, "stat");
        if (S_ISLNK(ret->st_mode))
                return local_fail(s, name, -ELOOP, "stat");
        if (ret_dir_fd)
                *ret_dir_fd = TAKE_FD(dir_fd);
        if (ret_base)
                *ret_base = base;
        return 0;
}

static int local_stat(Store *s, const char *name, StoreEntry *ret) {
        struct stat st;
        int r;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        r = local_lstat(s, name, &st, NULL, NULL);
        if (r < 0)
                return r;
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        *ret = (StoreEntry){ .name = xstrdup(name),
                             .size = (uint64_t) st.st_size,
                             .mtime_usec = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC };
        return 0;
}

static int local_remove(Store *s, const char *name) {
        _cleanup_close_ int dir_fd = -EBADF;
        const char *base;
        struct stat st;
        int r;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        r = local_lstat(s, name, &st, &dir_fd, &base);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        /* Relative to the directory just opened without following links: whatever was swapped in
         * meanwhile, only an entry inside the store goes. */
        if (unlinkat(dir_fd, base, 0) < 0 && errno != ENOENT)
                return err_setf(-errno, "cannot remove %s/%s: %m", s->location, name);
        return 0;
}

static void local_cleanup_dir(Store *s, const char *rel, uint64_t cutoff_usec) {
        struct dirent *de;
        DIR *d;

        if (local_opendir(s, rel, &d) < 0)
                return;
        while ((de = readdir(d))) {
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_free_ char *sub = xasprintf("%s%s/", rel, de->d_name);
                        local_cleanup_dir(s, sub, cutoff_usec);
                } else if (S_ISREG(st.st_mode) && de->d_name[0] == '.' && strstr(de->d_name, TMP_MARKER) &&
                           (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC <= cutoff_usec) {
                        if (unlinkat(dirfd(d), de->d_name, 0) >= 0)
                                log_debug("removed leftover %s/%s%s", s->location, rel, de->d_name);
                }
        }
        closedir(d);
}

static int local_cleanup(Store *s, uint64_t min_age_usec) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        local_cleanup_dir(s, "", now > min_age_usec ? now - min_age_usec : 0);
        return 0;
}

static void local_done(Store *s) {
        LocalStore *l = s->data;

        if (!l)
                return;
        if (l->fd >= 0)
                close(l->fd);
        free(l);
}

static const StoreInterface local_interface = {
        .type = "local",
        .writer_open = local_writer_open,
        .writer_write = local_writer_write,
        .writer_commit = local_writer_commit,
        .writer_free = local_writer_free,
        .reader_open = local_reader_open,
        .reader_read = local_reader_read,
        .reader_free = local_reader_free,
        .list = local_list,
        .stat = local_stat,
        .remove = local_remove,
        .cleanup = local_cleanup,
        .done = local_done,
};

int store_local_open(const char *directory, Store **ret) {
        LocalStore *l;
        int r, fd;

        if (!directory || directory[0] != '/')
                return err_set(-EINVAL, EX_CONFIG, "local store path \"%s\" must be absolute", strempty(directory));
        r = mkdir_p(directory, 0750);
        if (r < 0)
                return err_setf(r, "cannot create store directory %s: %m", directory);
        fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return err_setf(-errno, "cannot open store directory %s: %m", directory);
        l = xcalloc(1, sizeof *l);
        l->fd = fd;
        *ret = store_new(&local_interface, directory, l);
        return 0;
}
