/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <sys/types.h>

#include "shared/util.h"

/* Opening names below a directory fd without ever following a symlink or leaving that directory, for
 * trees whose contents we do not trust (a local store, an archive being extracted). openat2() with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS where the kernel has it (Linux 5.6),
 * otherwise one openat(O_NOFOLLOW) per component. Paths are relative, '/'-separated; empty and "."
 * components are skipped.
 *
 * Errors: -ELOOP when a component (the last one included) is a symlink, -EXDEV for an absolute path or a
 * ".." component, otherwise what openat() says (-ENOENT, -ENOTDIR, ...). */

/* Opens path below dir_fd, with O_CLOEXEC added; O_PATH is not supported. */
int open_beneath(int dir_fd, const char *path, int flags, mode_t mode);

/* Opens the directory that holds path's last component, below dir_fd; missing directories on the way are
 * created with mkdir_mode unless it is 0. *ret_base points into path, at the last component (never
 * empty, ".", or ".."). */
int open_parent_beneath(int dir_fd, const char *path, mode_t mkdir_mode, const char **ret_base);

/* Tests: false makes every call take the openat(O_NOFOLLOW) walk, as on kernels without openat2(). */
void fs_use_openat2(bool use);
