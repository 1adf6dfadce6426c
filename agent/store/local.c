/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "log/log.h"
#include "store/store.h"

/* The local-directory backend. Objects are files under the directory; a write goes to a hidden temporary
 * file next to its target and becomes visible by rename after fsync, and the directory is fsynced so the
 * rename survives a crash. Hidden files are never listed. */

#define TMP_MARKER ".tmp."

typedef struct LocalWriter {
        StoreWriter w;
        char *path;
        char *tmp;
        int fd;
        bool committed;
} LocalWriter;

typedef struct LocalReader {
        StoreReader r;
        int fd;
} LocalReader;

static const char *local_root(Store *s) {
        return s->data;
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

static int local_writer_open(Store *s, const char *name, StoreWriter **ret) {
        _cleanup_free_ char *path = NULL, *dir = NULL, *tmp = NULL;
        LocalWriter *w;
        char *slash;
        int r, fd;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        path = path_join(local_root(s), name);
        dir = xstrdup(path);
        slash = strrchr(dir, '/');
        *slash = 0;
        r = mkdir_p(dir, 0750);
        if (r < 0)
                return err_setf(r, "cannot create directory %s: %m", dir);
        tmp = xasprintf("%s/.%s" TMP_MARKER "XXXXXX", dir, slash + 1);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return err_setf(-errno, "cannot create %s: %m (is the store writable?)", tmp);
        (void) fchmod(fd, 0640);

        w = xcalloc(1, sizeof *w);
        w->w = (StoreWriter){ .store = s, .name = xstrdup(name) };
        w->path = TAKE_PTR(path);
        w->tmp = TAKE_PTR(tmp);
        w->fd = fd;
        *ret = &w->w;
        return 0;
}

static int local_writer_write(StoreWriter *sw, const void *buf, size_t n) {
        LocalWriter *w = (LocalWriter *) sw;
        int r = write_full(w->fd, buf, n);
        if (r < 0)
                return err_setf(r, "cannot write %s: %m", w->path);
        return 0;
}

static int local_writer_commit(StoreWriter *sw) {
        LocalWriter *w = (LocalWriter *) sw;
        int r;

        if (fsync(w->fd) < 0)
                return err_setf(-errno, "cannot write %s: fsync: %m", w->path);
        if (rename(w->tmp, w->path) < 0)
                return err_setf(-errno, "cannot rename %s to %s: %m", w->tmp, w->path);
        w->committed = true;
        r = fsync_directory_of(w->path);
        if (r < 0)
                return err_setf(r, "cannot sync directory of %s: %m", w->path);
        return 0;
}

static void local_writer_free(StoreWriter *sw) {
        LocalWriter *w = (LocalWriter *) sw;

        if (w->fd >= 0)
                close(w->fd);
        if (!w->committed)
                (void) unlink(w->tmp);
        free(w->path);
        free(w->tmp);
        free(w->w.name);
        free(w);
}

static int local_reader_open(Store *s, const char *name, uint64_t offset, StoreReader **ret) {
        _cleanup_free_ char *path = NULL;
        LocalReader *rd;
        int r, fd;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        path = path_join(local_root(s), name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return err_setf(-errno, "cannot open %s: %m", path);
        if (offset > 0 && lseek(fd, (off_t) offset, SEEK_SET) < 0) {
                r = -errno;
                close(fd);
                return err_setf(r, "cannot seek in %s: %m", path);
        }
        (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        rd = xcalloc(1, sizeof *rd);
        rd->r = (StoreReader){ .store = s, .name = xstrdup(name) };
        rd->fd = fd;
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
} DirItem;

static int dir_item_cmp(const void *a, const void *b) {
        return strcmp(((const DirItem *) a)->key, ((const DirItem *) b)->key);
}

static int local_walk(Store *s, const char *rel, const char *prefix, StoreListFunc f, void *userdata) {
        _cleanup_free_ char *path = path_join(local_root(s), rel);
        _cleanup_free_ DirItem *items = NULL;
        size_t n = 0, cap = 0;
        DIR *d;
        struct dirent *de;
        int r = 0;

        d = opendir(path);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                return err_setf(-errno, "cannot list %s: %m", path);
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
                if (n == cap) {
                        cap = cap ? cap * 2 : 64;
                        items = xrealloc(items, cap * sizeof *items);
                }
                items[n++] = (DirItem){ .key = xasprintf("%s%s", de->d_name, dir ? "/" : ""), .dir = dir };
        }
        closedir(d);
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
                if (items[i].dir) {
                        r = local_walk(s, name, prefix, f, userdata);
                } else if (ln >= lp) {
                        _cleanup_free_ char *full = path_join(local_root(s), name);
                        struct stat st;
                        if (stat(full, &st) < 0)
                                continue;
                        StoreEntry e = { .name = name, .size = (uint64_t) st.st_size,
                                         .mtime_usec = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC +
                                                       (uint64_t) st.st_mtim.tv_nsec / 1000 };
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

static int local_stat(Store *s, const char *name, StoreEntry *ret) {
        _cleanup_free_ char *path = NULL;
        struct stat st;
        int r;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        path = path_join(local_root(s), name);
        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        *ret = (StoreEntry){ .name = xstrdup(name), .size = (uint64_t) st.st_size,
                             .mtime_usec = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC };
        return 0;
}

static int local_remove(Store *s, const char *name) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = local_check_name(s, name);
        if (r < 0)
                return r;
        path = path_join(local_root(s), name);
        if (unlink(path) < 0 && errno != ENOENT)
                return err_setf(-errno, "cannot remove %s: %m", path);
        return 0;
}

static int local_cleanup_dir(const char *path, uint64_t cutoff_usec) {
        DIR *d = opendir(path);
        struct dirent *de;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d))) {
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_free_ char *sub = path_join(path, de->d_name);
                        (void) local_cleanup_dir(sub, cutoff_usec);
                } else if (de->d_name[0] == '.' && strstr(de->d_name, TMP_MARKER) &&
                           (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC <= cutoff_usec) {
                        if (unlinkat(dirfd(d), de->d_name, 0) >= 0)
                                log_debug("removed leftover %s/%s", path, de->d_name);
                }
        }
        closedir(d);
        return 0;
}

static int local_cleanup(Store *s, uint64_t min_age_usec) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        return local_cleanup_dir(local_root(s), now > min_age_usec ? now - min_age_usec : 0);
}

static void local_done(Store *s) {
        free(s->data);
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
        int r;

        if (!directory || directory[0] != '/')
                return err_set(-EINVAL, 78, "local store path \"%s\" must be absolute", strempty(directory));
        r = mkdir_p(directory, 0750);
        if (r < 0)
                return err_setf(r, "cannot create store directory %s: %m", directory);
        *ret = store_new(&local_interface, directory, xstrdup(directory));
        return 0;
}
