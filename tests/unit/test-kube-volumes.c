/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "jobs/volumes-claims.h"
#include "kube/volumes.h"

static json_object *parse(const char *text) {
        json_object *o = json_tokener_parse(text);
        assert_non_null(o);
        return o;
}

#define AFFINITY(node)                                                                            \
        "\"nodeAffinity\":{\"required\":{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":" \
        "\"kubernetes.io/hostname\",\"operator\":\"In\",\"values\":[\"" node "\"]}]}]}}"

static int pv_path(const char *text, const char *node, const char **ret_path, char **ret_why) {
        json_object *pv = parse(text);
        const char *p = NULL;
        int r = kube_pv_local_path(pv, node, &p, ret_why);

        /* The path points into pv: copied out before it goes. */
        static char buf[256];
        if (r >= 0) {
                snprintf(buf, sizeof buf, "%s", p);
                *ret_path = buf;
        }
        json_object_put(pv);
        return r;
}

static void test_pv_on_this_node_gives_its_directory(void **state) {
        const char *path = NULL;
        char *why = NULL;

        (void) state;
        assert_int_equal(pv_path("{\"spec\":{\"hostPath\":{\"path\":\"/var/lib/rancher/k3s/storage/"
                                 "pvc-1\"}," AFFINITY("node-a") "}}",
                                 "node-a", &path, &why),
                         0);
        assert_string_equal(path, "/var/lib/rancher/k3s/storage/pvc-1");
        assert_int_equal(
                pv_path("{\"spec\":{\"local\":{\"path\":\"/mnt/disk/vol\"}," AFFINITY("node-a") "}}",
                        "node-a", &path, &why),
                0);
        assert_string_equal(path, "/mnt/disk/vol");
        /* Terms are ORed: the second names this node. */
        assert_int_equal(
                pv_path("{\"spec\":{\"local\":{\"path\":\"/v\"},\"nodeAffinity\":{\"required\":{"
                        "\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"kubernetes.io/"
                        "hostname\",\"operator\":\"In\",\"values\":[\"b\"]}]},{\"matchExpressions\":[{"
                        "\"key\":\"kubernetes.io/hostname\",\"operator\":\"In\",\"values\":[\"c\","
                        "\"node-a\"]}]}]}}}}",
                        "node-a", &path, &why),
                0);
}

static void test_pv_elsewhere_or_hostile_is_refused(void **state) {
        const char *path = NULL;
        char *why = NULL;

        (void) state;
        assert_int_equal(pv_path("{\"spec\":{\"hostPath\":{\"path\":\"/v\"}," AFFINITY("node-b") "}}",
                                 "node-a", &path, &why),
                         -EXDEV);
        assert_non_null(strstr(why, "does not name this node (node-a)"));
        free(why);
        /* No node affinity at all, NotIn, another key, a value that is not a string: not this node's. */
        assert_int_equal(pv_path("{\"spec\":{\"hostPath\":{\"path\":\"/v\"}}}", "node-a", &path, &why),
                         -EXDEV);
        free(why);
        assert_int_equal(
                pv_path("{\"spec\":{\"hostPath\":{\"path\":\"/v\"},\"nodeAffinity\":{\"required\":{"
                        "\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":\"kubernetes.io/"
                        "hostname\",\"operator\":\"NotIn\",\"values\":[\"node-a\"]},{\"key\":\"zone\","
                        "\"operator\":\"In\",\"values\":[\"node-a\"]},{\"key\":\"kubernetes.io/"
                        "hostname\",\"operator\":\"In\",\"values\":[7]}]}]}}}}",
                        "node-a", &path, &why),
                -EXDEV);
        free(why);
        /* An NFS volume, no spec, not an object. */
        assert_int_equal(pv_path("{\"spec\":{\"nfs\":{\"path\":\"/v\"}}}", "node-a", &path, &why), -EXDEV);
        free(why);
        assert_int_equal(pv_path("{}", "node-a", &path, &why), -EXDEV);
        free(why);
        assert_int_equal(pv_path("[1]", "node-a", &path, &why), -EXDEV);
        free(why);
        assert_int_equal(pv_path("{\"spec\":{\"hostPath\":{\"path\":7}," AFFINITY("node-a") "}}", "node-a",
                                 &path, &why),
                         -EXDEV);
        free(why);
        /* Hostile paths on this node. */
        assert_int_equal(
                pv_path("{\"spec\":{\"hostPath\":{\"path\":\"/var/lib/../../etc\"}," AFFINITY("node-a") "}}",
                        "node-a", &path, &why),
                -EBADMSG);
        assert_non_null(strstr(why, "not a clean absolute path"));
        free(why);
        assert_int_equal(pv_path("{\"spec\":{\"local\":{\"path\":\"relative/dir\"}," AFFINITY("node-a") "}}",
                                 "node-a", &path, &why),
                         -EBADMSG);
        free(why);
}

static void test_local_path_valid(void **state) {
        (void) state;
        assert_true(kube_local_path_valid("/var/lib/rancher/k3s/storage/pvc-1_ns_name"));
        assert_true(kube_local_path_valid("/data/"));
        assert_false(kube_local_path_valid("/"));
        assert_false(kube_local_path_valid(""));
        assert_false(kube_local_path_valid(NULL));
        assert_false(kube_local_path_valid("data"));
        assert_false(kube_local_path_valid("/a/../b"));
        assert_false(kube_local_path_valid("/a/.."));
        assert_false(kube_local_path_valid("/a/./b"));
        assert_false(kube_local_path_valid("/a//b"));
        assert_false(kube_local_path_valid("/a/\nb"));
        assert_true(kube_local_path_valid("/a/..b/.c"));
}

static void test_claim_parse(void **state) {
        json_object *o;
        KubeClaim k;

        (void) state;
        o = parse("{\"metadata\":{\"namespace\":\"apps\",\"name\":\"gitea-data\"},\"spec\":{\"volumeName\":"
                  "\"pvc-1\"},\"status\":{\"phase\":\"Bound\"}}");
        assert_int_equal(kube_claim_parse(o, &k), 0);
        assert_true(kube_claim_bound(&k));
        assert_string_equal(k.volume, "pvc-1");
        json_object_put(o);
        o = parse(
                "{\"metadata\":{\"namespace\":\"apps\",\"name\":\"x\"},\"status\":{\"phase\":\"Pending\"}}");
        assert_int_equal(kube_claim_parse(o, &k), 0);
        assert_false(kube_claim_bound(&k));
        json_object_put(o);
        /* A volume name that cannot go into a URL path is no volume. */
        o = parse("{\"metadata\":{\"namespace\":\"apps\",\"name\":\"x\"},\"spec\":{\"volumeName\":\"../../"
                  "secrets\"},\"status\":{\"phase\":\"Bound\"}}");
        assert_int_equal(kube_claim_parse(o, &k), 0);
        assert_false(kube_claim_bound(&k));
        json_object_put(o);
        o = parse("{\"metadata\":{\"namespace\":\"Apps/x\",\"name\":\"x\"}}");
        assert_int_equal(kube_claim_parse(o, &k), -EBADMSG);
        json_object_put(o);
        o = parse("{\"metadata\":{\"namespace\":\"apps\"}}");
        assert_int_equal(kube_claim_parse(o, &k), -EBADMSG);
        json_object_put(o);
}

static void test_workload_mounts_claim(void **state) {
        json_object *d, *s;

        (void) state;
        d = parse("{\"metadata\":{\"name\":\"gitea\"},\"spec\":{\"template\":{\"spec\":{\"volumes\":[{"
                  "\"name\":"
                  "\"tmp\",\"emptyDir\":{}},{\"name\":\"data\",\"persistentVolumeClaim\":{\"claimName\":"
                  "\"gitea-data\"}}]}}}}");
        assert_true(kube_workload_mounts_claim(d, "gitea-data"));
        assert_false(kube_workload_mounts_claim(d, "gitea"));
        json_object_put(d);
        s = parse("{\"metadata\":{\"name\":\"coder\"},\"spec\":{\"volumeClaimTemplates\":[{\"metadata\":{"
                  "\"name\":\"home\"}}],\"template\":{\"spec\":{}}}}");
        assert_true(kube_workload_mounts_claim(s, "home-coder-0"));
        assert_true(kube_workload_mounts_claim(s, "home-coder-12"));
        assert_false(kube_workload_mounts_claim(s, "home-coder-"));
        assert_false(kube_workload_mounts_claim(s, "home-coder-x"));
        assert_false(kube_workload_mounts_claim(s, "home-other-0"));
        json_object_put(s);
        s = parse("{\"spec\":7}");
        assert_false(kube_workload_mounts_claim(s, "x"));
        json_object_put(s);
}

static void test_claim_selection(void **state) {
        char *apps[] = { (char *) "apps/*", (char *) "*/gitea-data", NULL };
        char *db[] = { (char *) "db/*", (char *) "*/minio", NULL };

        (void) state;
        assert_true(volumes_claim_selected(NULL, NULL, "apps/anything"));
        assert_false(volumes_claim_selected(NULL, db, "db/postgres-data"));
        assert_false(volumes_claim_selected(NULL, db, "storage/minio"));
        assert_true(volumes_claim_selected(apps, db, "apps/x"));
        assert_true(volumes_claim_selected(apps, db, "git/gitea-data"));
        assert_false(volumes_claim_selected(apps, db, "other/x"));
        /* A glob does not cross the slash. */
        char *star[] = { (char *) "*", NULL };
        assert_false(volumes_claim_selected(star, NULL, "apps/x"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pv_on_this_node_gives_its_directory),
                cmocka_unit_test(test_pv_elsewhere_or_hostile_is_refused),
                cmocka_unit_test(test_local_path_valid),
                cmocka_unit_test(test_claim_parse),
                cmocka_unit_test(test_workload_mounts_claim),
                cmocka_unit_test(test_claim_selection),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
