/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <ftw.h>

#include "log/log.h"
#include "store/manifest.h"
#include "store/store.h"

static char root[] = "/tmp/skyforge-test-store-XXXXXX";

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

static int setup(void **state) {
        Store *s;
        strcpy(root, "/tmp/skyforge-test-store-XXXXXX");
        assert_non_null(mkdtemp(root));
        assert_int_equal(store_local_open(root, &s), 0);
        *state = s;
        return 0;
}

static int teardown(void **state) {
        store_free(*state);
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static size_t count_files(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;
        while (d && (de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        if (d)
                closedir(d);
        return n;
}

typedef struct Names {
        char **l;
} Names;

static int collect(const StoreEntry *e, void *userdata) {
        Names *n = userdata;
        strv_push(&n->l, xstrdup(e->name));
        return 0;
}

static char *joined(Store *s, const char *prefix) {
        Names n = { .l = xcalloc(1, sizeof(char *)) };
        char *out = xstrdup("");
        assert_int_equal(store_list(s, prefix, collect, &n), 0);
        STRV_FOREACH(x, n.l) {
                char *next = xasprintf("%s%s%s", out, *out ? " " : "", *x);
                free(out);
                out = next;
        }
        strv_free(n.l);
        return out;
}

static void local_uncommitted_write_leaves_nothing(void **state) {
        Store *s = *state;
        StoreWriter *w;

        assert_int_equal(store_writer_open(s, "a/b.bin", &w), 0);
        assert_int_equal(store_write(w, "hello", 5), 0);
        _cleanup_free_ char *dir = path_join(root, "a");
        assert_int_equal(count_files(dir), 1); /* the hidden temp file */
        store_writer_free(w);
        assert_int_equal(count_files(dir), 0);
        StoreEntry e = {};
        assert_int_equal(store_stat(s, "a/b.bin", &e), -ENOENT);
}

static void local_commit_makes_object_visible(void **state) {
        Store *s = *state;
        char *data = NULL;
        size_t len;
        StoreEntry e = {};

        assert_int_equal(store_put_buffer(s, "x.json", "{}", 2), 0);
        assert_int_equal(store_stat(s, "x.json", &e), 0);
        assert_true(e.size == 2);
        store_entry_done(&e);
        assert_int_equal(store_get_buffer(s, "x.json", 100, &data, &len), 0);
        assert_string_equal(data, "{}");
        free(data);
        assert_int_equal(store_get_buffer(s, "x.json", 1, &data, &len), -EFBIG);
        assert_int_equal(store_remove(s, "x.json"), 0);
        assert_int_equal(store_remove(s, "x.json"), 0); /* missing is fine */
}

static void local_list_is_sorted_bytewise_with_prefix(void **state) {
        Store *s = *state;
        const char *names[] = { "b", "a/x", "a-b", "a/c/d", "ab", "z.json", "a/c0" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_int_equal(store_put_buffer(s, names[i], "1", 1), 0);
        _cleanup_free_ char *all = joined(s, ""), *a = joined(s, "a/"), *ac = joined(s, "a/c");
        assert_string_equal(all, "a-b a/c/d a/c0 a/x ab b z.json");
        assert_string_equal(a, "a/c/d a/c0 a/x");
        assert_string_equal(ac, "a/c/d a/c0");
}

static void local_rejects_escaping_names(void **state) {
        Store *s = *state;
        StoreWriter *w = NULL;
        assert_int_equal(store_writer_open(s, "../etc/passwd", &w), -EINVAL);
        assert_int_equal(store_writer_open(s, "/abs", &w), -EINVAL);
        assert_null(w);
}

static Manifest *manifest_for(const char *id) {
        Manifest *m = xcalloc(1, sizeof *m);
        _cleanup_free_ char *obj = xasprintf("%s.sql.zst", id);
        m->job = xstrdup("postgres");
        m->id = xstrdup(id);
        manifest_add_object(m, obj, 1, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        return m;
}

static void backups_exist_only_with_manifest_and_orphans_are_cleaned(void **state) {
        Store *s = *state;
        const char *ids[] = { "20261101T000000Z", "20261102T000000Z", "20261103T000000Z" };
        BackupList l = {};

        for (size_t i = 0; i < 3; i++) {
                _cleanup_(manifest_freep) Manifest *m = manifest_for(ids[i]);
                assert_int_equal(store_put_buffer(s, m->objects[0].name, "1", 1), 0);
                if (i != 1) /* the middle one was interrupted: data, no manifest */
                        assert_int_equal(manifest_store(s, m), 0);
        }
        assert_int_equal(store_put_buffer(s, "unrelated.txt", "1", 1), 0);
        assert_int_equal(backup_list_load(s, "postgres", &l), 0);
        assert_int_equal(l.n, 2);
        assert_string_equal(l.items[0]->id, ids[2]); /* newest first */
        assert_string_equal(l.items[1]->id, ids[0]);

        const Manifest *found;
        assert_int_equal(backup_list_find(&l, "latest", &found), 0);
        assert_string_equal(found->id, ids[2]);
        assert_int_equal(backup_list_find(&l, ids[1], &found), -ENOENT);
        assert_int_equal(backup_list_find(&l, "yesterday", &found), -EINVAL);

        /* A crashed writer's temp file, too. */
        StoreWriter *w;
        assert_int_equal(store_writer_open(s, "20261104T000000Z.sql.zst", &w), 0);
        assert_int_equal(store_write(w, "partial", 7), 0);
        /* Simulate a crash: forget the writer without aborting (close its fd only). */
        static const char *const suffixes[] = { ".sql.zst", NULL };
        assert_int_equal(backup_cleanup_orphans(s, NULL, "postgres", suffixes), 1);
        store_writer_free(w);
        _cleanup_free_ char *all = joined(s, "");
        assert_string_equal(all, "20261101T000000Z.json 20261101T000000Z.sql.zst 20261103T000000Z.json "
                                 "20261103T000000Z.sql.zst unrelated.txt");
        assert_int_equal(count_files(root), 5);

        assert_int_equal(backup_delete(s, l.items[0], NULL, 0), 0);
        _cleanup_free_ char *after = joined(s, "");
        assert_string_equal(after, "20261101T000000Z.json 20261101T000000Z.sql.zst unrelated.txt");
        backup_list_done(&l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(local_uncommitted_write_leaves_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(local_commit_makes_object_visible, setup, teardown),
                cmocka_unit_test_setup_teardown(local_list_is_sorted_bytewise_with_prefix, setup, teardown),
                cmocka_unit_test_setup_teardown(local_rejects_escaping_names, setup, teardown),
                cmocka_unit_test_setup_teardown(backups_exist_only_with_manifest_and_orphans_are_cleaned, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
