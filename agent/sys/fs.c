/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "sys/fs.h"

#define RESOLVE_STRICT (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
/* openat2() answers EAGAIN when a rename elsewhere raced with a RESOLVE_BENEATH lookup. */
#define OPENAT2_RETRIES 16

/* 1: openat2() works, 0: untried, -1: the kernel has none (ENOSYS) or a test turned it off. */
static int openat2_state;

void fs_use_openat2(bool use) {
        __atomic_store_n(&openat2_state, use ? 0 : -1, __ATOMIC_RELAXED);
}

/* Absolute names and ".." are refused before anything is opened, by both ways of opening. */
static int path_check(const char *path) {
        const char *p = path;

        if (!path || path[0] == '/')
                return -EXDEV;
        while (*p) {
                size_t n = strcspn(p, "/");
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return -EXDEV;
                p += n;
                while (*p == '/')
                        p++;
        }
        return 0;
}

/* The fd, or -ENOSYS when the walk has to do it. */
static int try_openat2(int dir_fd, const char *path, int flags, mode_t mode) {
        /* No O_NOFOLLOW: RESOLVE_NO_SYMLINKS covers the last component too, and answers ELOOP where
         * O_NOFOLLOW | O_DIRECTORY would say ENOTDIR. */
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .mode = (flags & O_CREAT) ? mode : 0,
                .resolve = RESOLVE_STRICT,
        };

        if (__atomic_load_n(&openat2_state, __ATOMIC_RELAXED) < 0)
                return -ENOSYS;
        for (unsigned i = 0; i < OPENAT2_RETRIES; i++) {
                long fd = syscall(SYS_openat2, dir_fd, isempty(path) ? "." : path, &how, sizeof how);
                if (fd >= 0) {
                        __atomic_store_n(&openat2_state, 1, __ATOMIC_RELAXED);
                        return (int) fd;
                }
                if (errno == ENOSYS) {
                        __atomic_store_n(&openat2_state, -1, __ATOMIC_RELAXED);
                        return -ENOSYS;
                }
                if (errno != EAGAIN)
                        return -errno;
        }
        return -EAGAIN;
}

/* One component. openat(O_NOFOLLOW) says ELOOP for a symlink, but ENOTDIR with O_DIRECTORY: ask. */
static int open_component(int dir_fd, const char *name, int flags, mode_t mode) {
        struct stat st;
        int fd = openat(dir_fd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode);

        if (fd >= 0)
                return fd;
        fd = -errno;
        if ((fd == -ENOTDIR || fd == -ELOOP) && fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) >= 0 &&
            S_ISLNK(st.st_mode))
                return -ELOOP;
        return fd;
}

/* Walks the first len bytes of path one directory at a time, creating what is missing when mkdir_mode is
 * set. Returns a new fd of the last directory (a duplicate of dir_fd for an empty walk). */
static int walk_directories(int dir_fd, const char *path, size_t len, mode_t mkdir_mode) {
        _cleanup_close_ int cur = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        size_t i = 0;

        if (cur < 0)
                return -errno;
        while (i < len) {
                size_t n = strcspn(path + i, "/");
                _cleanup_free_ char *name = NULL;
                int fd;

                if (n > len - i)
                        n = len - i;
                if (n == 0 || (n == 1 && path[i] == '.')) {
                        i += n + 1;
                        continue;
                }
                name = xstrndup(path + i, n);
                fd = open_component(cur, name, O_RDONLY | O_DIRECTORY, 0);
                if (fd == -ENOENT && mkdir_mode != 0) {
                        if (mkdirat(cur, name, mkdir_mode) < 0 && errno != EEXIST)
                                return -errno;
                        fd = open_component(cur, name, O_RDONLY | O_DIRECTORY, 0);
                }
                if (fd < 0)
                        return fd;
                closep(&cur);
                cur = fd;
                i += n + 1;
        }
        return TAKE_FD(cur);
}

/* The last component of the first len bytes of path, and the length of what comes before it. */
static const char *last_component(const char *path, size_t *len) {
        while (*len > 0 && path[*len - 1] == '/')
                (*len)--;
        size_t start = *len;
        while (start > 0 && path[start - 1] != '/')
                start--;
        const char *base = path + start;
        *len = start;
        return base;
}

int open_beneath(int dir_fd, const char *path, int flags, mode_t mode) {
        _cleanup_close_ int parent = -EBADF;
        _cleanup_free_ char *base = NULL;
        size_t len;
        const char *b;
        int r;

        if (flags & O_PATH)
                return -EINVAL;
        r = path_check(path);
        if (r < 0)
                return r;
        r = try_openat2(dir_fd, path, flags, mode);
        if (r != -ENOSYS)
                return r;

        len = strlen(path);
        b = last_component(path, &len);
        base = xstrndup(b, strcspn(b, "/"));
        if (isempty(base) || streq(base, ".")) {
                /* The directory itself: "." of it is never a symlink. */
                parent = walk_directories(dir_fd, path, strlen(path), 0);
                if (parent < 0)
                        return parent;
                r = openat(parent, ".", flags | O_CLOEXEC, mode);
                return r < 0 ? -errno : r;
        }
        parent = walk_directories(dir_fd, path, len, 0);
        if (parent < 0)
                return parent;
        return open_component(parent, base, flags, mode);
}

int open_parent_beneath(int dir_fd, const char *path, mode_t mkdir_mode, const char **ret_base) {
        _cleanup_free_ char *dir = NULL;
        size_t len;
        const char *base;
        int r;

        r = path_check(path);
        if (r < 0)
                return r;
        len = strlen(path);
        base = last_component(path, &len);
        /* The last component must be a plain name: "a/" or "a/." name no entry in a directory. */
        if (isempty(base) || strchr(base, '/') || streq(base, "."))
                return -EINVAL;
        dir = xstrndup(path, len);
        r = try_openat2(dir_fd, dir, O_RDONLY | O_DIRECTORY, 0);
        if (r == -ENOSYS || (r == -ENOENT && mkdir_mode != 0))
                r = walk_directories(dir_fd, dir, len, mkdir_mode);
        if (r < 0)
                return r;
        *ret_base = base;
        return r;
}
