/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>

#include "jobs/postgres-db.h"
#include "jobs/verify.h"
#include "store/objects.h"
#include "pipe/pipe.h"

static void object_names_are_percent_encoded(void **state) {
        char *s;

        s = postgres_db_object_encode("gitea");
        assert_string_equal(s, "gitea");
        free(s);
        s = postgres_db_object_encode("netbox_ü 日本/x.y");
        assert_string_equal(s, "netbox_%C3%BC%20%E6%97%A5%E6%9C%AC%2Fx%2Ey");
        free(s);
        s = postgres_db_object_encode(".hidden%");
        assert_string_equal(s, "%2Ehidden%25");
        free(s);
}

static void globals_keep_only_missing_roles(void **state) {
        char sql[] = "--\n-- Roles\n--\n\n"
                     "CREATE ROLE gitea;\n"
                     "ALTER ROLE gitea WITH LOGIN PASSWORD 'SCRAM-SHA-256$x';\n"
                     "CREATE ROLE \"odd \"\"role\";\n"
                     "ALTER ROLE \"odd \"\"role\" WITH NOLOGIN;\n"
                     "CREATE ROLE postgres;\n"
                     "ALTER ROLE postgres WITH SUPERUSER PASSWORD 'secret';\n"
                     "GRANT gitea TO \"odd \"\"role\" GRANTED BY postgres;\n"
                     "GRANT \"odd \"\"role\" TO postgres GRANTED BY postgres;\n"
                     "CREATE TABLESPACE x OWNER postgres LOCATION '/x';\n";
        char *existing[] = { (char *) "postgres", (char *) "gitea", NULL };
        unsigned n = 0;
        char *out = postgres_globals_for_missing_roles(sql, existing, &n);

        assert_int_equal(n, 1);
        assert_string_equal(out, "CREATE ROLE \"odd \"\"role\";\n"
                                 "ALTER ROLE \"odd \"\"role\" WITH NOLOGIN;\n"
                                 "GRANT gitea TO \"odd \"\"role\" GRANTED BY postgres;\n");
        free(out);
}

static void put(Store *s, const char *name, const char *data, Manifest *m) {
        StoreWriter *w = NULL;
        Sink *k;
        Digest d = {};

        assert_int_equal(store_writer_open(s, name, &w), 0);
        k = sink_digest_new(sink_store_new(w), &d);
        assert_int_equal(sink_write(k, data, strlen(data)), 0);
        assert_int_equal(sink_finish(k), 0);
        sink_free(k);
        assert_int_equal(store_writer_commit(w), 0);
        store_writer_free(w);
        manifest_add_object(m, name, d.bytes, d.sha256_hex);
}

static void check_objects_reports_every_problem(void **state) {
        char dir[] = "/tmp/test-verify-XXXXXX";
        Store *s = NULL;
        Manifest *m = xcalloc(1, sizeof *m);
        char **problems = xcalloc(1, sizeof(char *));
        char *cmd;

        assert_non_null(mkdtemp(dir));
        assert_int_equal(store_local_open(dir, &s), 0);
        m->id = xstrdup("20261125T000000Z");
        put(s, "20261125T000000Z.a", "alpha", m);
        put(s, "20261125T000000Z/b", "bravo", m);
        put(s, "20261125T000000Z/c", "charlie", m);
        put(s, "20261125T000000Z/d", "delta", m);
        assert_int_equal(backup_check_objects(s, m, NULL, NULL, &problems), 0);
        assert_int_equal(backup_verify_objects(s, m, false), 0);

        assert_int_equal(store_remove(s, "20261125T000000Z/b"), 0);
        put(s, "20261125T000000Z/c", "charliE", m);   /* same size, other bytes */
        put(s, "20261125T000000Z/d", "delt", m);      /* shorter */
        m->n_objects = 4;                              /* keep the original entries */
        assert_int_equal(backup_check_objects(s, m, NULL, NULL, &problems), 3);
        assert_non_null(strstr(problems[0], "20261125T000000Z/b is missing"));
        assert_non_null(strstr(problems[1], "SHA-256 of"));
        assert_non_null(strstr(problems[2], "has 4 bytes, the manifest says 5"));
        assert_int_equal(backup_verify_objects(s, m, false), -EBADMSG);
        /* Only the named objects. */
        strv_free(problems);
        problems = xcalloc(1, sizeof(char *));
        assert_int_equal(backup_check_objects(s, m, (char *[]){ (char *) "20261125T000000Z.a", NULL }, NULL,
                                              &problems), 0);

        strv_free(problems);
        m->n_objects = 6;
        manifest_free(m);
        store_free(s);
        cmd = xasprintf("rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
        free(cmd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(object_names_are_percent_encoded),
                cmocka_unit_test(globals_keep_only_missing_roles),
                cmocka_unit_test(check_objects_reports_every_problem),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
