/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "jobs/volumes-chain.h"

/* A volumes backup: id, and for volume "/v" a record of kind with parent and full. */
static Manifest *backup(const char *id, const char *parent, const char *full) {
        Manifest *m = xcalloc(1, sizeof *m);
        json_object *v = json_object_new_object(), *a = json_object_new_array();

        m->job = xstrdup("volumes");
        m->id = xstrdup(id);
        json_object_object_add(v, "name", json_object_new_string("/v"));
        json_object_object_add(v, "kind", json_object_new_string(parent ? "incremental" : "full"));
        if (parent)
                json_object_object_add(v, "parent", json_object_new_string(parent));
        json_object_object_add(v, "full", json_object_new_string(full));
        json_object_object_add(v, "archive", json_object_new_string("a"));
        json_object_object_add(v, "catalog", json_object_new_string("c"));
        json_object_object_add(v, "catalog_sha256", json_object_new_string("0"));
        json_object_array_add(a, v);
        m->extra = json_object_new_object();
        json_object_object_add(m->extra, "volumes", a);
        return m;
}

static void chain_runs_from_the_full_to_the_target(void **state) {
        Manifest *items[] = { backup("20260104T000000Z", "20260103T000000Z", "20260101T000000Z"),
                              backup("20260103T000000Z", "20260101T000000Z", "20260101T000000Z"),
                              backup("20260102T000000Z", NULL, "20260102T000000Z"), /* another chain */
                              backup("20260101T000000Z", NULL, "20260101T000000Z") };
        BackupList l = { .items = items, .n = ELEMENTSOF(items) };
        const Manifest **chain = NULL;
        size_t n = 0;

        assert_int_equal(volumes_chain(&l, items[0], "/v", &chain, &n), 0);
        assert_int_equal(n, 3);
        assert_ptr_equal(chain[0], items[3]);
        assert_ptr_equal(chain[1], items[1]);
        assert_ptr_equal(chain[2], items[0]);
        free(chain);
        /* A volume the backup does not hold, and a chain whose parent is gone. */
        assert_int_equal(volumes_chain(&l, items[0], "/other", &chain, &n), -ENOENT);
        l.n = 3;
        assert_int_equal(volumes_chain(&l, items[0], "/v", &chain, &n), -ENOENT);
        for (size_t i = 0; i < ELEMENTSOF(items); i++)
                manifest_free(items[i]);
}

static void retention_keeps_what_a_kept_incremental_needs(void **state) {
        Manifest *items[] = { backup("20260104T000000Z", "20260103T000000Z", "20260101T000000Z"),
                              backup("20260103T000000Z", "20260101T000000Z", "20260101T000000Z"),
                              backup("20260102T000000Z", NULL, "20260102T000000Z"),
                              backup("20260101T000000Z", NULL, "20260101T000000Z") };
        RetentionItem r[4] = {};

        for (size_t i = 0; i < 4; i++)
                r[i] = (RetentionItem){ .id = items[i]->id, .remove = i > 0 };
        volumes_retention_protect(items, r, 4);
        assert_false(r[0].remove);
        assert_false(r[1].remove);
        assert_true(r[2].remove); /* nothing kept depends on it */
        assert_false(r[3].remove);
        assert_string_equal(r[1].reason, "kept: the kept incremental 20260104T000000Z depends on it");
        assert_string_equal(r[3].reason, "kept: the kept incremental 20260103T000000Z depends on it");
        for (size_t i = 0; i < ELEMENTSOF(items); i++)
                manifest_free(items[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(chain_runs_from_the_full_to_the_target),
                cmocka_unit_test(retention_keeps_what_a_kept_incremental_needs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
