/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sysexits.h>

#include "log/log.h"
#include "sys/fs.h"
#include "sys/walk.h"

typedef struct Run {
        FILE *f;
        char *head;
        size_t head_cap;
        bool done;
} Run;

struct DirList {
        char *arena; /* grows up to memory: most directories hold a few names, and a fixed arena of the
                      * full size per directory costs an mmap() and munmap() each */
        size_t arena_len, arena_cap;
        size_t *offs;
        size_t n, cap, next;
        size_t memory;
        Run *runs;
        size_t n_runs;
        const char *tmp_dir;
        bool merging;
        char last[NAME_MAX + 2];
};

static int arena_cmp(const void *a, const void *b, void *arena) {
        return strcmp((const char *) arena + *(const size_t *) a,
                      (const char *) arena + *(const size_t *) b);
}

static void batch_sort(DirList *l) {
        if (l->n > 1)
                qsort_r(l->offs, l->n, sizeof *l->offs, arena_cmp, l->arena);
}

static int run_advance(Run *r) {
        ssize_t k = getdelim(&r->head, &r->head_cap, 0, r->f);

        if (k < 0) {
                if (ferror(r->f))
                        return -EIO;
                r->done = true;
        }
        return 0;
}

/* The sorted batch goes into a new run, and the arena is free again. */
static int batch_spill(DirList *l) {
        _cleanup_close_ int fd = -EBADF;
        FILE *f;

        fd = open(l->tmp_dir ?: "/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT,
                               "cannot create a temporary file in %s to sort a large directory: %m (set "
                               "work_dir in [agent] to a writable directory)",
                               l->tmp_dir ?: "/var/tmp");
        f = fdopen(fd, "w+");
        if (!f)
                return -errno;
        TAKE_FD(fd);
        batch_sort(l);
        for (size_t i = 0; i < l->n; i++) {
                const char *s = l->arena + l->offs[i];
                if (fwrite(s, 1, strlen(s) + 1, f) != strlen(s) + 1) {
                        fclose(f);
                        return err_set(-EIO, EX_IOERR, "cannot write a temporary file in %s", l->tmp_dir);
                }
        }
        if (fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0) {
                fclose(f);
                return err_set(-EIO, EX_IOERR, "cannot write a temporary file in %s", l->tmp_dir);
        }
        l->runs = xrealloc(l->runs, (l->n_runs + 1) * sizeof *l->runs);
        l->runs[l->n_runs++] = (Run){ .f = f };
        l->n = 0;
        l->arena_len = 0;
        return 0;
}

static void batch_add(DirList *l, const char *name) {
        size_t k = strlen(name) + 1;

        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 64;
                l->offs = xrealloc(l->offs, l->cap * sizeof *l->offs);
        }
        if (l->arena_len + k > l->arena_cap) {
                l->arena_cap = MIN(MAX(l->arena_cap * 2, MAX((size_t) 16384, k)), l->memory + 4096);
                l->arena = xrealloc(l->arena, l->arena_cap);
        }
        memcpy(l->arena + l->arena_len, name, k);
        l->offs[l->n++] = l->arena_len;
        l->arena_len += k;
}

void dir_list_free(DirList *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n_runs; i++) {
                if (l->runs[i].f)
                        fclose(l->runs[i].f);
                free(l->runs[i].head);
        }
        free(l->runs);
        free(l->arena);
        free(l->offs);
        free(l);
}

int dir_list_open(int dir_fd, const char *tmp_dir, size_t memory, DirList **ret) {
        _cleanup_(dir_list_freep) DirList *l = xcalloc(1, sizeof *l);
        DIR *d;
        int fd, r = 0;

        l->memory = MAX(memory, (size_t) 256); /* room for at least one name */
        l->tmp_dir = tmp_dir;
        fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                return r;
        }
        for (;;) {
                struct dirent *de;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        r = -errno;
                        break;
                }
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (l->arena_len + strlen(de->d_name) + 1 > l->memory) {
                        r = batch_spill(l);
                        if (r < 0)
                                break;
                }
                batch_add(l, de->d_name);
        }
        closedir(d);
        if (r < 0)
                return r;
        if (l->n_runs > 0) {
                /* The last batch becomes a run too; from here on only the runs' heads are in memory. */
                if (l->n > 0) {
                        r = batch_spill(l);
                        if (r < 0)
                                return r;
                }
                free(l->arena);
                l->arena = NULL;
                l->arena_cap = 0;
                for (size_t i = 0; i < l->n_runs; i++) {
                        r = run_advance(&l->runs[i]);
                        if (r < 0)
                                return r;
                }
                l->merging = true;
        } else
                batch_sort(l);
        *ret = TAKE_PTR(l);
        return 0;
}

int dir_list_next(DirList *l, const char **ret) {
        Run *best = NULL;
        int r;

        if (!l->merging) {
                if (l->next >= l->n)
                        return 0;
                *ret = l->arena + l->offs[l->next++];
                return 1;
        }
        for (size_t i = 0; i < l->n_runs; i++)
                if (!l->runs[i].done && (!best || strcmp(l->runs[i].head, best->head) < 0))
                        best = &l->runs[i];
        if (!best)
                return 0;
        /* The head is replaced by the advance; hand out a copy. */
        snprintf(l->last, sizeof l->last, "%s", best->head);
        r = run_advance(best);
        if (r < 0)
                return r;
        *ret = l->last;
        return 1;
}

size_t dir_list_runs(const DirList *l) {
        return l->n_runs;
}

typedef struct Walker {
        const char *root_path;
        const char *tmp_dir;
        WalkFunc f;
        void *userdata;
        char *path;
        size_t path_len, path_cap;
} Walker;

static void path_push(Walker *w, const char *name, size_t *ret_saved) {
        size_t k = strlen(name), need = w->path_len + k + 2;

        *ret_saved = w->path_len;
        if (need > w->path_cap) {
                w->path_cap = need * 2;
                w->path = xrealloc(w->path, w->path_cap);
        }
        if (w->path_len > 0)
                w->path[w->path_len++] = '/';
        memcpy(w->path + w->path_len, name, k + 1);
        w->path_len += k;
}

static int walk_dir(Walker *w, int dir_fd, unsigned depth) {
        _cleanup_(dir_list_freep) DirList *l = NULL;
        const char *name;
        int r;

        if (depth > WALK_DEPTH_MAX)
                return err_set(-ELOOP, EX_DATAERR, "%s/%s is nested more than %d directories deep",
                               w->root_path, w->path, WALK_DEPTH_MAX);
        r = dir_list_open(dir_fd, w->tmp_dir, WALK_DIR_MEMORY, &l);
        if (r == -ENOENT)
                return 0; /* removed while we walked */
        if (r < 0)
                return err_message() ? r
                                     : err_set(r, EX_NOINPUT, "cannot list directory %s/%s: %s",
                                               w->root_path, w->path, strerror(-r));
        while ((r = dir_list_next(l, &name)) > 0) {
                WalkEntry e = { .name = name, .parent_fd = dir_fd };
                size_t saved;

                if (cancel_requested())
                        return err_set(-ECANCELED, EX_TEMPFAIL, "cancelled");
                if (fstatat(dir_fd, name, &e.st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT) {
                                path_push(w, name, &saved);
                                e.path = w->path;
                                e.vanished = true;
                                r = w->f(&e, w->userdata);
                                w->path_len = saved;
                                w->path[saved] = 0;
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        path_push(w, name, &saved);
                        r = err_set(-errno, EX_NOINPUT, "cannot read %s/%s: %m", w->root_path, w->path);
                        return r;
                }
                path_push(w, name, &saved);
                e.path = w->path;
                r = w->f(&e, w->userdata);
                if (r < 0)
                        return r;
                if (r == 0 && S_ISDIR(e.st.st_mode)) {
                        _cleanup_close_ int fd =
                                openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0 && errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
                                return err_set(-errno, EX_NOINPUT, "cannot open directory %s/%s: %m",
                                               w->root_path, w->path);
                        if (fd >= 0) {
                                r = walk_dir(w, fd, depth + 1);
                                if (r < 0)
                                        return r;
                        }
                }
                w->path_len = saved;
                w->path[saved] = 0;
        }
        if (r < 0)
                return err_set(r, EX_IOERR, "cannot list directory %s/%s: %s", w->root_path, w->path,
                               strerror(-r));
        return 0;
}

int walk_tree(int root_fd, const char *root_path, const char *tmp_dir, WalkFunc f, void *userdata) {
        Walker w = { .root_path = root_path, .tmp_dir = tmp_dir, .f = f, .userdata = userdata };
        WalkEntry e = { .path = "", .name = ".", .parent_fd = root_fd };
        int r;

        w.path_cap = 256;
        w.path = xcalloc(1, w.path_cap);
        if (fstat(root_fd, &e.st) < 0)
                r = err_set(-errno, EX_NOINPUT, "cannot read %s: %m", root_path);
        else {
                r = f(&e, userdata);
                if (r == 0)
                        r = walk_dir(&w, root_fd, 0);
                else if (r > 0)
                        r = 0;
        }
        free(w.path);
        return r;
}

static int remove_children(int dir_fd, unsigned depth) {
        _cleanup_(dir_list_freep) DirList *l = NULL;
        const char *name;
        int r;

        if (depth > WALK_DEPTH_MAX)
                return -ELOOP;
        r = dir_list_open(dir_fd, NULL, 64 * 1024, &l);
        if (r < 0)
                return r;
        while ((r = dir_list_next(l, &name)) > 0) {
                struct stat st;

                if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return -errno;
                }
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int fd =
                                openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd < 0)
                                return -errno;
                        r = remove_children(fd, depth + 1);
                        if (r < 0)
                                return r;
                        if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                                return -errno;
                } else if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                        return -errno;
        }
        return r;
}

int remove_tree_beneath(int root_fd, const char *path) {
        _cleanup_close_ int parent = -EBADF, fd = -EBADF;
        const char *base;
        struct stat st;
        int r;

        parent = open_parent_beneath(root_fd, path, 0, &base);
        if (parent == -ENOENT || parent == -ENOTDIR)
                return 0;
        if (parent < 0)
                return parent;
        if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(parent, base, 0) < 0 && errno != ENOENT ? -errno : 0;
        fd = openat(parent, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = remove_children(fd, 0);
        if (r < 0)
                return r;
        return unlinkat(parent, base, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}
