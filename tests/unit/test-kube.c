/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sysexits.h>

#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "log/log.h"

/* "-----BEGIN CERTIFICATE-----\nCA\n" and friends, base64-encoded as kubeconfigs carry them. */
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCg=="
#define CERT_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNFUlQK"
#define KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCktFWQo="

/* The shape k3s writes to /etc/rancher/k3s/k3s.yaml. */
static const char k3s_yaml[] = "apiVersion: v1\n"
                               "clusters:\n"
                               "- cluster:\n"
                               "    certificate-authority-data: " CA_B64 "\n"
                               "    server: https://127.0.0.1:6443/\n"
                               "  name: default\n"
                               "contexts:\n"
                               "- context:\n"
                               "    cluster: default\n"
                               "    user: default\n"
                               "  name: default\n"
                               "current-context: default\n"
                               "kind: Config\n"
                               "preferences: {}\n"
                               "users:\n"
                               "- name: default\n"
                               "  user:\n"
                               "    client-certificate-data: " CERT_B64 "\n"
                               "    client-key-data: " KEY_B64 "\n";

static int parse(const char *yaml, KubeConfig **ret) {
        err_clear();
        return kubeconfig_parse(yaml, strlen(yaml), "/etc/test/kc.yaml", ret);
}

static void kubeconfig_parses_k3s_shape(void **state) {
        _cleanup_(kubeconfig_freep) KubeConfig *c = NULL;

        assert_int_equal(parse(k3s_yaml, &c), 0);
        assert_string_equal(c->context, "default");
        assert_string_equal(c->cluster, "default");
        assert_string_equal(c->user, "default");
        assert_string_equal(c->server, "https://127.0.0.1:6443"); /* trailing slash dropped */
        assert_false(c->insecure_skip_tls_verify);
        assert_string_equal(c->ca_pem, "-----BEGIN CERTIFICATE-----\nCA\n");
        assert_int_equal(c->ca_pem_size, strlen(c->ca_pem));
        assert_string_equal(c->client_cert_pem, "-----BEGIN CERTIFICATE-----\nCERT\n");
        assert_string_equal(c->client_key_pem, "-----BEGIN PRIVATE KEY-----\nKEY\n");
        assert_null(c->token);
}

/* Several contexts; the current one picks the second cluster and a token user, with flow-style
 * mappings, quoted scalars and an anchor, all of which kubeconfigs in the wild use. */
static void kubeconfig_follows_current_context(void **state) {
        static const char yaml[] =
                "kind: Config\n"
                "current-context: 'prod'\n"
                "clusters:\n"
                "- name: dev\n"
                "  cluster: {server: 'https://dev:6443'}\n"
                "- name: prod\n"
                "  cluster:\n"
                "    server: \"https://10.0.0.1:6443\"\n"
                "    insecure-skip-tls-verify: true\n"
                "contexts:\n"
                "- {name: dev, context: {cluster: dev, user: admin}}\n"
                "- name: prod\n"
                "  context: &ctx\n"
                "    cluster: prod\n"
                "    user: robot\n"
                "users:\n"
                "- name: admin\n"
                "  user: {client-certificate-data: " CERT_B64 ", client-key-data: " KEY_B64 "}\n"
                "- name: robot\n"
                "  user:\n"
                "    token: abc.def\n";
        _cleanup_(kubeconfig_freep) KubeConfig *c = NULL;

        assert_int_equal(parse(yaml, &c), 0);
        assert_string_equal(c->context, "prod");
        assert_string_equal(c->cluster, "prod");
        assert_string_equal(c->user, "robot");
        assert_string_equal(c->server, "https://10.0.0.1:6443");
        assert_true(c->insecure_skip_tls_verify);
        assert_null(c->ca_pem);
        assert_null(c->client_cert_pem);
        assert_null(c->client_key_pem);
        assert_string_equal(c->token, "abc.def");
}

static void write_file(const char *path, const char *s) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_true(fputs(s, f) >= 0);
        assert_int_equal(fclose(f), 0);
}

/* certificate-authority, client-certificate, client-key and tokenFile name files; relative names are
 * relative to the kubeconfig's directory, as kubectl reads them. */
static void kubeconfig_reads_referenced_files(void **state) {
        char dir[] = "/tmp/test-kube-XXXXXX";
        _cleanup_free_ char *kc = NULL, *ca = NULL, *yaml = NULL, *cert = NULL, *key = NULL, *tok = NULL;
        _cleanup_(kubeconfig_freep) KubeConfig *c = NULL;

        assert_non_null(mkdtemp(dir));
        kc = path_join(dir, "config");
        ca = path_join(dir, "ca.crt");
        cert = path_join(dir, "client.crt");
        key = path_join(dir, "client.key");
        tok = path_join(dir, "token");
        write_file(ca, "CA PEM\n");
        write_file(cert, "CERT PEM\n");
        write_file(key, "KEY PEM\n");
        write_file(tok, "  s3cr3t-token\n");
        yaml = xasprintf(
                "current-context: c\n"
                "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                "clusters: [{name: k, cluster: {server: 'https://h:6443', certificate-authority: %s}}]\n"
                "users: [{name: u, user: {client-certificate: client.crt, client-key: ./client.key,\n"
                "         tokenFile: token}}]\n",
                ca);
        write_file(kc, yaml);

        err_clear();
        assert_int_equal(kubeconfig_load(kc, &c), 0);
        assert_string_equal(c->ca_pem, "CA PEM\n");
        assert_string_equal(c->client_cert_pem, "CERT PEM\n");
        assert_string_equal(c->client_key_pem, "KEY PEM\n");
        assert_int_equal(c->client_key_pem_size, 8);
        assert_string_equal(c->token, "s3cr3t-token");

        /* A referenced file that is gone is named in the error. */
        assert_int_equal(unlink(key), 0);
        kubeconfig_free(TAKE_PTR(c));
        assert_int_equal(kubeconfig_load(kc, &c), -ENOENT);
        if (!strstr(err_message(), "/./client.key"))
                fail_msg("%s", err_message());
        assert_non_null(strstr(err_message(), "user \"u\""));

        unlink(ca);
        unlink(cert);
        unlink(tok);
        unlink(kc);
        assert_int_equal(rmdir(dir), 0);
}

static void assert_parse_fails(const char *yaml, int error, const char *needle) {
        KubeConfig *c = NULL;

        assert_int_equal(parse(yaml, &c), error);
        assert_null(c);
        assert_non_null(err_message());
        if (!strstr(err_message(), needle))
                fail_msg("\"%s\" not in \"%s\"", needle, err_message());
        assert_int_equal(err_exit_code(error), EX_CONFIG);
}

static void kubeconfig_errors_name_the_problem(void **state) {
        _cleanup_free_ char *no_user = NULL, *bad_ctx = NULL, *bad_cluster = NULL, *bad_user = NULL,
                            *bad_b64 = NULL, *exec = NULL, *half = NULL;

        assert_parse_fails("kind: Config\nclusters: []\n", -EINVAL, "has no current-context");
        assert_parse_fails("", -EBADMSG, "empty or not a mapping");
        assert_parse_fails("current-context: [a\n", -EBADMSG, "not valid YAML");

        bad_ctx = strdup(k3s_yaml);
        memcpy(strstr(bad_ctx, "current-context: default") + 17, "defaulX", 7);
        assert_parse_fails(bad_ctx, -ENOENT, "current-context \"defaulX\" is not listed under contexts");

        bad_cluster = strdup(k3s_yaml);
        memcpy(strstr(bad_cluster, "    cluster: default") + 13, "other  ", 7);
        assert_parse_fails(bad_cluster, -ENOENT, "names cluster \"other\", which is not listed");

        bad_user = strdup(k3s_yaml);
        memcpy(strstr(bad_user, "    user: default") + 10, "nobody ", 7);
        assert_parse_fails(bad_user, -ENOENT, "names user \"nobody\", which is not listed");

        bad_b64 = strdup(k3s_yaml);
        memcpy(strstr(bad_b64, KEY_B64) + 4, "$%", 2);
        assert_parse_fails(bad_b64, -EBADMSG,
                           "client-key-data of user \"default\" in kubeconfig "
                           "/etc/test/kc.yaml is not valid base64");
        free(bad_b64);
        bad_b64 = strdup(k3s_yaml);
        memcpy(strstr(bad_b64, "Cg=="), "C=g=", 4); /* padding in the middle */
        assert_parse_fails(bad_b64, -EBADMSG, "certificate-authority-data of cluster \"default\"");

        exec = xasprintf("%.*s    exec: {command: aws}\n",
                         (int) (strstr(k3s_yaml, "    client-cert") - k3s_yaml), k3s_yaml);
        assert_parse_fails(exec, -EOPNOTSUPP, "exec or auth-provider plugin");

        half = xasprintf("%.*s", (int) (strstr(k3s_yaml, "    client-key") - k3s_yaml), k3s_yaml);
        assert_parse_fails(half, -EINVAL, "has a client certificate but no client key");

        no_user = xasprintf("%.*s", (int) (strstr(k3s_yaml, "users:") - k3s_yaml), k3s_yaml);
        assert_parse_fails(no_user, -ENOENT, "names user \"default\", which is not listed under users");
}

static void kubeconfig_missing_file_asks_for_k3s(void **state) {
        KubeConfig *c = NULL;

        err_clear();
        assert_int_equal(kubeconfig_load("/nonexistent/k3s.yaml", &c), -ENOENT);
        assert_null(c);
        assert_string_equal(err_message(), "no kubeconfig at /nonexistent/k3s.yaml — is k3s installed? "
                                           "(or set kubeconfig = in [config])");
}

/* A Secret as the API server returns it inside a SecretList: no apiVersion/kind, server fields set. */
static const char listed_secret[] =
        "{\"metadata\":{\"name\":\"db\",\"namespace\":\"apps\",\"uid\":\"0b9c\",\"resourceVersion\":\"812\","
        "\"creationTimestamp\":\"2026-01-02T03:04:05Z\",\"selfLink\":\"/api/v1/x\",\"generation\":1,"
        "\"labels\":{\"app\":\"db\"},\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
        "\"{}\"},\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
        "\"name\":\"o\",\"uid\":\"u\"}],"
        "\"managedFields\":[{\"manager\":\"kubectl\",\"operation\":\"Update\"}]},"
        "\"data\":{\"password\":\"aHVudGVyMg==\"},\"type\":\"Opaque\",\"immutable\":false}";

static void export_strips_server_fields(void **state) {
        json_object *in = json_tokener_parse(listed_secret), *out;

        assert_non_null(in);
        out = kube_secret_export(in);
        assert_string_equal(
                json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"db\","
                "\"namespace\":\"apps\",\"labels\":{\"app\":\"db\"},\"annotations\":{"
                "\"kubectl.kubernetes.io/last-applied-configuration\":\"{}\"},\"ownerReferences\":"
                "[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"o\",\"uid\":\"u\"}]},"
                "\"data\":{\"password\":\"aHVudGVyMg==\"},\"type\":\"Opaque\",\"immutable\":false}");
        /* The input is left alone. */
        assert_non_null(strstr(json_object_to_json_string(in), "resourceVersion"));
        json_object_put(out);
        json_object_put(in);
}

static json_object *secret(const char *ns, const char *name, const char *type) {
        _cleanup_free_ char *s =
                xasprintf("{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"uid\":\"x\"},"
                          "\"type\":\"%s\"}",
                          name, ns, type);
        json_object *j = json_tokener_parse(s);
        assert_non_null(j);
        return j;
}

static void collect_skips_tokens_and_sorts(void **state) {
        json_object *page = json_object_new_array(), *out = json_object_new_array();
        static const char *const expected[] = { "apps/a", "apps/b", "apps/b-2", "kube-system/a", "z/a" };

        json_object_array_add(page, secret("z", "a", "Opaque"));
        json_object_array_add(page, secret("apps", "b-2", "Opaque"));
        json_object_array_add(
                page, secret("kube-system", "default-token-x", "kubernetes.io/service-account-token"));
        json_object_array_add(page, secret("kube-system", "a", "kubernetes.io/tls"));
        json_object_array_add(page, secret("apps", "b", "Opaque"));
        json_object_array_add(page, secret("apps", "a", "kubernetes.io/dockerconfigjson"));
        assert_true(kube_secret_is_service_account_token(json_object_array_get_idx(page, 2)));
        assert_false(kube_secret_is_service_account_token(json_object_array_get_idx(page, 3)));

        kube_secrets_collect(page, out);
        kube_secrets_sort(out);
        assert_int_equal(json_object_array_length(out), ELEMENTSOF(expected));
        for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                json_object *m = json_object_object_get(json_object_array_get_idx(out, i), "metadata");
                _cleanup_free_ char *id =
                        xasprintf("%s/%s", json_object_get_string(json_object_object_get(m, "namespace")),
                                  json_object_get_string(json_object_object_get(m, "name")));
                assert_string_equal(id, expected[i]);
                assert_null(json_object_object_get(m, "uid"));
        }
        json_object_put(page);
        json_object_put(out);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(kubeconfig_parses_k3s_shape),
                cmocka_unit_test(kubeconfig_follows_current_context),
                cmocka_unit_test(kubeconfig_reads_referenced_files),
                cmocka_unit_test(kubeconfig_errors_name_the_problem),
                cmocka_unit_test(kubeconfig_missing_file_asks_for_k3s),
                cmocka_unit_test(export_strips_server_fields),
                cmocka_unit_test(collect_skips_tokens_and_sorts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
