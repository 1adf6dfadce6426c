/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "log/log.h"
#include "pipe/tar.h"

/* Collects what the writer produces, so it can be read back with libarchive. */
typedef struct MemorySink {
        Sink sink;
        char *data;
        size_t size;
        bool finished;
        int fail_after; /* > 0: writes beyond this many bytes fail with -ENOSPC */
} MemorySink;

static int memory_write(Sink *s, const void *buf, size_t n) {
        MemorySink *m = (MemorySink *) s;

        if (m->fail_after > 0 && m->size + n > (size_t) m->fail_after)
                return -ENOSPC;
        m->data = xrealloc(m->data, m->size + n);
        memcpy(m->data + m->size, buf, n);
        m->size += n;
        return 0;
}

static int memory_finish(Sink *s) {
        ((MemorySink *) s)->finished = true;
        return 0;
}

static void memory_free(Sink *s) {
        /* The test owns the MemorySink; the writer's free only lets go of it. */
}

static void memory_init(MemorySink *m) {
        *m = (MemorySink) {
                .sink = { .write = memory_write, .finish = memory_finish, .free = memory_free },
        };
}

static void write_file(const char *dir, const char *name, const char *content, mode_t mode, time_t mtime) {
        _cleanup_free_ char *p = path_join(dir, name);
        struct timespec ts[2] = { { .tv_sec = mtime }, { .tv_sec = mtime } };
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write_full(fd, content, strlen(content)), 0);
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(futimens(fd, ts), 0);
        close(fd);
}

typedef struct Expected {
        const char *name;
        mode_t type;
        mode_t perm;
        const char *content; /* files: data; symlinks: target */
        time_t mtime; /* 0: not checked */
} Expected;

static void assert_archive(const MemorySink *m, const Expected *exp, size_t n) {
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t i = 0;
        char buf[256];

        assert_non_null(a);
        assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
        assert_int_equal(archive_read_open_memory(a, m->data, m->size), ARCHIVE_OK);
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                assert_true(i < n);
                assert_string_equal(archive_entry_pathname(e), exp[i].name);
                assert_int_equal(archive_entry_filetype(e), exp[i].type);
                if (exp[i].type != AE_IFLNK)
                        assert_int_equal(archive_entry_perm(e), exp[i].perm);
                if (exp[i].mtime)
                        assert_int_equal(archive_entry_mtime(e), exp[i].mtime);
                if (exp[i].type == AE_IFLNK)
                        assert_string_equal(archive_entry_symlink(e), exp[i].content);
                if (exp[i].type == AE_IFREG) {
                        la_ssize_t k = archive_read_data(a, buf, sizeof buf - 1);
                        assert_true(k >= 0);
                        buf[k] = 0;
                        assert_string_equal(buf, exp[i].content);
                        assert_int_equal(archive_entry_size(e), strlen(exp[i].content));
                }
                i++;
        }
        assert_int_equal(i, n);
        assert_int_equal(archive_read_free(a), ARCHIVE_OK);
}

static void tar_writes_tree_and_memory_entries(void **state) {
        char dir[] = "/tmp/test-tar-XXXXXX";
        _cleanup_free_ char *apps = NULL, *link = NULL, *empty = NULL, *fifo = NULL, *cmd = NULL;
        _cleanup_(tar_writer_freep) TarWriter *w = NULL;
        MemorySink m;
        static const char secret[] = "age-encryption.org/v1\n...";
        const Expected exp[] = {
                { "manifests/", AE_IFDIR, 0755, NULL, 0 },
                { "manifests/README", AE_IFREG, 0644, "read me\n", 1700000000 },
                { "manifests/apps/", AE_IFDIR, 0750, NULL, 0 },
                { "manifests/apps/gitea.yaml", AE_IFREG, 0640, "kind: Deployment\n", 1700000100 },
                { "manifests/apps/z-run.sh", AE_IFREG, 0755, "#!/bin/sh\n", 1700000200 },
                { "manifests/empty/", AE_IFDIR, 0700, NULL, 0 },
                { "manifests/link", AE_IFLNK, 0, "apps/gitea.yaml", 0 },
                { "secrets/secrets.json.age", AE_IFREG, 0600, secret, 0 },
        };

        assert_non_null(mkdtemp(dir));
        assert_int_equal(chmod(dir, 0755), 0);
        apps = path_join(dir, "apps");
        empty = path_join(dir, "empty");
        link = path_join(dir, "link");
        fifo = path_join(dir, "pipe");
        assert_int_equal(mkdir(apps, 0750), 0);
        assert_int_equal(chmod(apps, 0750), 0);
        assert_int_equal(mkdir(empty, 0700), 0);
        assert_int_equal(symlink("apps/gitea.yaml", link), 0);
        assert_int_equal(mkfifo(fifo, 0600), 0); /* skipped: not a file, directory or symlink */
        write_file(dir, "README", "read me\n", 0644, 1700000000);
        write_file(apps, "gitea.yaml", "kind: Deployment\n", 0640, 1700000100);
        write_file(apps, "z-run.sh", "#!/bin/sh\n", 0755, 1700000200);

        memory_init(&m);
        assert_int_equal(tar_writer_new(&m.sink, &w), 0);
        assert_int_equal(tar_writer_add_tree(w, dir, "/manifests/"), 0);
        assert_int_equal(tar_writer_add_data(w, "secrets/secrets.json.age", secret, strlen(secret), 0600),
                         0);
        assert_false(m.finished);
        assert_int_equal(tar_writer_finish(w), 0);
        assert_true(m.finished);
        assert_int_equal(m.size % 512, 0);

        assert_archive(&m, exp, ELEMENTSOF(exp));
        assert_int_equal(strv_length(tar_writer_entries(w)), ELEMENTSOF(exp));
        assert_string_equal(tar_writer_entries(w)[3], "manifests/apps/gitea.yaml");
        assert_int_equal(tar_writer_data_bytes(w), 8 + 17 + 10 + strlen(secret));

        free(m.data);
        cmd = xasprintf("rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

static void tar_default_prefix_is_basename(void **state) {
        char dir[] = "/tmp/test-tar-XXXXXX";
        _cleanup_free_ char *k8s = NULL, *slash = NULL, *cmd = NULL;
        _cleanup_(tar_writer_freep) TarWriter *w = NULL;
        MemorySink m;

        assert_non_null(mkdtemp(dir));
        k8s = path_join(dir, "k8s");
        assert_int_equal(mkdir(k8s, 0755), 0);
        write_file(k8s, "a.yaml", "a", 0644, 1700000000);
        slash = xasprintf("%s/", k8s);

        memory_init(&m);
        assert_int_equal(tar_writer_new(&m.sink, &w), 0);
        assert_int_equal(tar_writer_add_tree(w, slash, NULL), 0);
        assert_int_equal(tar_writer_finish(w), 0);
        assert_int_equal(strv_length(tar_writer_entries(w)), 2);
        assert_string_equal(tar_writer_entries(w)[0], "k8s/"); /* libarchive marks directories */
        assert_string_equal(tar_writer_entries(w)[1], "k8s/a.yaml");

        free(m.data);
        cmd = xasprintf("rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

static void tar_reports_missing_directory(void **state) {
        _cleanup_(tar_writer_freep) TarWriter *w = NULL;
        MemorySink m;

        memory_init(&m);
        assert_int_equal(tar_writer_new(&m.sink, &w), 0);
        err_clear();
        assert_int_equal(tar_writer_add_tree(w, "/nonexistent/k8s", NULL), -ENOENT);
        assert_string_equal(err_message(),
                            "cannot read directory /nonexistent/k8s: No such file or directory");
        assert_int_equal(tar_writer_add_tree(w, "/etc/hostname", NULL), -ENOTDIR);
        free(m.data);
}

/* A full disk downstream fails the add, and freeing the writer does not complete the archive. */
static void tar_passes_sink_errors_on(void **state) {
        _cleanup_free_ char *big = xmalloc(1 << 20);
        TarWriter *w = NULL;
        MemorySink m;
        size_t before;

        memset(big, 'x', 1 << 20);
        memory_init(&m);
        m.fail_after = 100000;
        assert_int_equal(tar_writer_new(&m.sink, &w), 0);
        err_clear();
        assert_int_equal(tar_writer_add_data(w, "big", big, 1 << 20, 0600), -ENOSPC);
        before = m.size;
        tar_writer_free(w);
        assert_int_equal(m.size, before);
        assert_false(m.finished);
        free(m.data);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(tar_writes_tree_and_memory_entries),
                cmocka_unit_test(tar_default_prefix_is_basename),
                cmocka_unit_test(tar_reports_missing_directory),
                cmocka_unit_test(tar_passes_sink_errors_on),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
