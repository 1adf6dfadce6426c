/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <json-c/json.h>

#include <stdlib.h>

#include "log/log.h"
#include "store/manifest.h"

static const char SHA[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

static Manifest *sample(void) {
        Manifest *m = xcalloc(1, sizeof *m);
        m->job = xstrdup("postgres");
        m->id = xstrdup("20261125T144546Z");
        m->started_usec = UINT64_C(1795617946000000);
        m->finished_usec = m->started_usec + 5 * USEC_PER_SEC;
        m->raw_bytes = 123456789;
        m->compression = xstrdup("zstd");
        m->compression_level = 3;
        m->encrypted = true;
        m->recipients = strv_split("age1abc age1def", " ");
        m->tool = xstrdup("pg_dumpall");
        m->tool_version = xstrdup("pg_dumpall (PostgreSQL) 15.20");
        m->server_version = xstrdup("15.20");
        manifest_add_object(m, "20261125T144546Z.sql.zst", 4242, SHA);
        manifest_add_object(m, "20261125T144546Z/gitea.dump", 100, SHA);
        return m;
}

static void manifest_round_trips(void **state) {
        _cleanup_(manifest_freep) Manifest *m = sample(), *back = NULL;
        _cleanup_free_ char *text = manifest_serialize(m), *again = NULL;

        assert_int_equal(manifest_parse(text, &back), 0);
        assert_string_equal(back->job, "postgres");
        assert_string_equal(back->id, "20261125T144546Z");
        assert_true(back->started_usec == m->started_usec);
        assert_true(back->bytes == 4342);
        assert_true(back->raw_bytes == 123456789);
        assert_true(back->encrypted);
        assert_int_equal(strv_length(back->recipients), 2);
        assert_int_equal(back->n_objects, 2);
        assert_string_equal(back->objects[1].name, "20261125T144546Z/gitea.dump");
        assert_string_equal(back->objects[0].sha256, SHA);
        again = manifest_serialize(back);
        assert_string_equal(text, again);
        /* The human-readable times are there for list --json consumers. */
        assert_non_null(strstr(text, "\"started\":\"2026-11-25T14:45:46Z\""));
}

static void manifest_rejects_bad_input(void **state) {
        Manifest *m = NULL;

        assert_int_equal(manifest_parse("not json", &m), -EBADMSG);
        assert_int_equal(manifest_parse("[]", &m), -EBADMSG);
        assert_int_equal(manifest_parse("{\"job\":\"postgres\"}", &m), -EBADMSG);
        assert_int_equal(manifest_parse("{\"job\":\"postgres\",\"id\":\"yesterday\",\"started_usec\":1,"
                                        "\"finished_usec\":2,\"raw_bytes\":3,\"objects\":[]}", &m), -EBADMSG);
        assert_non_null(strstr(err_message(), "invalid id"));
        assert_int_equal(manifest_parse("{\"job\":\"postgres\",\"id\":\"20261125T144546Z\",\"started_usec\":1,"
                                        "\"finished_usec\":2,\"raw_bytes\":3,\"objects\":[{\"name\":\"a\","
                                        "\"bytes\":1,\"sha256\":\"xyz\"}]}", &m), -EBADMSG);
        assert_non_null(strstr(err_message(), "invalid sha256"));
        assert_int_equal(manifest_parse("{\"job\":\"postgres\",\"id\":\"20261125T144546Z\",\"started_usec\":-5,"
                                        "\"finished_usec\":2,\"raw_bytes\":3,\"objects\":[]}", &m), -EBADMSG);
        assert_null(m);
}

static void manifest_names(void **state) {
        char id[BACKUP_ID_LEN + 1];
        _cleanup_free_ char *n = manifest_name("20261125T144546Z");

        assert_string_equal(n, "20261125T144546Z.json");
        assert_true(manifest_name_valid(n, id));
        assert_string_equal(id, "20261125T144546Z");
        assert_false(manifest_name_valid("20261125T144546Z.sql.zst", id));
        assert_false(manifest_name_valid("latest.json", id));
        assert_false(manifest_name_valid("x20261125T144546Z.json", id));
}

#define ID "20261125T144546Z"
#define HEAD \
        "{\"job\":\"postgres\",\"id\":\"" ID "\",\"started_usec\":1,\"finished_usec\":2,\"raw_bytes\":3,"
#define OBJ(name) "{\"name\":\"" name "\",\"bytes\":1,\"sha256\":\"" SHA_LIT "\"}"
#define SHA_LIT   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static void expect_rejected(const char *text, const char *why) {
        Manifest *m = NULL;

        assert_int_equal(manifest_parse(text, &m), -EBADMSG);
        assert_null(m);
        if (!strstr(err_message(), why))
                fail_msg("\"%s\": expected \"%s\" in \"%s\"", text, why, err_message());
}

/* A manifest that restores nothing, or names objects outside the location, is a damaged backup. */
static void manifest_rejects_what_would_not_restore(void **state) {
        _cleanup_(manifest_freep) Manifest *m = NULL;

        assert_int_equal(manifest_parse(HEAD "\"objects\":[" OBJ(ID ".sql.zst") "]}", &m), 0);
        manifest_free(m);
        m = NULL;
        expect_rejected(HEAD "\"objects\":[]}", "lists no objects");
        expect_rejected(HEAD "\"objects\":[" OBJ("../victim") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ(ID "/../../etc/passwd") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ("/etc/passwd") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ(ID "//x") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ(ID "/./x") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ("") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ(ID "/") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ(ID "\\nx") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ("20261124T000000Z.json") "]}", "not a plain name");
        expect_rejected(HEAD "\"objects\":[" OBJ(ID ".sql.zst") "," OBJ(ID ".sql.zst") "]}", "twice");
        expect_rejected(HEAD "\"objects\":[7]}", "not a JSON object");
        /* Truncated, or two writers' texts run together: not valid, whatever prefix parses. */
        expect_rejected(HEAD "\"objects\":[" OBJ(ID ".sql.zst"), "truncated");
        expect_rejected(HEAD "\"objects\":[" OBJ(ID ".sql.zst") "]}{\"job\":1}", "data after");
        assert_int_equal(manifest_parse(HEAD "\"objects\":[" OBJ(ID ".sql.zst") "]}\n \n", &m), 0);
}

static void object_names_belong_to_their_backup(void **state) {
        assert_true(backup_object_belongs(ID, ID ".sql.zst"));
        assert_true(backup_object_belongs(ID, ID "/db/gitea.dump"));
        assert_false(backup_object_belongs(ID, "20261126T000000Z.sql.zst"));
        assert_false(backup_object_belongs(ID, ID));
        assert_false(backup_object_belongs(ID, ID "."));
        assert_false(backup_object_belongs(ID, ID "x.sql.zst"));
        assert_false(backup_object_belongs(ID, ID "/../20261126T000000Z.sql.zst"));
        assert_false(backup_object_belongs("latest", "latest.sql.zst"));
}

/* ---- against a local store ---- */

typedef struct Fixture {
        char dir[64];
        Store *s;
} Fixture;

static int fixture_setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);

        strcpy(f->dir, "/tmp/test-manifest-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(store_local_open(f->dir, &f->s), 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", f->dir);

        store_free(f->s);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void put(Store *s, const char *name, const char *data) {
        assert_int_equal(store_put_buffer(s, name, data, strlen(data)), 0);
}

static bool exists(Store *s, const char *name) {
        StoreEntry e = {};
        int r = store_stat(s, name, &e);

        store_entry_done(&e);
        assert_true(r == 0 || r == -ENOENT);
        return r == 0;
}

static Manifest *backup(Store *s, const char *job, const char *id, const char *const *objects) {
        Manifest *m = xcalloc(1, sizeof *m);

        m->job = xstrdup(job);
        m->id = xstrdup(id);
        m->started_usec = 1;
        for (size_t i = 0; objects[i]; i++) {
                if (!exists(s, objects[i]))
                        put(s, objects[i], "data");
                manifest_add_object(m, objects[i], 4, SHA);
        }
        assert_int_equal(manifest_store(s, m), 0);
        return m;
}

#define NEW "20261125T000000Z"
#define OLD "20261101T000000Z"
#define MID "20261110T000000Z"

/* A manifest copied to an older id (its id edited to match) lists the newest backup's objects: deleting
 * the old backup must leave them. */
static void delete_leaves_objects_of_other_backups(void **state) {
        Fixture *f = *state;
        _cleanup_(manifest_freep) Manifest *newest =
                backup(f->s, "postgres", NEW, (const char *[]){ NEW ".sql.zst", NULL });
        _cleanup_(manifest_freep) Manifest *copy =
                backup(f->s, "postgres", OLD, (const char *[]){ NEW ".sql.zst", OLD ".sql.zst", NULL });
        Manifest *kept[] = { newest };

        assert_int_equal(backup_delete(f->s, copy, kept, 1), 1);
        assert_false(exists(f->s, OLD ".json"));
        assert_false(exists(f->s, OLD ".sql.zst"));
        assert_true(exists(f->s, NEW ".json"));
        assert_true(exists(f->s, NEW ".sql.zst"));
}

/* An object of the deleted backup's own id that a kept manifest also lists stays. */
static void delete_leaves_objects_a_kept_backup_lists(void **state) {
        Fixture *f = *state;
        _cleanup_(manifest_freep) Manifest *old =
                backup(f->s, "postgres", OLD, (const char *[]){ OLD ".sql.zst", NULL });
        _cleanup_(manifest_freep) Manifest *mid =
                backup(f->s, "postgres", MID, (const char *[]){ OLD ".sql.zst", NULL });
        Manifest *kept[] = { mid };

        assert_int_equal(backup_delete(f->s, old, kept, 1), 1);
        assert_false(exists(f->s, OLD ".json"));
        assert_true(exists(f->s, OLD ".sql.zst"));
        assert_int_equal(backup_delete(f->s, old, NULL, 0), 0);
        assert_false(exists(f->s, OLD ".sql.zst"));
}

/* A manifest copied under another name (its id not edited) is a damaged backup, never a second copy of
 * the backup it names (retention would delete that one's manifest). */
static void list_reports_damaged_manifests_and_filters_by_job(void **state) {
        Fixture *f = *state;
        _cleanup_(manifest_freep) Manifest *n =
                backup(f->s, "postgres", NEW, (const char *[]){ NEW ".sql.zst", NULL });
        _cleanup_(manifest_freep) Manifest *c =
                backup(f->s, "config", MID, (const char *[]){ MID ".tar.zst", NULL });
        _cleanup_free_ char *text = manifest_serialize(n);
        _cleanup_(backup_list_done) BackupList all = {}, pg = {}, cfg = {};

        put(f->s, OLD ".json", text);
        put(f->s, "20261001T000000Z.json", "{\"job\":\"postgres\",");
        assert_int_equal(backup_list_load(f->s, NULL, &all), 0);
        assert_int_equal(all.n, 2);
        assert_string_equal(all.items[0]->id, NEW);
        assert_string_equal(all.items[1]->id, MID);
        assert_int_equal(all.n_damaged, 2);
        assert_string_equal(all.damaged[0].id, OLD);
        assert_non_null(strstr(all.damaged[0].message, "holds backup " NEW));
        assert_string_equal(all.damaged[1].id, "20261001T000000Z");
        assert_non_null(strstr(all.damaged[1].message, "20261001T000000Z.json is unreadable"));

        assert_int_equal(backup_list_load(f->s, "postgres", &pg), 0);
        assert_int_equal(pg.n, 1);
        assert_string_equal(pg.items[0]->job, "postgres");
        assert_int_equal(pg.n_damaged, 2);
        assert_int_equal(backup_list_load(f->s, "config", &cfg), 0);
        assert_int_equal(cfg.n, 1);
        assert_string_equal(cfg.items[0]->id, MID);
}

/* Leftovers of an interrupted run are removed only where they are the job's own: never another job's in
 * the same location, nor what has a manifest. */
static void cleanup_removes_only_the_jobs_own_leftovers(void **state) {
        Fixture *f = *state;
        static const char *const pg[] = { ".sql.zst", ".sql.zst.age", "/", NULL };
        static const char *const cfg[] = { ".tar.zst", NULL };
        _cleanup_(manifest_freep) Manifest *kept =
                backup(f->s, "postgres", MID, (const char *[]){ MID ".sql.zst", NULL });

        put(f->s, OLD ".sql.zst", "x"); /* postgres leftover */
        put(f->s, OLD "/db/gitea.dump", "x"); /* postgres per-database leftover */
        put(f->s, NEW ".tar.zst", "x"); /* config's, in flight */
        assert_int_equal(backup_cleanup_orphans(f->s, NULL, "postgres", pg), 2);
        assert_false(exists(f->s, OLD ".sql.zst"));
        assert_false(exists(f->s, OLD "/db/gitea.dump"));
        assert_true(exists(f->s, NEW ".tar.zst"));
        assert_true(exists(f->s, MID ".sql.zst"));

        put(f->s, OLD ".sql.zst", "x");
        assert_int_equal(backup_cleanup_orphans(f->s, NULL, "config", cfg), 1);
        assert_false(exists(f->s, NEW ".tar.zst"));
        assert_true(exists(f->s, OLD ".sql.zst"));
        assert_int_equal(backup_cleanup_orphans(f->s, OLD, "postgres", pg), 0);
        assert_true(exists(f->s, OLD ".sql.zst"));
}

static void size_damage_names_the_missing_or_short_object(void **state) {
        Fixture *f = *state;
        _cleanup_(manifest_freep) Manifest *m =
                backup(f->s, "postgres", NEW, (const char *[]){ NEW ".sql.zst", NEW "/db/a.dump", NULL });
        _cleanup_free_ char *d1 = NULL, *d2 = NULL;

        assert_null(backup_size_damage(f->s, m));
        put(f->s, NEW "/db/a.dump", "dat");
        d1 = backup_size_damage(f->s, m);
        assert_non_null(strstr(d1, NEW "/db/a.dump has 3 bytes, the manifest says 4"));
        assert_int_equal(store_remove(f->s, NEW ".sql.zst"), 0);
        d2 = backup_size_damage(f->s, m);
        assert_non_null(strstr(d2, NEW ".sql.zst is missing"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(manifest_round_trips),
                cmocka_unit_test(manifest_rejects_bad_input),
                cmocka_unit_test(manifest_names),
                cmocka_unit_test(manifest_rejects_what_would_not_restore),
                cmocka_unit_test(object_names_belong_to_their_backup),
                cmocka_unit_test_setup_teardown(delete_leaves_objects_of_other_backups, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(delete_leaves_objects_a_kept_backup_lists, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(list_reports_damaged_manifests_and_filters_by_job,
                                                fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(cleanup_removes_only_the_jobs_own_leftovers, fixture_setup,
                                                fixture_teardown),
                cmocka_unit_test_setup_teardown(size_damage_names_the_missing_or_short_object, fixture_setup,
                                                fixture_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
