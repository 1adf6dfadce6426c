/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "pipe/catalog.h"
#include "sys/walk.h"

static char *tmp_dir(void) {
        char t[] = "/tmp/test-walk-XXXXXX";
        assert_non_null(mkdtemp(t));
        return xstrdup(t);
}

static int rm_tmp(const char *d) {
        _cleanup_close_ int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return remove_tree_beneath(root, d + 1);
}

static void touch(int dir, const char *name) {
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
}

/* A directory whose names do not fit the memory given is sorted in runs spilled to files and merged: the
 * order is the same, and the memory is the bound, not the number of names. */
static void dir_list_spills_and_merges_large_directories(void **state) {
        _cleanup_free_ char *d = tmp_dir();
        _cleanup_close_ int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_(dir_list_freep) DirList *l = NULL;
        _cleanup_free_ char *last = NULL;
        const char *name;
        unsigned n = 0;
        char buf[64];

        for (unsigned i = 0; i < 3000; i++) {
                snprintf(buf, sizeof buf, "%u-%x-name", (i * 7919) % 3000, i);
                touch(fd, buf);
        }
        assert_int_equal(dir_list_open(fd, d, 4096, &l), 0);
        assert_true(dir_list_runs(l) >= 10);
        while (dir_list_next(l, &name) > 0) {
                if (last)
                        assert_true(strcmp(last, name) < 0);
                free(last);
                last = xstrdup(name);
                n++;
        }
        assert_int_equal(n, 3000);
        assert_int_equal(rm_tmp(d), 0);
}

typedef struct Seen {
        char **paths;
} Seen;

static int collect(const WalkEntry *e, void *userdata) {
        Seen *s = userdata;
        strv_push(&s->paths, xstrdup(e->path));
        return 0;
}

static void walk_visits_in_catalog_order_without_following_links(void **state) {
        _cleanup_free_ char *d = tmp_dir();
        _cleanup_close_ int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        Seen s = { .paths = xcalloc(1, sizeof(char *)) };
        const char *expect[] = { "", "a", "a/b", "a/z", "a.b", "link" };

        assert_int_equal(mkdirat(fd, "a", 0755), 0);
        touch(fd, "a/z");
        touch(fd, "a/b");
        touch(fd, "a.b");
        assert_int_equal(symlinkat("/", fd, "link"), 0); /* never followed */
        assert_int_equal(walk_tree(fd, d, d, collect, &s), 0);
        assert_int_equal(strv_length(s.paths), ELEMENTSOF(expect));
        for (size_t i = 0; i < ELEMENTSOF(expect); i++)
                assert_string_equal(s.paths[i], expect[i]);
        for (size_t i = 0; i + 1 < ELEMENTSOF(expect); i++)
                assert_true(catalog_path_cmp(s.paths[i], s.paths[i + 1]) < 0);
        strv_free(s.paths);
        /* remove_tree_beneath removes the link, not what it points to. */
        assert_int_equal(rm_tmp(d), 0);
        assert_true(access("/", F_OK) == 0 && access(d, F_OK) < 0);
}

typedef struct Vanish {
        int dir_fd;
        char **seen;
} Vanish;

/* Deletes "b" while "a" is visited: "b" was listed with its directory, so it must come back vanished. */
static int vanish_b(const WalkEntry *e, void *userdata) {
        Vanish *v = userdata;

        strv_push(&v->seen, xasprintf("%s%s", e->path, e->vanished ? " vanished" : ""));
        if (streq(e->path, "a"))
                assert_int_equal(unlinkat(e->parent_fd, "b", 0), 0);
        return 0;
}

static void walk_reports_an_entry_gone_before_its_stat_as_vanished(void **state) {
        _cleanup_free_ char *d = tmp_dir();
        _cleanup_close_ int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        Vanish v = { .dir_fd = fd, .seen = xcalloc(1, sizeof(char *)) };
        const char *expect[] = { "", "a", "b vanished", "c" };

        for (const char *n = "abc"; *n; n++) {
                char name[2] = { *n, 0 };
                _cleanup_close_ int f = openat(fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                assert_true(f >= 0);
        }
        assert_int_equal(walk_tree(fd, d, d, vanish_b, &v), 0);
        assert_int_equal(strv_length(v.seen), ELEMENTSOF(expect));
        for (size_t i = 0; i < ELEMENTSOF(expect); i++)
                assert_string_equal(v.seen[i], expect[i]);
        strv_free(v.seen);
        (void) unlinkat(fd, "a", 0);
        (void) unlinkat(fd, "c", 0);
        (void) rmdir(d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(dir_list_spills_and_merges_large_directories),
                cmocka_unit_test(walk_visits_in_catalog_order_without_following_links),
                cmocka_unit_test(walk_reports_an_entry_gone_before_its_stat_as_vanished),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
