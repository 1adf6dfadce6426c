/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <json-c/json.h>

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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(manifest_round_trips),
                cmocka_unit_test(manifest_rejects_bad_input),
                cmocka_unit_test(manifest_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
