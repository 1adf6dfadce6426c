/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "jobs/volumes-nodes.h"
#include "log/log.h"

static void location_of(const char *dest, const char *node, const char *want) {
        Config c = { .volumes = { .destination = (char *) dest }, .agent = { .node_name = (char *) "self" } };
        _cleanup_free_ char *got = NULL;

        assert_int_equal(volumes_node_location(&c, node, &got), 0);
        assert_string_equal(got, want);
}

static void the_node_folder_is_one_level_below_the_destination(void **state) {
        location_of("/var/lib/b/volumes", NULL, "/var/lib/b/volumes/self");
        location_of("/var/lib/b/volumes/", "node-a", "/var/lib/b/volumes/node-a");
        location_of("minio:skyforge-backups/volumes/", "node-a", "minio:skyforge-backups/volumes/node-a/");
        location_of("minio:skyforge-backups/volumes", "node-a", "minio:skyforge-backups/volumes/node-a/");
        location_of("minio:skyforge-backups", "node-a", "minio:skyforge-backups/node-a/");
        location_of("minio:skyforge-backups/", NULL, "minio:skyforge-backups/self/");
}

static void a_bad_node_name_is_an_error_naming_node_name(void **state) {
        Config c = { .volumes = { .destination = (char *) "/d" }, .agent = { .node_name = (char *) "../up" } };
        _cleanup_free_ char *got = NULL;

        assert_int_equal(volumes_node_location(&c, NULL, &got), -EINVAL);
        assert_null(got);
        assert_non_null(strstr(err_message(), "node_name"));
        err_clear();
        c.agent.node_name = (char *) "ok";
        assert_int_equal(volumes_node_location(&c, "a/b", &got), -EINVAL);
        assert_null(got);
        err_clear();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(the_node_folder_is_one_level_below_the_destination),
                cmocka_unit_test(a_bad_node_name_is_an_error_naming_node_name),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
