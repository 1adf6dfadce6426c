/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
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
        bool has_attrs;
        StoreAttrs attrs; /* kept with the file at commit */
} LocalWriter;

typedef struct LocalReader {
        StoreReader r;
        int fd;
        uint64_t left; /* UINT64_MAX: to the end */
        StoreAttrs attrs;
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
                if (fd < 0 && errno == EROFS) {
                        _cleanup_free_ char *hint = read_only_hint(-EROFS, s->location);
                        return err_setf(-EROFS, "cannot create %s/%s: %m%s", s->location, name, hint);
                }
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

static int local_keep_attrs(StoreWriter *sw, int fd, const StoreAttrs *a);

static int local_writer_commit(StoreWriter *sw) {
        LocalWriter *w = (LocalWriter *) sw;
        int r;

        if (w->has_attrs) {
                r = local_keep_attrs(sw, w->fd, &w->attrs);
                if (r < 0)
                        return r;
        }
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
        store_attrs_done(&w->attrs);
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
        rd->left = UINT64_MAX;
        *ret = &rd->r;
        return 0;
}

static ssize_t local_reader_read(StoreReader *sr, void *buf, size_t n) {
        LocalReader *rd = (LocalReader *) sr;

        if (rd->left != UINT64_MAX)
                n = (size_t) MIN((uint64_t) n, rd->left);
        if (n == 0)
                return 0;
        for (;;) {
                ssize_t k = read(rd->fd, buf, n);
                if (k >= 0) {
                        if (rd->left != UINT64_MAX)
                                rd->left -= (uint64_t) k;
                        return k;
                }
                if (errno != EINTR)
                        return err_setf(-errno, "cannot read %s/%s: %m", sr->store->location, sr->name);
        }
}

static void local_reader_free(StoreReader *sr) {
        LocalReader *rd = (LocalReader *) sr;
        if (rd->fd >= 0)
                close(rd->fd);
        store_attrs_done(&rd->attrs);
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

static int strcmp_ptr(const char *const *a, const char *const *b) {
        return strcmp(*a, *b);
}

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

/* The object a temporary file ".BASE.tmp.XXXXXXXX" was to become, or NULL when the name is not one. */
static char *local_tmp_object(const char *rel, const char *tmp) {
        size_t n = strlen(tmp), m = sizeof TMP_MARKER - 1;

        if (n < 1 + 1 + m + 8 || tmp[0] != '.' || memcmp(tmp + n - 8 - m, TMP_MARKER, m) != 0)
                return NULL;
        for (size_t i = n - 8; i < n; i++)
                if (!strchr("0123456789abcdef", tmp[i]))
                        return NULL;
        return xasprintf("%s%.*s", rel, (int) (n - 1 - 8 - m), tmp + 1);
}

typedef struct LocalCleanup {
        uint64_t cutoff_usec;
        StoreLeftoverFilter filter;
        void *userdata;
} LocalCleanup;

static void local_cleanup_dir(Store *s, const char *rel, const LocalCleanup *lc) {
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
                        local_cleanup_dir(s, sub, lc);
                } else if (S_ISREG(st.st_mode) &&
                           (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC <= lc->cutoff_usec) {
                        _cleanup_free_ char *object = local_tmp_object(rel, de->d_name);

                        if (!object || (lc->filter && !lc->filter(object, lc->userdata)))
                                continue;
                        if (unlinkat(dirfd(d), de->d_name, 0) >= 0)
                                log_debug("removed leftover %s/%s%s", s->location, rel, de->d_name);
                }
        }
        closedir(d);
}

static int local_cleanup(Store *s, uint64_t min_age_usec, StoreLeftoverFilter filter, void *userdata) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        LocalCleanup lc = { .cutoff_usec = now > min_age_usec ? now - min_age_usec : 0,
                            .filter = filter,
                            .userdata = userdata };

        local_cleanup_dir(s, "", &lc);
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

/* ---- attributes, listing page by page, copies (the mirror) ---- */

/* A file has no ETag, headers or user metadata of its own: what a writer was given is kept in extended
 * attributes, so that a copy lists with the ETag of the object it was made from (a resync compares without
 * reading anything) and can be copied back with every header. A file system without them (vfat, some NFS)
 * keeps the bytes and the modification time only. */
#define XATTR_PREFIX "user.skyforge."
#define XATTR_ETAG XATTR_PREFIX "etag"
#define XATTR_META XATTR_PREFIX "meta."
#define XATTR_VALUE_MAX 4096U

static const struct {
        const char *name;
        size_t offset;
} header_xattrs[] = {
        { XATTR_PREFIX "content-type", offsetof(StoreAttrs, content_type) },
        { XATTR_PREFIX "cache-control", offsetof(StoreAttrs, cache_control) },
        { XATTR_PREFIX "content-disposition", offsetof(StoreAttrs, content_disposition) },
        { XATTR_PREFIX "content-encoding", offsetof(StoreAttrs, content_encoding) },
        { XATTR_PREFIX "content-language", offsetof(StoreAttrs, content_language) },
        { XATTR_PREFIX "expires", offsetof(StoreAttrs, expires) },
};

static bool xattr_unsupported(int error) {
        return error == ENOTSUP || error == EOPNOTSUPP || error == ENOSYS;
}

static int xattr_set(StoreWriter *sw, int fd, const char *name, const char *value) {
        if (fsetxattr(fd, name, value, strlen(value), 0) >= 0)
                return 0;
        if (xattr_unsupported(errno)) {
                log_debug("%s keeps no extended attributes (%m): %s/%s is kept without its %s.",
                          sw->store->location, sw->store->location, sw->name, name);
                return 0;
        }
        return err_setf(-errno, "cannot keep %s with %s/%s: %m (is the file system full?)", name,
                        sw->store->location, sw->name);
}

static int local_keep_attrs(StoreWriter *sw, int fd, const StoreAttrs *a) {
        int r;

        if (a->etag) {
                r = xattr_set(sw, fd, XATTR_ETAG, a->etag);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(header_xattrs); i++) {
                const char *v = *(char *const *) ((const uint8_t *) a + header_xattrs[i].offset);
                if (v && (r = xattr_set(sw, fd, header_xattrs[i].name, v)) < 0)
                        return r;
        }
        for (size_t i = 0; a->metadata && a->metadata[i] && a->metadata[i + 1]; i += 2) {
                _cleanup_free_ char *name = xasprintf(XATTR_META "%s", a->metadata[i]);
                r = xattr_set(sw, fd, name, a->metadata[i + 1]);
                if (r < 0)
                        return r;
        }
        /* The source's time: a copy without extended attributes still compares by size and time. */
        if (a->mtime_usec > 0) {
                struct timespec ts[2] = {
                        { .tv_nsec = UTIME_OMIT },
                        { .tv_sec = (time_t) (a->mtime_usec / USEC_PER_SEC),
                          .tv_nsec = (long) (a->mtime_usec % USEC_PER_SEC) * 1000 },
                };
                if (futimens(fd, ts) < 0)
                        return err_setf(-errno, "cannot set the time of %s/%s: %m", sw->store->location,
                                        sw->name);
        }
        return 0;
}

static char *xattr_get_fd(int fd, const char *name) {
        char buf[XATTR_VALUE_MAX + 1];
        ssize_t n = fgetxattr(fd, name, buf, XATTR_VALUE_MAX);

        if (n < 0)
                return NULL;
        return xstrndup(buf, (size_t) n);
}

static uint64_t stat_mtime_usec(const struct stat *st) {
        return (uint64_t) st->st_mtim.tv_sec * USEC_PER_SEC + (uint64_t) st->st_mtim.tv_nsec / 1000;
}

/* The attributes of an open regular file. */
static int local_fd_attrs(Store *s, const char *name, int fd, StoreAttrs *ret) {
        _cleanup_(store_attrs_done) StoreAttrs a = {};
        _cleanup_free_ char *list = NULL;
        struct stat st;
        ssize_t n;

        if (fstat(fd, &st) < 0)
                return err_setf(-errno, "cannot stat %s/%s: %m", s->location, name);
        a.size = (uint64_t) st.st_size;
        a.mtime_usec = stat_mtime_usec(&st);
        a.etag = xattr_get_fd(fd, XATTR_ETAG);
        for (size_t i = 0; i < ELEMENTSOF(header_xattrs); i++)
                *(char **) ((uint8_t *) &a + header_xattrs[i].offset) = xattr_get_fd(fd, header_xattrs[i].name);
        n = flistxattr(fd, NULL, 0);
        if (n > 0) {
                list = xmalloc((size_t) n + 1);
                n = flistxattr(fd, list, (size_t) n);
        }
        for (ssize_t i = 0; list && n > 0 && i < n; i += (ssize_t) strlen(list + i) + 1) {
                const char *m = startswith(list + i, XATTR_META);
                char *v;
                if (isempty(m) || !(v = xattr_get_fd(fd, list + i)))
                        continue;
                strv_push(&a.metadata, xstrdup(m));
                strv_push(&a.metadata, v);
        }
        *ret = a;
        a = (StoreAttrs){};
        return 0;
}

static int local_writer_open_with(Store *s, const char *name, const StoreWriteOptions *o, StoreWriter **ret) {
        StoreWriter *sw;
        int r;

        r = local_writer_open(s, name, &sw);
        if (r < 0)
                return r;
        if (o && o->attrs) {
                LocalWriter *w = (LocalWriter *) sw;
                store_attrs_copy(&w->attrs, o->attrs);
                w->has_attrs = true;
        }
        *ret = sw;
        return 0;
}

static int local_reader_open_with(Store *s, const char *name, const StoreReadOptions *o, StoreReader **ret) {
        StoreReader *sr;
        LocalReader *rd;
        int r;

        r = local_reader_open(s, name, o ? o->offset : 0, &sr);
        if (r < 0)
                return r;
        rd = (LocalReader *) sr;
        rd->left = o ? o->length : UINT64_MAX;
        r = local_fd_attrs(s, name, rd->fd, &rd->attrs);
        if (r < 0) {
                local_reader_free(sr);
                return r;
        }
        *ret = sr;
        return 0;
}

static int local_reader_attrs(StoreReader *sr, const StoreAttrs **ret) {
        *ret = &((LocalReader *) sr)->attrs;
        return 0;
}

static int local_stat_attrs(Store *s, const char *name, StoreAttrs *ret) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (local_check_name(s, name) < 0)
                return -ENOENT; /* a name this store cannot hold is not in it */
        fd = open_beneath(local_root_fd(s), name, O_RDONLY | O_NONBLOCK, 0);
        if (fd == -ENOENT || fd == -ENOTDIR)
                return -ENOENT;
        if (fd < 0)
                return local_fail(s, name, fd, "open");
        if (fstat(fd, &st) < 0)
                return err_setf(-errno, "cannot stat %s/%s: %m", s->location, name);
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        return local_fd_attrs(s, name, fd, ret);
}

/* Each segment leaves room for the temporary file's name next to it. */
#define LOCAL_SEGMENT_MAX (NAME_MAX - 1 - (sizeof TMP_MARKER - 1) - 8)

static bool local_name_valid_store(Store *s, const char *name) {
        if (!local_name_valid(name))
                return false;
        if (strlen(s->location) + 1 + strlen(name) >= PATH_MAX)
                return false;
        for (const char *p = name; *p;) {
                size_t k = strcspn(p, "/");
                if (k > LOCAL_SEGMENT_MAX)
                        return false;
                p += k + (p[k] == '/');
        }
        return true;
}

static int local_remove_many(Store *s, char *const *names, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = local_remove(s, names[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The listing as an iterator: one frame per directory level being walked, each holding that directory's
 * entries sorted (a directory "a" as "a/", as in local_walk), so memory is the depth times the widest
 * directory, never the whole tree. */
typedef struct LocalFrame {
        char *rel; /* "" or ends in '/' */
        DirItem *items;
        size_t n, pos;
} LocalFrame;

typedef struct LocalLister {
        StoreLister l;
        char *prefix;
        LocalFrame *frames;
        size_t depth, cap;
        bool started;
        StoreEntry cur;
} LocalLister;

static void frame_done(LocalFrame *f) {
        for (size_t i = 0; i < f->n; i++)
                free(f->items[i].key);
        free(f->items);
        free(f->rel);
        *f = (LocalFrame){};
}

/* Reads and sorts one directory; -ENOENT when it is gone. */
static int local_read_dir(Store *s, const char *rel, LocalFrame *ret) {
        LocalFrame f = { .rel = xstrdup(rel) };
        size_t cap = 0;
        struct dirent *de;
        DIR *d;
        int r;

        r = local_opendir(s, rel, &d);
        if (r < 0) {
                free(f.rel);
                return r;
        }
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
                else
                        continue;
                if (f.n == cap) {
                        cap = cap ? cap * 2 : 64;
                        f.items = xrealloc(f.items, cap * sizeof *f.items);
                }
                f.items[f.n++] = (DirItem){ .key = xasprintf("%s%s", de->d_name, dir ? "/" : ""),
                                            .dir = dir,
                                            .size = (uint64_t) st.st_size,
                                            .mtime_usec = stat_mtime_usec(&st) };
        }
        closedir(d);
        if (f.n > 0)
                qsort(f.items, f.n, sizeof *f.items, dir_item_cmp);
        *ret = f;
        return 0;
}

static int local_lister_push(LocalLister *l, const char *rel) {
        LocalFrame f;
        int r = local_read_dir(l->l.store, rel, &f);

        if (r < 0)
                return r;
        if (l->depth == l->cap) {
                l->cap = MAX(l->cap * 2, (size_t) 8);
                l->frames = xrealloc(l->frames, l->cap * sizeof *l->frames);
        }
        l->frames[l->depth++] = f;
        return 0;
}

static int local_lister_open(Store *s, const char *prefix, StoreLister **ret) {
        LocalLister *l = xcalloc(1, sizeof *l);

        l->l.store = s;
        l->prefix = xstrdup(strempty(prefix));
        *ret = &l->l;
        return 0;
}

static char *local_etag_at(Store *s, const char *name) {
        _cleanup_free_ char *path = xasprintf("/proc/self/fd/%i/%s", local_root_fd(s), name);
        char buf[XATTR_VALUE_MAX + 1];
        /* Not through a symlink at the end; the directories on the way were just walked without any. */
        ssize_t n = lgetxattr(path, XATTR_ETAG, buf, XATTR_VALUE_MAX);

        return n >= 0 ? xstrndup(buf, (size_t) n) : NULL;
}

static int local_lister_next(StoreLister *sl, const StoreEntry **ret) {
        LocalLister *l = (LocalLister *) sl;
        Store *s = sl->store;
        int r;

        if (!l->started) {
                l->started = true;
                r = local_lister_push(l, "");
                if (r == -ENOENT)
                        return err_set(-ENOENT, EX_NOINPUT, "directory %s does not exist", s->location);
                if (r < 0)
                        return local_fail(s, ".", r, "list");
        }
        store_entry_done(&l->cur);
        while (l->depth > 0) {
                LocalFrame *f = &l->frames[l->depth - 1];
                _cleanup_free_ char *name = NULL;
                size_t lp = strlen(l->prefix), ln;
                DirItem *it;

                if (f->pos >= f->n) {
                        frame_done(f);
                        l->depth--;
                        continue;
                }
                it = &f->items[f->pos++];
                name = xasprintf("%s%s", f->rel, it->key);
                ln = strlen(name);
                /* Descend only where the prefix can still match. */
                if (strncmp(name, l->prefix, MIN(ln, lp)) != 0)
                        continue;
                if (it->dir) {
                        r = local_lister_push(l, name);
                        if (r == -ENOENT)
                                continue; /* gone meanwhile */
                        if (r < 0)
                                return local_fail(s, name, r, "list");
                        continue;
                }
                if (ln < lp)
                        continue;
                l->cur = (StoreEntry){ .name = TAKE_PTR(name), .size = it->size, .mtime_usec = it->mtime_usec };
                l->cur.etag = local_etag_at(s, l->cur.name);
                *ret = &l->cur;
                return 1;
        }
        return 0;
}

static void local_lister_free(StoreLister *sl) {
        LocalLister *l = (LocalLister *) sl;

        for (size_t i = 0; i < l->depth; i++)
                frame_done(&l->frames[i]);
        free(l->frames);
        free(l->prefix);
        store_entry_done(&l->cur);
        free(l);
}

static int local_open(const char *directory, bool create, Store **ret);

static int local_clone(Store *s, Store **ret) {
        return local_open(s->location, false, ret);
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
        .writer_open_with = local_writer_open_with,
        .reader_open_with = local_reader_open_with,
        .reader_attrs = local_reader_attrs,
        .lister_open = local_lister_open,
        .lister_next = local_lister_next,
        .lister_free = local_lister_free,
        .stat_attrs = local_stat_attrs,
        .remove_many = local_remove_many,
        .name_valid = local_name_valid_store,
        .clone = local_clone,
};

static int local_open(const char *directory, bool create, Store **ret) {
        LocalStore *l;
        int r, fd;

        if (!directory || directory[0] != '/')
                return err_set(-EINVAL, EX_CONFIG, "local store path \"%s\" must be absolute", strempty(directory));
        if (create) {
                r = mkdir_p(directory, 0750);
                if (r < 0) {
                        _cleanup_free_ char *hint = read_only_hint(r, directory);
                        return err_setf(r, "cannot create store directory %s: %m%s", directory, hint);
                }
        }
        fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return err_set(-errno, errno == ENOENT ? EX_NOINPUT : 0, "cannot open store directory %s: %m",
                               directory);
        l = xcalloc(1, sizeof *l);
        l->fd = fd;
        *ret = store_new(&local_interface, directory, l);
        return 0;
}

int store_local_open(const char *directory, Store **ret) {
        return local_open(directory, true, ret);
}

int store_local_open_existing(const char *directory, Store **ret) {
        int r = local_open(directory, false, ret);

        if (r == -ENOENT)
                return err_set(-ENOENT, EX_NOINPUT,
                               "no backups yet: %s does not exist (the first backup run creates it; if "
                               "one has run, check destination = and `skyforge-agent list`)",
                               directory);
        return r;
}

/* ---- a directory whose subdirectories are buckets ---- */

static int local_root_list(StoreRoot *root, char ***ret) {
        _cleanup_strv_free_ char **l = xcalloc(1, sizeof(char *));
        struct dirent *de;
        DIR *d = opendir(root->location);

        if (!d)
                return err_set(-errno, errno == ENOENT ? EX_NOINPUT : EX_IOERR, "cannot list directory %s: %m",
                               root->location);
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                strv_push(&l, xstrdup(de->d_name));
        }
        closedir(d);
        qsort(l, strv_length(l), sizeof(char *), (int (*)(const void *, const void *)) strcmp_ptr);
        *ret = TAKE_PTR(l);
        return 0;
}

static int local_root_open(StoreRoot *root, const char *bucket, bool for_write, Store **ret) {
        _cleanup_free_ char *path = NULL;

        if (isempty(bucket) || strchr(bucket, '/') || bucket[0] == '.')
                return err_set(-EINVAL, EX_DATAERR, "\"%s\" cannot be a directory of %s", bucket,
                               root->location);
        path = path_join(root->location, bucket);
        return local_open(path, for_write, ret);
}

static char *local_root_describe(StoreRoot *root, const char *bucket) {
        return xasprintf("directory \"%s\" of %s", bucket, root->location);
}

static const StoreRootInterface local_root_interface = {
        .list_buckets = local_root_list,
        .open_bucket = local_root_open,
        .describe_bucket = local_root_describe,
};

int store_root_local_open(const char *directory, StoreRoot **ret) {
        _cleanup_free_ char *what = NULL;

        if (!directory || directory[0] != '/')
                return err_set(-EINVAL, EX_CONFIG, "local path \"%s\" must be absolute", strempty(directory));
        what = xasprintf("directory %s", directory);
        *ret = store_root_new(&local_root_interface, directory, what, NULL);
        return 0;
}
