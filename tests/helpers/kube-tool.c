/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Drives the Kubernetes client from the integration tests until the CLI wires it into the config job:
 *   kube-tool [--kubeconfig PATH] [--limit N] list [NAMESPACE...]   prints the export List to stdout
 *   kube-tool [--kubeconfig PATH] apply [--dry-run]                  applies a List read from stdin
 * Errors print err_message() and exit with its sysexits code, as the CLI will. */
#include <getopt.h>
#include <sysexits.h>

#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "log/log.h"

static int fail(int r) {
        fprintf(stderr, "kube-tool: %s\n", err_message() ?: strerror(-r));
        return err_exit_code(r);
}

static int do_list(KubeClient *c, char **namespaces) {
        json_object *list = NULL;
        int r;

        r = kube_list_secrets(c, namespaces, &list);
        if (r < 0)
                return fail(r);
        puts(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(list);
        return EX_OK;
}

static int do_apply(KubeClient *c, bool dry_run) {
        json_object *list = json_object_from_fd(STDIN_FILENO), *items;
        int ret = EX_OK;

        if (!list || !json_object_object_get_ex(list, "items", &items) ||
            !json_object_is_type(items, json_type_array)) {
                fprintf(stderr, "kube-tool: stdin is not a List\n");
                json_object_put(list);
                return EX_DATAERR;
        }
        for (size_t i = 0; i < json_object_array_length(items); i++) {
                json_object *s = json_object_array_get_idx(items, i), *m = NULL, *ns = NULL, *name = NULL;
                KubeApplyResult res;
                int r;

                json_object_object_get_ex(s, "metadata", &m);
                json_object_object_get_ex(m, "namespace", &ns);
                json_object_object_get_ex(m, "name", &name);
                r = kube_apply_secret(c, s, dry_run, &res);
                if (r < 0) {
                        ret = fail(r);
                        break;
                }
                printf("%s %s/%s%s\n", kube_apply_result_to_string(res), json_object_get_string(ns),
                       json_object_get_string(name), dry_run ? " (dry run)" : "");
        }
        json_object_put(list);
        return ret;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "kubeconfig", required_argument, NULL, 'k' },
                { "limit", required_argument, NULL, 'l' },
                { "dry-run", no_argument, NULL, 'n' },
                {},
        };
        _cleanup_(kubeconfig_freep) KubeConfig *kc = NULL;
        _cleanup_(kube_client_freep) KubeClient *c = NULL;
        const char *path = NULL;
        unsigned limit = 0;
        bool dry_run = false;
        int opt, r;

        log_setup();
        while ((opt = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (opt) {
                case 'k':
                        path = optarg;
                        break;
                case 'l':
                        limit = (unsigned) atoi(optarg);
                        break;
                case 'n':
                        dry_run = true;
                        break;
                default:
                        return EX_USAGE;
                }
        if (optind >= argc) {
                fprintf(stderr, "usage: kube-tool [--kubeconfig PATH] [--limit N] list [NS...]\n"
                                "       kube-tool [--kubeconfig PATH] apply [--dry-run]\n");
                return EX_USAGE;
        }
        r = kubeconfig_load(path, &kc);
        if (r < 0)
                return fail(r);
        r = kube_client_new(kc, &c);
        if (r < 0)
                return fail(r);
        kube_client_set_page_size(c, limit);
        if (streq(argv[optind], "list"))
                return do_list(c, optind + 1 < argc ? argv + optind + 1 : NULL);
        if (streq(argv[optind], "apply"))
                return do_apply(c, dry_run);
        fprintf(stderr, "kube-tool: unknown command %s\n", argv[optind]);
        return EX_USAGE;
}
