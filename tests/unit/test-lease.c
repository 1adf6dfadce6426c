/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "kube/client.h"
#include "kube/lease.h"

#define SEC USEC_PER_SEC

/* The decision of client-go's tryAcquireOrRenew(): the holder is judged by when THIS node saw the Lease
 * change (observed, on its own monotonic clock) plus leaseDurationSeconds. */
static KubeLeaseDecision decide(bool exists, const char *holder, const char *instance, unsigned duration,
                                uint64_t observed, uint64_t now) {
        KubeLeaseObservation o = { .exists = exists,
                                   .holder = holder,
                                   .holder_instance = instance,
                                   .duration_sec = duration,
                                   .observed_usec = observed };
        return kube_lease_decide(&o, now, "node-a", "i-a");
}

static void test_missing_or_free_lease_is_acquired(void **state) {
        (void) state;
        assert_int_equal(decide(false, NULL, NULL, 0, 0, 1), KUBE_LEASE_ACQUIRE);
        /* Released (holderIdentity cleared) a moment ago: free at once, whatever its duration. */
        assert_int_equal(decide(true, NULL, NULL, 60, 100 * SEC, 100 * SEC), KUBE_LEASE_ACQUIRE);
        assert_int_equal(decide(true, "", NULL, 60, 100 * SEC, 100 * SEC), KUBE_LEASE_ACQUIRE);
}

static void test_other_holder_waits_until_observed_expiry(void **state) {
        (void) state;
        /* Seen changing at t=100 s, 60 s lease: valid until 160 s on this node's clock. */
        assert_int_equal(decide(true, "node-b", "i-b", 60, 100 * SEC, 100 * SEC), KUBE_LEASE_WAIT);
        assert_int_equal(decide(true, "node-b", "i-b", 60, 100 * SEC, 160 * SEC - 1), KUBE_LEASE_WAIT);
        assert_int_equal(decide(true, "node-b", "i-b", 60, 100 * SEC, 160 * SEC), KUBE_LEASE_ACQUIRE);
        assert_int_equal(decide(true, "node-b", NULL, 60, 100 * SEC, 500 * SEC), KUBE_LEASE_ACQUIRE);
}

static void test_times_in_the_lease_play_no_part(void **state) {
        (void) state;
        /* A first sighting is valid for a whole duration from now, however old the holder's renewTime
         * looks: the observation struct carries no times from the Lease at all, so a node whose clock is
         * hours off can neither steal a live Lease nor keep a dead one. Observed just now, at a huge
         * monotonic time: */
        assert_int_equal(decide(true, "node-b", "i-b", 60, 1000000 * SEC, 1000000 * SEC), KUBE_LEASE_WAIT);
        assert_int_equal(decide(true, "node-b", "i-b", 60, 1000000 * SEC, 1000059 * SEC), KUBE_LEASE_WAIT);
        assert_int_equal(decide(true, "node-b", "i-b", 60, 1000000 * SEC, 1000060 * SEC),
                         KUBE_LEASE_ACQUIRE);
}

static void test_own_lease_is_renewed(void **state) {
        (void) state;
        assert_int_equal(decide(true, "node-a", "i-a", 60, 100 * SEC, 100 * SEC), KUBE_LEASE_RENEW);
        /* Written by a tool that does not say which process it is: ours by name, as client-go. */
        assert_int_equal(decide(true, "node-a", NULL, 60, 100 * SEC, 100 * SEC), KUBE_LEASE_RENEW);
        /* Another process of this node (a prune beside the backup, a run that died): like another holder. */
        assert_int_equal(decide(true, "node-a", "i-other", 60, 100 * SEC, 100 * SEC), KUBE_LEASE_WAIT);
        assert_int_equal(decide(true, "node-a", "i-other", 60, 100 * SEC, 161 * SEC), KUBE_LEASE_ACQUIRE);
}

static void test_zero_duration_counts_as_expired_once_seen(void **state) {
        (void) state;
        assert_int_equal(decide(true, "node-b", "i-b", 0, 100 * SEC, 100 * SEC), KUBE_LEASE_ACQUIRE);
}

static void test_build_update_carries_resource_version_and_clears_holder_on_release(void **state) {
        json_object *old = json_tokener_parse(
                "{\"kind\":\"Lease\",\"apiVersion\":\"coordination.k8s.io/v1\",\"metadata\":{\"name\":\"l\","
                "\"namespace\":\"kube-system\",\"resourceVersion\":\"1042\",\"annotations\":{\"keep\":\"1\","
                "\"drop\":\"2\"}},\"spec\":{\"holderIdentity\":\"node-a\",\"leaseDurationSeconds\":60}}");
        const char *ann[] = { "drop", NULL, "new", "3", NULL };
        KubeLeaseSpec spec = { .holder = NULL,
                               .duration_sec = 60,
                               .acquire_usec = 1764617000123456ULL,
                               .renew_usec = 1764617001000000ULL,
                               .transitions = 4,
                               .annotations = ann };
        json_object *o, *meta, *spec_o, *a, *v;
        KubeLease parsed = {};

        (void) state;
        o = kube_lease_build("kube-system", "l", old, &spec);
        assert_true(json_object_object_get_ex(o, "metadata", &meta));
        assert_true(json_object_object_get_ex(meta, "resourceVersion", &v));
        assert_string_equal(json_object_get_string(v), "1042");
        assert_true(json_object_object_get_ex(meta, "annotations", &a));
        assert_true(json_object_object_get_ex(a, "keep", &v));
        assert_false(json_object_object_get_ex(a, "drop", &v));
        assert_true(json_object_object_get_ex(a, "new", &v));
        assert_true(json_object_object_get_ex(o, "spec", &spec_o));
        assert_false(json_object_object_get_ex(spec_o, "holderIdentity", &v));
        assert_true(json_object_object_get_ex(spec_o, "acquireTime", &v));
        assert_string_equal(json_object_get_string(v), "2025-12-01T19:23:20.123456Z");
        assert_true(json_object_object_get_ex(spec_o, "leaseTransitions", &v));
        assert_int_equal(json_object_get_int(v), 4);

        parsed.obj = o;
        assert_int_equal(kube_lease_parse(&parsed), 0);
        assert_null(parsed.holder);
        assert_int_equal(parsed.duration_sec, 60);
        assert_string_equal(parsed.resource_version, "1042");
        assert_string_equal(kube_lease_annotation(&parsed, "new"), "3");
        json_object_put(o);

        /* A create carries no resourceVersion (the API server refuses one). */
        spec.holder = "node-b";
        o = kube_lease_build("kube-system", "l", NULL, &spec);
        assert_true(json_object_object_get_ex(o, "metadata", &meta));
        assert_false(json_object_object_get_ex(meta, "resourceVersion", &v));
        parsed = (KubeLease){ .obj = o };
        assert_int_equal(kube_lease_parse(&parsed), 0);
        assert_string_equal(parsed.holder, "node-b");
        json_object_put(o);
        json_object_put(old);
}

static void test_parse_rejects_what_is_not_a_lease(void **state) {
        KubeLease l = { .obj = json_tokener_parse("{\"kind\":\"Status\",\"metadata\":{}}") };

        (void) state;
        assert_int_equal(kube_lease_parse(&l), -EBADMSG);
        json_object_put(l.obj);
}

static void test_http_date(void **state) {
        uint64_t t = 0;

        (void) state;
        assert_int_equal(kube_parse_http_date("Tue, 01 Dec 2026 19:40:00 GMT", 29, &t), 0);
        assert_int_equal(t, 1796154000ULL * SEC);
        assert_int_equal(kube_parse_http_date("Tue, 01 Xyz 2026 19:40:00 GMT", 29, &t), -EINVAL);
        assert_int_equal(kube_parse_http_date("yesterday", 9, &t), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_or_free_lease_is_acquired),
                cmocka_unit_test(test_other_holder_waits_until_observed_expiry),
                cmocka_unit_test(test_times_in_the_lease_play_no_part),
                cmocka_unit_test(test_own_lease_is_renewed),
                cmocka_unit_test(test_zero_duration_counts_as_expired_once_seen),
                cmocka_unit_test(test_build_update_carries_resource_version_and_clears_holder_on_release),
                cmocka_unit_test(test_parse_rejects_what_is_not_a_lease),
                cmocka_unit_test(test_http_date),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
