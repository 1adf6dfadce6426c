/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <sys/stat.h>

#include "shared/util.h"

/* A walk of a directory tree in sorted order (names in byte order within each directory, a directory's
 * contents right after it), never following symlinks, in bounded memory: it holds the names of one
 * directory per level, and a directory whose names exceed WALK_DIR_MEMORY is sorted in runs spilled to
 * unnamed files in tmp_dir and merged back, so a directory of a million entries costs the same memory as
 * one of a few thousand. */

#define WALK_DIR_MEMORY (2U * 1024 * 1024)
#define WALK_DEPTH_MAX  256

typedef struct WalkEntry {
        const char *path; /* relative to the root, "" for the root itself */
        const char *name; /* the last component ("." for the root) */
        int parent_fd; /* the directory holding it (the root's own fd for the root) */
        struct stat st; /* lstat() */
        bool vanished; /* listed, then gone before its lstat(): st is unset, and nothing is below it */
} WalkEntry;

/* Return < 0 to stop the walk with that error; 1 for a directory not to descend into it. */
typedef int (*WalkFunc)(const WalkEntry *e, void *userdata);

/* Walks below root_fd. An entry that vanishes between the listing of its directory and its lstat() is
 * passed with vanished set (the caller counts or ignores it). Errors reading a directory stop the walk
 * (err_set() names it, below root_path). */
int walk_tree(int root_fd, const char *root_path, const char *tmp_dir, WalkFunc f, void *userdata);

/* The names of one directory (not "." and ".."), sorted by byte order, in bounded memory (see above).
 * Exposed for tests. */
typedef struct DirList DirList;
int dir_list_open(int dir_fd, const char *tmp_dir, size_t memory, DirList **ret);
/* 1 and the next name (valid until the next call), 0 at the end. */
int dir_list_next(DirList *l, const char **ret);
size_t dir_list_runs(const DirList *l);
void dir_list_free(DirList *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(DirList *, dir_list_free);

/* Removes path (relative, below root_fd) and everything below it, never following a symlink nor leaving
 * root_fd. A missing path is no error. */
int remove_tree_beneath(int root_fd, const char *path);
