/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sysexits.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "log/log.h"
#include "sys/fs.h"
#include "store/manifest.h"
#include "store/store.h"
#include "fs-modes.h"

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

/* One name, one file: names the kernel would resolve to another name's file, or that the store never
 * lists, are refused for every operation. */
static void local_rejects_aliasing_and_hidden_names(void **state) {
        Store *s = *state;
        const char *bad[] = {
                "a/./b",           "./b",      "a/.", "a/..", "a//b", "a/b/", "..", ".", "", ".hidden",
                "a/.b.tmp.123456", "a/../../x"
        };
        StoreWriter *w = NULL;
        StoreReader *r = NULL;
        StoreEntry e = {};

        assert_int_equal(store_put_buffer(s, "a/b", "1", 1), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                print_message("%s\n", bad[i]);
                assert_int_equal(store_writer_open(s, bad[i], &w), -EINVAL);
                assert_int_equal(store_reader_open(s, bad[i], 0, &r), -EINVAL);
                assert_int_equal(store_stat(s, bad[i], &e), -EINVAL);
                assert_int_equal(store_remove(s, bad[i]), -EINVAL);
        }
        assert_null(w);
        assert_null(r);
        assert_int_equal(store_stat(s, "a/b", &e), 0); /* still there */
        store_entry_done(&e);
        /* Dots inside a segment are just characters. */
        assert_int_equal(store_put_buffer(s, "a..b/c.d..e", "1", 1), 0);
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

/* A directory outside the store with one file in it, and its path. */
static char *outside_with_victim(void) {
        char tmpl[] = "/tmp/skyforge-test-outside-XXXXXX";
        _cleanup_free_ char *victim = NULL;
        FILE *f;

        assert_non_null(mkdtemp(tmpl));
        victim = path_join(tmpl, "victim");
        f = fopen(victim, "w");
        assert_non_null(f);
        fputs("outside\n", f);
        fclose(f);
        return xstrdup(tmpl);
}

static void assert_victim_intact(const char *outside) {
        _cleanup_free_ char *victim = path_join(outside, "victim"), *data = NULL;
        assert_true(read_file_string(victim, 100, &data) >= 0);
        assert_string_equal(data, "outside\n");
        assert_int_equal(count_files(outside), 1);
}

static void remove_tree(const char *dir) {
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void assert_refused(int r, const char *name) {
        _cleanup_free_ char *expected = xasprintf("refusing %s/%s: ", root, name);
        assert_int_equal(r, -ELOOP);
        assert_non_null(err_message());
        assert_non_null(strstr(err_message(), expected));
        assert_non_null(strstr(err_message(), "symlink inside the store"));
        assert_non_null(strstr(err_message(), "remove the symlink or fix the store"));
        assert_int_equal(err_exit_code(r), EX_DATAERR);
}

/* store/lnk -> outside, store/real/lnk -> outside: no name through either is written, read, stat'ed,
 * removed or listed. */
static void local_never_goes_through_a_symlinked_directory(void **state) {
        Store *s = *state;
        _cleanup_free_ char *outside = outside_with_victim(), *lnk = path_join(root, "lnk");
        _cleanup_free_ char *real = path_join(root, "real"), *nested = path_join(real, "lnk");
        StoreWriter *w = NULL;
        StoreReader *rd = NULL;
        StoreEntry e = {};

        assert_int_equal(symlink(outside, lnk), 0);
        assert_int_equal(mkdir(real, 0750), 0);
        assert_int_equal(symlink(outside, nested), 0);
        assert_int_equal(store_put_buffer(s, "real/file", "1", 1), 0);

        const char *names[] = { "lnk/victim", "real/lnk/victim" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                err_clear();
                assert_refused(store_reader_open(s, names[i], 0, &rd), names[i]);
                assert_null(rd);
                err_clear();
                assert_refused(store_stat(s, names[i], &e), names[i]);
                err_clear();
                assert_refused(store_remove(s, names[i]), names[i]);
                assert_victim_intact(outside);
        }
        /* Names that alias another name are refused before any lookup. */
        const char *aliases[] = { "./lnk/victim", "real//lnk/victim", "real/./lnk/victim" };
        for (size_t i = 0; i < ELEMENTSOF(aliases); i++) {
                assert_int_equal(store_reader_open(s, aliases[i], 0, &rd), -EINVAL);
                assert_int_equal(store_remove(s, aliases[i]), -EINVAL);
                assert_victim_intact(outside);
        }
        err_clear();
        assert_refused(store_writer_open(s, "lnk/new", &w), "lnk/new");
        assert_null(w);
        assert_refused(store_put_buffer(s, "real/lnk/sub/new", "x", 1), "real/lnk/sub/new");
        assert_victim_intact(outside);

        _cleanup_free_ char *all = joined(s, ""), *l = joined(s, "lnk/"), *rl = joined(s, "real/lnk");
        assert_string_equal(all, "real/file");
        assert_string_equal(l, "");
        assert_string_equal(rl, "");
        remove_tree(outside);
}

/* store/obj.json -> outside/victim: the link itself is refused too, and a commit replaces the link, never
 * what it points to. */
static void local_never_follows_a_symlink_as_the_object(void **state) {
        Store *s = *state;
        _cleanup_free_ char *outside = outside_with_victim(), *victim = path_join(outside, "victim");
        _cleanup_free_ char *obj = path_join(root, "obj.json"), *data = NULL;
        StoreReader *rd = NULL;
        StoreEntry e = {};
        struct stat st;

        assert_int_equal(symlink(victim, obj), 0);
        err_clear();
        assert_refused(store_reader_open(s, "obj.json", 0, &rd), "obj.json");
        err_clear();
        assert_refused(store_stat(s, "obj.json", &e), "obj.json");
        err_clear();
        assert_refused(store_remove(s, "obj.json"), "obj.json");
        assert_int_equal(lstat(obj, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        assert_victim_intact(outside);

        assert_int_equal(store_put_buffer(s, "obj.json", "{}", 2), 0);
        assert_int_equal(lstat(obj, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_victim_intact(outside);
        assert_int_equal(store_get_buffer(s, "obj.json", 100, &data, NULL), 0);
        assert_string_equal(data, "{}");
        remove_tree(outside);
}

/* A FIFO or a directory where an object should be is an error, not a hang. */
static void local_refuses_what_is_not_a_regular_file(void **state) {
        Store *s = *state;
        _cleanup_free_ char *fifo = path_join(root, "fifo.json"), *dir = path_join(root, "dir.json");
        StoreReader *rd = NULL;
        StoreEntry e = {};

        assert_int_equal(mkfifo(fifo, 0600), 0);
        assert_int_equal(mkdir(dir, 0700), 0);
        err_clear();
        assert_true(store_reader_open(s, "fifo.json", 0, &rd) < 0);
        assert_non_null(strstr(err_message(), "not a regular file"));
        assert_int_equal(store_reader_open(s, "dir.json", 0, &rd), -EISDIR);
        assert_null(rd);
        assert_int_equal(store_stat(s, "fifo.json", &e), -ENOENT);
}

/* Leftover temp files are removed inside the store only. */
static void local_cleanup_stays_inside(void **state) {
        Store *s = *state;
        _cleanup_free_ char *outside = outside_with_victim(), *lnk = path_join(root, "lnk");
        _cleanup_free_ char *out_tmp = path_join(outside, ".x.tmp.deadbeef");
        _cleanup_free_ char *in_dir = path_join(root, "a"), *in_tmp = path_join(in_dir, ".y.tmp.deadbeef");
        struct timespec old[2] = { { .tv_sec = 1000000000 }, { .tv_sec = 1000000000 } };

        assert_int_equal(mkdir(in_dir, 0750), 0);
        const char *tmps[] = { out_tmp, in_tmp };
        for (size_t i = 0; i < 2; i++) {
                int fd = open(tmps[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                assert_true(fd >= 0);
                assert_int_equal(futimens(fd, old), 0);
                close(fd);
        }
        assert_int_equal(symlink(outside, lnk), 0);
        assert_int_equal(store_cleanup(s, 60 * USEC_PER_SEC), 0);
        assert_int_equal(access(in_tmp, F_OK), -1);
        assert_int_equal(access(out_tmp, F_OK), 0);
        remove_tree(outside);
}

/* A job's cleanup of interrupted writes leaves another writer's in-flight object alone: the WAL stream
 * writes beside the dumps and base backups, and its segment must still commit after a job started. A
 * crashed run's leftover of the job's own is removed all the same. */
static void cleanup_leaves_another_writers_write_in_flight(void **state) {
        Store *s = *state;
        static const char *const base[] = { ".base/", NULL };
        StoreWriter *wal, *crashed;
        StoreEntry e = {};

        assert_int_equal(store_writer_open(s, "wal/00000001/000000010000000000000002.zst", &wal), 0);
        assert_int_equal(store_write(wal, "segment", 7), 0);
        assert_int_equal(backup_cleanup_orphans(s, NULL, "basebackup", base), 0);
        assert_int_equal(store_writer_commit(wal), 0);
        assert_int_equal(store_stat(s, "wal/00000001/000000010000000000000002.zst", &e), 0);
        assert_int_equal(e.size, 7);
        store_entry_done(&e);
        store_writer_free(wal);

        /* Another job's finished backup in the same location does not stop the job's own cleanup. */
        assert_int_equal(store_put_buffer(s, "20261101T000000Z.json", "{}", 2), 0);
        assert_int_equal(store_put_buffer(s, "20261101T000000Z.sql.zst", "x", 1), 0);
        assert_int_equal(store_writer_open(s, "20261104T000000Z.base/base.tar.zst", &crashed), 0);
        assert_int_equal(store_write(crashed, "partial", 7), 0);
        assert_int_equal(backup_cleanup_orphans(s, NULL, "basebackup", base), 0);
        /* The crashed writer's temp file is gone: committing it now fails. */
        assert_true(store_writer_commit(crashed) < 0);
        store_writer_free(crashed);
        _cleanup_free_ char *all = joined(s, "");
        assert_string_equal(all, "20261101T000000Z.json 20261101T000000Z.sql.zst "
                                 "wal/00000001/000000010000000000000002.zst");
}

FS_MODES_SETUPS

/* The mirror's listing: one entry at a time, in the same byte order as store_list(). */
static void local_lister_pages_in_the_order_of_list(void **state) {
        Store *s = *state;
        const char *names[] = { "b", "a/x", "a-b", "a/c/d", "ab", "z.json", "a/c0", "a/c/.hidden" };
        _cleanup_free_ char *all = NULL, *out = xstrdup(""), *ac = xstrdup("");
        StoreLister *l;
        const StoreEntry *e;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (names[i][strlen(names[i]) - 1] != 'n') /* not the hidden one: the store refuses it */
                        assert_int_equal(store_put_buffer(s, names[i], "1", 1), 0);
        all = joined(s, "");
        assert_int_equal(store_lister_open(s, "", &l), 0);
        while (store_lister_next(l, &e) > 0) {
                char *next = xasprintf("%s%s%s", out, *out ? " " : "", e->name);
                free(out);
                out = next;
                assert_true(e->size == 1);
                assert_null(e->etag); /* written without attributes: none recorded */
        }
        store_lister_free(l);
        assert_string_equal(out, all);
        assert_int_equal(store_lister_open(s, "a/c", &l), 0);
        while (store_lister_next(l, &e) > 0) {
                char *next = xasprintf("%s%s%s", ac, *ac ? " " : "", e->name);
                free(ac);
                ac = next;
        }
        store_lister_free(l);
        assert_string_equal(ac, "a/c/d a/c0");
}

/* A copy keeps what S3 keeps with an object, and lists with the ETag of the object it was made from. */
static void local_copy_keeps_attributes_and_lists_with_the_recorded_etag(void **state) {
        Store *s = *state;
        char *md[] = { "owner", "ops", "skyforge-etag", "e-3", NULL };
        StoreAttrs a = { .etag = "e-3", .mtime_usec = 1700000000ULL * 1000000 + 5, .content_type = "text/x-a",
                         .expires = "Thu, 01 Jan 2037 00:00:00 GMT", .metadata = md };
        StoreWriteOptions o = { .attrs = &a, .size = 6 };
        _cleanup_(store_attrs_done) StoreAttrs got = {};
        const StoreAttrs *ra;
        StoreWriter *w;
        StoreReader *r;
        StoreLister *l;
        const StoreEntry *e;
        char buf[8];

        assert_int_equal(store_writer_open_with(s, "k/obj", &o, &w), 0);
        assert_int_equal(store_write(w, "abcdef", 6), 0);
        assert_int_equal(store_writer_commit(w), 0);
        store_writer_free(w);

        assert_int_equal(store_lister_open(s, "", &l), 0);
        assert_int_equal(store_lister_next(l, &e), 1);
        assert_string_equal(e->name, "k/obj");
        assert_string_equal(e->etag, "e-3");
        assert_true(e->mtime_usec == a.mtime_usec);
        assert_int_equal(store_lister_next(l, &e), 0);
        store_lister_free(l);

        assert_int_equal(store_stat_attrs(s, "k/obj", &got), 0);
        assert_true(got.size == 6);
        assert_string_equal(got.content_type, "text/x-a");
        assert_string_equal(got.expires, a.expires);
        assert_null(got.cache_control);
        assert_string_equal(store_metadata_get(got.metadata, "owner"), "ops");
        assert_string_equal(store_metadata_get(got.metadata, "skyforge-etag"), "e-3");
        assert_int_equal(store_stat_attrs(s, "k/none", &got), -ENOENT);

        /* A range, with the attributes. */
        assert_int_equal(store_reader_open_with(s, "k/obj", &(StoreReadOptions){ 2, 3 }, &r), 0);
        assert_int_equal(store_reader_attrs(r, &ra), 0);
        assert_string_equal(ra->etag, "e-3");
        assert_int_equal(store_read(r, buf, sizeof buf), 3);
        assert_memory_equal(buf, "cde", 3);
        assert_int_equal(store_read(r, buf, sizeof buf), 0);
        store_reader_free(r);
}

/* Keys are opaque bytes; a directory holds only the names that stay themselves. */
static void local_name_valid_refuses_what_a_directory_cannot_hold(void **state) {
        Store *s = *state;
        char long_segment[300];

        memset(long_segment, 'x', sizeof long_segment - 1);
        long_segment[sizeof long_segment - 1] = 0;
        assert_true(store_name_valid(s, "a/b"));
        assert_true(store_name_valid(s, "with space/ü"));
        assert_false(store_name_valid(s, "a/../b"));
        assert_false(store_name_valid(s, "a/./b"));
        assert_false(store_name_valid(s, "a//b"));
        assert_false(store_name_valid(s, "a/"));
        assert_false(store_name_valid(s, "/a"));
        assert_false(store_name_valid(s, ".."));
        assert_false(store_name_valid(s, ""));
        assert_false(store_name_valid(s, long_segment));
}

/* A directory whose subdirectories are buckets (MinIO's layout): directories only, sorted. */
static void local_root_lists_subdirectories_as_buckets(void **state) {
        Store *s = *state, *b;
        StoreRoot *r;
        char **l = NULL;
        const StoreEntry *e;
        StoreLister *li;

        assert_int_equal(store_put_buffer(s, "beta/k", "1", 1), 0);
        assert_int_equal(store_put_buffer(s, "alpha/k", "1", 1), 0);
        assert_int_equal(store_put_buffer(s, "file", "1", 1), 0);
        assert_int_equal(store_root_local_open(root, &r), 0);
        assert_int_equal(store_root_list_buckets(r, &l), 0);
        assert_int_equal(strv_length(l), 2);
        assert_string_equal(l[0], "alpha");
        assert_string_equal(l[1], "beta");
        strv_free(l);
        assert_int_equal(store_root_open_bucket(r, "beta", false, &b), 0);
        assert_int_equal(store_lister_open(b, "", &li), 0);
        assert_int_equal(store_lister_next(li, &e), 1);
        assert_string_equal(e->name, "k");
        store_lister_free(li);
        store_free(b);
        /* Reading never creates: a missing bucket fails. */
        assert_true(store_root_open_bucket(r, "gamma", false, &b) < 0);
        store_root_free(r);
}

/* Opening for reading creates nothing: a missing directory is "no backups yet", and stays missing. */
static void local_open_existing_creates_nothing(void **state) {
        _cleanup_free_ char *missing = path_join(root, "not-yet");
        struct stat st;
        Store *s = NULL;

        assert_int_equal(store_local_open_existing(missing, &s), -ENOENT);
        assert_null(s);
        assert_non_null(strstr(err_message(), "no backups yet: "));
        assert_non_null(strstr(err_message(), "not-yet does not exist"));
        assert_int_equal(stat(missing, &st), -1);
        assert_int_equal(store_local_open_existing(root, &s), 0);
        store_free(s);
}

static void content_type_follows_the_outermost_suffix(void **state) {
        assert_string_equal(store_content_type("20261201T000000Z.sql.zst.age"), "application/age-encrypted");
        assert_string_equal(store_content_type("20261201T000000Z.tar.zst"), "application/zstd");
        assert_string_equal(store_content_type("x/base.tar"), "application/x-tar");
        assert_string_equal(store_content_type("20261201T000000Z.json"), "application/json");
        assert_null(store_content_type("20261201T000000Z/db/gitea.dump"));
        assert_null(store_content_type("zst"));
}

/* The writer keeps it with the file (where the file system has user extended attributes). */
static void local_writer_keeps_the_content_type(void **state) {
        Store *s = *state;
        _cleanup_free_ char *path = path_join(root, "a.sql.zst.age");
        char buf[64] = "";
        ssize_t n;

        assert_int_equal(store_put_buffer(s, "a.sql.zst.age", "x", 1), 0);
        n = getxattr(path, "user.skyforge.content-type", buf, sizeof buf - 1);
        if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP))
                skip();
        assert_true(n > 0);
        assert_string_equal(buf, "application/age-encrypted");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                BOTH_WAYS(local_open_existing_creates_nothing),
                cmocka_unit_test(content_type_follows_the_outermost_suffix),
                BOTH_WAYS(local_writer_keeps_the_content_type),
                BOTH_WAYS(local_uncommitted_write_leaves_nothing),
                BOTH_WAYS(local_commit_makes_object_visible),
                BOTH_WAYS(local_list_is_sorted_bytewise_with_prefix),
                BOTH_WAYS(local_rejects_aliasing_and_hidden_names),
                BOTH_WAYS(local_rejects_escaping_names),
                BOTH_WAYS(backups_exist_only_with_manifest_and_orphans_are_cleaned),
                BOTH_WAYS(local_never_goes_through_a_symlinked_directory),
                BOTH_WAYS(local_never_follows_a_symlink_as_the_object),
                BOTH_WAYS(local_refuses_what_is_not_a_regular_file),
                BOTH_WAYS(local_cleanup_stays_inside),
                BOTH_WAYS(cleanup_leaves_another_writers_write_in_flight),
                BOTH_WAYS(local_lister_pages_in_the_order_of_list),
                BOTH_WAYS(local_copy_keeps_attributes_and_lists_with_the_recorded_etag),
                BOTH_WAYS(local_name_valid_refuses_what_a_directory_cannot_hold),
                BOTH_WAYS(local_root_lists_subdirectories_as_buckets),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
