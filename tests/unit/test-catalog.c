/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/mman.h>

#include "pipe/catalog.h"

static void catalog_order_is_the_sorted_walk(void **state) {
        /* A directory's contents right after it: "a/z" before "a.b", though '.' < '/' in plain byte order.
         */
        const char *walk[] = { "", "a", "a/b", "a/z", "a.b", "a0", "b", "b/\x01", "b/\xff" };

        for (size_t i = 0; i + 1 < ELEMENTSOF(walk); i++) {
                assert_true(catalog_path_cmp(walk[i], walk[i + 1]) < 0);
                assert_true(catalog_path_cmp(walk[i + 1], walk[i]) > 0);
        }
        assert_int_equal(catalog_path_cmp("a/b", "a/b"), 0);
}

static void catalog_line_round_trips_odd_names(void **state) {
        const char *names[] = { "",       "plain",           "with space", "new\nline",
                                "pct%25", "\xff\xfe-latin1", "tab\there",  "del\x7f" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                CatalogEntry e = { .path = (char *) names[i],
                                   .type = 'f',
                                   .mode = 04755,
                                   .uid = 1000,
                                   .gid = 4294967295U,
                                   .size = UINT64_C(1) << 40,
                                   .mtime_ns = -5,
                                   .ctime_ns = INT64_C(1796154456681955344),
                                   .ino = 42,
                                   .nlink = 3 };
                CatalogEntry back = {};
                _cleanup_free_ char *line = catalog_format_line(&e);
                size_t n = strlen(line);

                assert_true(n > 0 && line[n - 1] == '\n');
                assert_null(memchr(line, '\n', n - 1)); /* one line whatever the name */
                assert_int_equal(catalog_parse_line(line, n - 1, &back), 0);
                assert_string_equal(back.path, names[i]);
                assert_int_equal(back.mode, 04755);
                assert_int_equal(back.gid, 4294967295U);
                assert_true(back.size == e.size && back.mtime_ns == -5 && back.ctime_ns == e.ctime_ns);
                assert_true(back.ino == 42 && back.nlink == 3);
                assert_false(catalog_entry_changed(&e, &back));
                catalog_entry_done(&back);
        }
}

static void catalog_parse_refuses_damaged_lines(void **state) {
        const char *bad[] = { "",
                              "x 644 0 0 0 0 0 0 1 a",
                              "f 644 0 0 0 0 0 0 1",
                              "f 648 0 0 0 0 0 0 1 a",
                              "f 644 0 0 0 0 0 0 a",
                              "f 644 0 0 -1 0 0 0 1 a",
                              "f 644 0 0 0 0 0 0 1 bad%zz",
                              "f 644 0 0 0 0 0 0 1 nul%00",
                              "f 644 4294967296 0 0 0 0 0 1 a",
                              "f 644 0 0 99999999999999999999 0 0 0 1 a" };
        CatalogEntry e;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(catalog_parse_line(bad[i], strlen(bad[i]), &e), -EBADMSG);
}

static void catalog_changed_compares_what_marks_a_change(void **state) {
        CatalogEntry a = { .type = 'f', .mode = 0644, .size = 1, .mtime_ns = 1, .ctime_ns = 1, .ino = 1 }, b;

        b = a;
        assert_false(catalog_entry_changed(&a, &b));
        b.nlink = 9; /* a new link shows in ctime; nlink alone is no change */
        assert_false(catalog_entry_changed(&a, &b));
        const size_t offsets[] = { offsetof(CatalogEntry, mode),     offsetof(CatalogEntry, uid),
                                   offsetof(CatalogEntry, gid),      offsetof(CatalogEntry, size),
                                   offsetof(CatalogEntry, mtime_ns), offsetof(CatalogEntry, ctime_ns),
                                   offsetof(CatalogEntry, ino) };
        for (size_t i = 0; i < ELEMENTSOF(offsets); i++) {
                b = a;
                ((uint8_t *) &b)[offsets[i]] ^= 2;
                assert_true(catalog_entry_changed(&a, &b));
        }
        b = a;
        b.type = 'l';
        assert_true(catalog_entry_changed(&a, &b));
}

static void catalog_streams_through_writer_and_reader(void **state) {
        _cleanup_close_ int fd = memfd_create("catalog", MFD_CLOEXEC);
        _cleanup_(catalog_writer_freep) CatalogWriter *w = NULL;
        _cleanup_(catalog_reader_freep) CatalogReader *r = NULL;
        const CatalogEntry *e;
        char name[64];
        unsigned n = 0;

        assert_true(fd >= 0);
        w = catalog_writer_new(sink_fd_new(fd));
        /* More than one buffer's worth, so lines cross read boundaries. */
        for (unsigned i = 0; i < 20000; i++) {
                CatalogEntry c = { .path = name, .type = i % 7 ? 'f' : 'd', .mode = 0600, .size = i };
                snprintf(name, sizeof name, "dir/%08u-%s", i, i % 3 ? "x" : "with\nnewline");
                assert_int_equal(catalog_writer_add(w, &c), 0);
        }
        assert_int_equal(catalog_writer_finish(w), 0);
        assert_int_equal(catalog_writer_count(w), 20000);

        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(catalog_reader_new(source_fd_new(fd), &r), 0);
        while (catalog_reader_next(r, &e) > 0) {
                snprintf(name, sizeof name, "dir/%08u-%s", n, n % 3 ? "x" : "with\nnewline");
                assert_string_equal(e->path, name);
                assert_int_equal(e->size, n);
                n++;
        }
        assert_int_equal(n, 20000);
}

static void catalog_reader_refuses_disorder_and_strangers(void **state) {
        const char *texts[] = { "not a catalog\n",
                                "skyforge-catalog 1\nf 644 0 0 0 0 0 0 1 b\nf 644 0 0 0 0 0 0 1 a\n",
                                "skyforge-catalog 1\nf 644 0 0 0 0 0 0 1 a" };
        int expect[] = { -EBADMSG, -EBADMSG, -EBADMSG };

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                _cleanup_(catalog_reader_freep) CatalogReader *r = NULL;
                const CatalogEntry *e;
                int k = catalog_reader_new(source_memory_new(texts[i], strlen(texts[i])), &r);

                while (k >= 0 && r && (k = catalog_reader_next(r, &e)) > 0)
                        ;
                assert_int_equal(k, expect[i]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(catalog_order_is_the_sorted_walk),
                cmocka_unit_test(catalog_line_round_trips_odd_names),
                cmocka_unit_test(catalog_parse_refuses_damaged_lines),
                cmocka_unit_test(catalog_changed_compares_what_marks_a_change),
                cmocka_unit_test(catalog_streams_through_writer_and_reader),
                cmocka_unit_test(catalog_reader_refuses_disorder_and_strangers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
