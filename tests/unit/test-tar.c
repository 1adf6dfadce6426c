/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sysexits.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "log/log.h"
#include "pipe/tar.h"
#include "pipe/untar.h"

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

/* --- extraction of hostile archives --- */

typedef struct Member {
        const char *name;
        mode_t type;
        mode_t perm;
        const char *content; /* files: data; symlinks: target */
} Member;

/* A pax archive of members, in memory. */
static char *archive_of(const Member *m, size_t n, size_t *ret_size) {
        size_t cap = 1 << 20, used = 0;
        char *buf = xmalloc(cap);
        struct archive *a = archive_write_new();

        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, m[i].name);
                archive_entry_set_filetype(e, m[i].type);
                archive_entry_set_perm(e, m[i].perm);
                archive_entry_set_mtime(e, 1700000000, 0);
                archive_entry_set_uid(e, 0);
                archive_entry_set_gid(e, 0);
                if (m[i].type == AE_IFLNK)
                        archive_entry_set_symlink(e, m[i].content);
                if (m[i].type == AE_IFREG)
                        archive_entry_set_size(e, (la_int64_t) strlen(m[i].content));
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (m[i].type == AE_IFREG)
                        assert_int_equal(archive_write_data(a, m[i].content, strlen(m[i].content)),
                                         (la_ssize_t) strlen(m[i].content));
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        *ret_size = used;
        return buf;
}

/* base/out is the extraction directory; base/victim is a directory outside it. */
typedef struct Playground {
        char base[64];
        char *out;
        char *victim;
} Playground;

static void playground_init(Playground *p) {
        strcpy(p->base, "/tmp/test-untar-XXXXXX");
        assert_non_null(mkdtemp(p->base));
        p->out = path_join(p->base, "out");
        p->victim = path_join(p->base, "victim");
        assert_int_equal(mkdir(p->out, 0700), 0);
        assert_int_equal(mkdir(p->victim, 0700), 0);
}

static void playground_done(Playground *p) {
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", p->base);
        assert_int_equal(system(cmd), 0);
        free(p->out);
        free(p->victim);
}

static int extract(Playground *p, const Member *m, size_t n, char ***ret_entries) {
        _cleanup_(tar_reader_freep) TarReader *r = NULL;
        _cleanup_free_ char *data = NULL;
        size_t size;

        data = archive_of(m, n, &size);
        assert_int_equal(tar_reader_new(source_memory_new(data, size), &r), 0);
        err_clear();
        return tar_reader_extract(r, p->out, ret_entries);
}

static mode_t mode_of(const Playground *p, const char *name) {
        _cleanup_free_ char *path = path_join(p->out, name);
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        return st.st_mode & 07777;
}

static size_t entries_in(const char *dir) {
        _cleanup_free_ char *cmd = xasprintf("test -z \"$(ls -A '%s')\"", dir);
        return system(cmd) == 0 ? 0 : 1;
}

/* Every symlink under out, resolved by the kernel, stays under out. */
static void assert_no_link_leaves(const Playground *p) {
        _cleanup_free_ char *cmd = xasprintf(
                "cd '%s' && find . -type l | while read -r l; do r=$(realpath -m \"$l\"); "
                "case \"$r\" in '%s'|'%s'/*) ;; *) echo \"$l -> $r\"; exit 1;; esac; done",
                p->out, p->out, p->out);
        assert_int_equal(system(cmd), 0);
}

static void untar_drops_setuid_setgid_sticky_and_group_other_write(void **state) {
        Playground p;
        _cleanup_strv_free_ char **entries = NULL;
        const Member m[] = {
                { "d/", AE_IFDIR, 01777, NULL },
                { "d/suid", AE_IFREG, 04755, "#!/bin/sh\n" },
                { "d/sgid", AE_IFREG, 02711, "x" },
                { "d/open", AE_IFREG, 0666, "x" },
                { "d/all", AE_IFREG, 07777, "x" },
                { "d/ro", AE_IFREG, 0440, "x" },
                { "g/", AE_IFDIR, 02775, NULL },
                { "g/f", AE_IFREG, 0640, "x" },
        };

        playground_init(&p);
        assert_int_equal(extract(&p, m, ELEMENTSOF(m), &entries), 0);
        assert_int_equal(strv_length(entries), ELEMENTSOF(m));
        assert_int_equal(mode_of(&p, "d"), 0755);
        assert_int_equal(mode_of(&p, "d/suid"), 0755);
        assert_int_equal(mode_of(&p, "d/sgid"), 0711);
        assert_int_equal(mode_of(&p, "d/open"), 0644);
        assert_int_equal(mode_of(&p, "d/all"), 0755);
        assert_int_equal(mode_of(&p, "d/ro"), 0440);
        assert_int_equal(mode_of(&p, "g"), 0755);
        assert_int_equal(mode_of(&p, "g/f"), 0640);
        playground_done(&p);
}

/* PostgreSQL's BASE_BACKUP names one member "./pg_wal/archive_status/": "./x" is x. "./" alone and "./.."
 * stay refused. */
static void untar_reads_dot_slash_names_as_relative(void **state) {
        Playground p;
        const Member ok[] = {
                { "pg_wal/", AE_IFDIR, 0700, NULL },
                { "./pg_wal/archive_status/", AE_IFDIR, 0700, NULL },
                { "././f", AE_IFREG, 0600, "x" },
        };
        const Member up[] = { { "./../escape", AE_IFREG, 0600, "x" } };
        const Member dot[] = { { "./", AE_IFDIR, 0700, NULL } };

        playground_init(&p);
        assert_int_equal(extract(&p, ok, ELEMENTSOF(ok), NULL), 0);
        assert_int_equal(mode_of(&p, "pg_wal/archive_status"), 0700);
        assert_int_equal(mode_of(&p, "f"), 0600);
        playground_done(&p);

        playground_init(&p);
        assert_int_equal(extract(&p, up, ELEMENTSOF(up), NULL), -EPERM);
        {
                _cleanup_free_ char *escaped = path_join(p.base, "escape");
                assert_int_equal(access(escaped, F_OK), -1);
        }
        assert_int_equal(extract(&p, dot, ELEMENTSOF(dot), NULL), -EPERM);
        playground_done(&p);
}

/* a/l -> .. stays inside (it is out itself), but b -> a/l/.. is out's parent: a check by names alone
 * passes it. In either order, b must not be left behind, and nothing may lead outside. */
static void untar_refuses_a_symlink_chain_that_leaves(void **state) {
        const Member forward[] = {
                { "a/", AE_IFDIR, 0755, NULL },
                { "a/l", AE_IFLNK, 0777, ".." },
                { "b", AE_IFLNK, 0777, "a/l/.." },
                { "c", AE_IFLNK, 0777, "a/l/a/l/../victim" },
                { "ok", AE_IFLNK, 0777, "a/l/a" },
        };
        const Member backward[] = {
                { "b", AE_IFLNK, 0777, "a/l/.." },
                { "c", AE_IFLNK, 0777, "a/l/a/l/../victim" },
                { "ok", AE_IFLNK, 0777, "a/l/a" },
                { "a/", AE_IFDIR, 0755, NULL },
                { "a/l", AE_IFLNK, 0777, ".." },
        };
        const Member *cases[] = { forward, backward };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_strv_free_ char **entries = NULL;
                _cleanup_free_ char *b = NULL, *c = NULL, *ok = NULL;
                Playground p;

                playground_init(&p);
                assert_int_equal(extract(&p, cases[i], ELEMENTSOF(forward), &entries), 0);
                b = path_join(p.out, "b");
                c = path_join(p.out, "c");
                ok = path_join(p.out, "ok");
                assert_int_equal(access(b, F_OK), -1);
                assert_int_equal(access(c, F_OK), -1);
                assert_int_equal(access(ok, F_OK), 0); /* a link that stays inside is kept */
                assert_false(strv_contains(entries, "b"));
                assert_false(strv_contains(entries, "c"));
                assert_true(strv_contains(entries, "ok"));
                assert_no_link_leaves(&p);
                playground_done(&p);
        }
}

/* Nothing is ever written through a symlink: not one from the archive that points inside, not one that
 * was in the directory before. */
static void untar_never_writes_through_a_symlink(void **state) {
        const Member via_inside[] = {
                { "sub/", AE_IFDIR, 0755, NULL },
                { "s", AE_IFLNK, 0777, "sub" },
                { "s/evil", AE_IFREG, 0644, "pwned" },
        };
        const Member via_existing[] = {
                { "pre/x", AE_IFREG, 0644, "pwned" },
        };
        const Member over_existing[] = {
                { "pre", AE_IFREG, 0644, "pwned" },
                { "pre/", AE_IFDIR, 0755, NULL },
        };
        _cleanup_free_ char *evil = NULL, *pre = NULL;
        Playground p;

        playground_init(&p);
        assert_int_equal(extract(&p, via_inside, ELEMENTSOF(via_inside), NULL), -ELOOP);
        assert_non_null(strstr(err_message(), "cannot extract s/evil into"));
        assert_non_null(strstr(err_message(), "a symlink is in its way"));
        assert_int_equal(err_exit_code(-ELOOP), EX_CANTCREAT);
        evil = path_join(p.out, "sub/evil");
        assert_int_equal(access(evil, F_OK), -1);
        playground_done(&p);

        playground_init(&p);
        pre = path_join(p.out, "pre");
        assert_int_equal(symlink(p.victim, pre), 0);
        assert_int_equal(extract(&p, via_existing, ELEMENTSOF(via_existing), NULL), -ELOOP);
        assert_int_equal(entries_in(p.victim), 0);
        /* A file over the link is kept (not overwritten, not followed); a directory over it fails. */
        assert_int_equal(extract(&p, over_existing, 1, NULL), 0);
        assert_int_equal(extract(&p, over_existing + 1, 1, NULL), -ELOOP);
        assert_int_equal(entries_in(p.victim), 0);
        playground_done(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(tar_writes_tree_and_memory_entries),
                cmocka_unit_test(tar_default_prefix_is_basename),
                cmocka_unit_test(tar_reports_missing_directory),
                cmocka_unit_test(tar_passes_sink_errors_on),
                cmocka_unit_test(untar_drops_setuid_setgid_sticky_and_group_other_write),
                cmocka_unit_test(untar_refuses_a_symlink_chain_that_leaves),
                cmocka_unit_test(untar_never_writes_through_a_symlink),
                cmocka_unit_test(untar_reads_dot_slash_names_as_relative),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
