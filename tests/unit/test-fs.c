/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "sys/fs.h"
#include "fs-modes.h"

/* root/d/f, root/d/up -> .., root/abs -> /etc: every test runs once with openat2() and once with the
 * openat(O_NOFOLLOW) walk. */
typedef struct Tree {
        char root[64];
        int fd;
} Tree;

static int setup(void **state) {
        Tree *t = xcalloc(1, sizeof *t);
        char *p;

        strcpy(t->root, "/tmp/skyforge-test-fs-XXXXXX");
        assert_non_null(mkdtemp(t->root));
        p = xasprintf("mkdir %s/d && echo x > %s/d/f && ln -s .. %s/d/up && ln -s /etc %s/abs", t->root,
                      t->root, t->root, t->root);
        assert_int_equal(system(p), 0);
        free(p);
        t->fd = open(t->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(t->fd >= 0);
        *state = t;
        return 0;
}

static int teardown(void **state) {
        Tree *t = *state;
        char *p = xasprintf("rm -rf '%s'", t->root);
        close(t->fd);
        assert_int_equal(system(p), 0);
        free(p);
        free(t);
        return 0;
}

static void expect_fd(int fd) {
        assert_true(fd >= 0);
        close(fd);
}

static void fs_opens_plain_names(void **state) {
        Tree *t = *state;
        expect_fd(open_beneath(t->fd, "d/f", O_RDONLY, 0));
        expect_fd(open_beneath(t->fd, "./d//f", O_RDONLY, 0));
        expect_fd(open_beneath(t->fd, "d/", O_RDONLY | O_DIRECTORY, 0));
        expect_fd(open_beneath(t->fd, "", O_RDONLY | O_DIRECTORY, 0));
        expect_fd(open_beneath(t->fd, ".", O_RDONLY | O_DIRECTORY, 0));
        assert_int_equal(open_beneath(t->fd, "d/nope", O_RDONLY, 0), -ENOENT);
        assert_int_equal(open_beneath(t->fd, "d/f/x", O_RDONLY, 0), -ENOTDIR);
        expect_fd(open_beneath(t->fd, "d/new", O_WRONLY | O_CREAT | O_EXCL, 0600));
        assert_int_equal(open_beneath(t->fd, "d/new", O_WRONLY | O_CREAT | O_EXCL, 0600), -EEXIST);
}

static void fs_refuses_symlinks_dotdot_and_absolute(void **state) {
        Tree *t = *state;
        assert_int_equal(open_beneath(t->fd, "abs/passwd", O_RDONLY, 0), -ELOOP);
        assert_int_equal(open_beneath(t->fd, "abs", O_RDONLY, 0), -ELOOP);
        assert_int_equal(open_beneath(t->fd, "abs", O_RDONLY | O_DIRECTORY, 0), -ELOOP);
        assert_int_equal(open_beneath(t->fd, "d/up/d/f", O_RDONLY, 0), -ELOOP);
        assert_int_equal(open_beneath(t->fd, "abs/x", O_WRONLY | O_CREAT, 0600), -ELOOP);
        assert_int_equal(open_beneath(t->fd, "d/../d/f", O_RDONLY, 0), -EXDEV);
        assert_int_equal(open_beneath(t->fd, "..", O_RDONLY | O_DIRECTORY, 0), -EXDEV);
        assert_int_equal(open_beneath(t->fd, "/etc/passwd", O_RDONLY, 0), -EXDEV);
        assert_int_equal(open_beneath(t->fd, "d/f", O_PATH, 0), -EINVAL);
}

static void fs_parent_creates_directories_but_not_through_links(void **state) {
        Tree *t = *state;
        const char *base = NULL;
        struct stat st;
        int fd;

        fd = open_parent_beneath(t->fd, "n/m/obj", 0750, &base);
        assert_true(fd >= 0);
        assert_string_equal(base, "obj");
        assert_int_equal(fstat(fd, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        close(fd);
        assert_int_equal(fstatat(t->fd, "n/m", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISDIR(st.st_mode));

        fd = open_parent_beneath(t->fd, "top", 0, &base);
        assert_true(fd >= 0);
        assert_string_equal(base, "top");
        close(fd);

        assert_int_equal(open_parent_beneath(t->fd, "x/y", 0, &base), -ENOENT);
        assert_int_equal(open_parent_beneath(t->fd, "abs/new/obj", 0750, &base), -ELOOP);
        assert_int_equal(open_parent_beneath(t->fd, "d/up/new/obj", 0750, &base), -ELOOP);
        assert_int_equal(access("/etc/new", F_OK), -1);
        assert_int_equal(open_parent_beneath(t->fd, "d/../x", 0750, &base), -EXDEV);
        assert_int_equal(open_parent_beneath(t->fd, "d/", 0, &base), -EINVAL);
        assert_int_equal(open_parent_beneath(t->fd, "d/.", 0, &base), -EINVAL);
        assert_int_equal(open_parent_beneath(t->fd, "", 0, &base), -EINVAL);
}

FS_MODES_SETUPS

int main(void) {
        const struct CMUnitTest tests[] = {
                BOTH_WAYS(fs_opens_plain_names),
                BOTH_WAYS(fs_refuses_symlinks_dotdot_and_absolute),
                BOTH_WAYS(fs_parent_creates_directories_but_not_through_links),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
