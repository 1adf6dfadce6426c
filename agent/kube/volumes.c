/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <limits.h>
#include <sysexits.h>

#include "kube/volumes.h"
#include "log/log.h"

#define LIST_PAGE_SIZE         500U
#define LIST_PAGES_MAX         10000U
#define LIST_RESTARTS_MAX      3
#define SCALE_CONFLICT_RETRIES 5

static json_object *member(json_object *o, const char *key, json_type type) {
        json_object *v;

        if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
            !json_object_is_type(v, type))
                return NULL;
        return v;
}

static const char *member_string(json_object *o, const char *key) {
        json_object *v = member(o, key, json_type_string);
        return v ? json_object_get_string(v) : NULL;
}

static size_t array_length(json_object *a) {
        return a ? json_object_array_length(a) : 0;
}

/* Continue tokens are opaque: escaped whole. */
static char *url_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        char *out = xmalloc(strlen(s) * 3 + 1), *o = out;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~", *p))
                        *o++ = (char) *p;
                else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        *o = 0;
        return out;
}

int kube_list_all(KubeClient *c, const char *path, const char *what, json_object **ret_items) {
        _cleanup_free_ char *cont = NULL;
        json_object *all = json_object_new_array();
        unsigned pages = 0, restarts = 0;
        int r = 0;

        for (;;) {
                _cleanup_(kube_reply_done) KubeReply reply = {};
                _cleanup_free_ char *url = NULL, *esc = NULL;
                json_object *items;
                const char *next;

                if (++pages > LIST_PAGES_MAX) {
                        r = err_set(
                                -ELOOP, EX_PROTOCOL,
                                "the Kubernetes API at %s answered more than %u pages to %s; the listing "
                                "cannot finish (an API server bug?)",
                                kube_client_server(c), LIST_PAGES_MAX, what);
                        break;
                }
                esc = cont ? url_escape(cont) : NULL;
                url = xasprintf("%s?limit=%u%s%s", path, LIST_PAGE_SIZE, esc ? "&continue=" : "",
                                strempty(esc));
                r = kube_request_json(c, "GET", url, NULL, &reply);
                if (r < 0)
                        break;
                if (reply.status == 410 && cont && restarts++ < LIST_RESTARTS_MAX) {
                        /* The snapshot expired: pages of two snapshots could miss or repeat items. */
                        json_object_put(all);
                        all = json_object_new_array();
                        free(cont);
                        cont = NULL;
                        continue;
                }
                if (reply.status != 200) {
                        r = kube_reply_error(c, &reply, what);
                        break;
                }
                items = member(reply.json, "items", json_type_array);
                if (!items && !member(reply.json, "items", json_type_null)) {
                        r = err_set(-EBADMSG, EX_PROTOCOL,
                                    "the Kubernetes API at %s answered the request to %s with something "
                                    "that is not a list",
                                    kube_client_server(c), what);
                        break;
                }
                for (size_t i = 0; i < array_length(items); i++) {
                        json_object *item = json_object_array_get_idx(items, i);
                        if (!json_object_is_type(item, json_type_object))
                                continue;
                        if (json_object_array_length(all) >= KUBE_LIST_ITEMS_MAX) {
                                r = err_set(-E2BIG, EX_PROTOCOL,
                                            "the Kubernetes API at %s answered more than %u items to %s",
                                            kube_client_server(c), KUBE_LIST_ITEMS_MAX, what);
                                break;
                        }
                        json_object_array_add(all, json_object_get(item));
                }
                if (r < 0)
                        break;
                next = member_string(member(reply.json, "metadata", json_type_object), "continue");
                if (isempty(next)) {
                        *ret_items = all;
                        return 0;
                }
                if (cont && streq(cont, next)) {
                        r = err_set(-ELOOP, EX_PROTOCOL,
                                    "the Kubernetes API at %s returned the same continue token twice to %s; "
                                    "the listing cannot finish (an API server bug?)",
                                    kube_client_server(c), what);
                        break;
                }
                free(cont);
                cont = xstrdup(next);
        }
        json_object_put(all);
        return r;
}

int kube_claim_parse(json_object *pvc, KubeClaim *ret) {
        json_object *meta = member(pvc, "metadata", json_type_object);
        KubeClaim k = {
                .namespace = member_string(meta, "namespace"),
                .name = member_string(meta, "name"),
                .phase = member_string(member(pvc, "status", json_type_object), "phase"),
                .volume = member_string(member(pvc, "spec", json_type_object), "volumeName"),
        };

        if (!kube_name_valid(k.namespace, 63) || !kube_name_valid(k.name, 253))
                return -EBADMSG;
        if (k.volume && !kube_name_valid(k.volume, 253))
                k.volume = NULL;
        *ret = k;
        return 0;
}

bool kube_claim_bound(const KubeClaim *k) {
        return streq_ptr(k->phase, "Bound") && k->volume;
}

bool kube_local_path_valid(const char *p) {
        size_t n = p ? strlen(p) : 0;

        if (n < 2 || n >= PATH_MAX || p[0] != '/')
                return false;
        for (const char *s = p; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        for (const char *s = p + 1; *s;) {
                size_t k = strcspn(s, "/");
                if (k == 0 || (k == 1 && s[0] == '.') || (k == 2 && s[0] == '.' && s[1] == '.'))
                        return false;
                s += k;
                if (*s == '/') {
                        s++;
                        if (!*s) /* a trailing slash is fine */
                                break;
                }
        }
        return true;
}

/* Whether one of the node selector terms requires kubernetes.io/hostname In [..., node, ...]. */
static bool affinity_names_node(json_object *pv, const char *node, bool *ret_has_affinity) {
        json_object *req =
                member(member(member(pv, "spec", json_type_object), "nodeAffinity", json_type_object),
                       "required", json_type_object);
        json_object *terms = member(req, "nodeSelectorTerms", json_type_array);

        *ret_has_affinity = array_length(terms) > 0;
        for (size_t i = 0; i < array_length(terms); i++) {
                json_object *exprs =
                        member(json_object_array_get_idx(terms, i), "matchExpressions", json_type_array);
                for (size_t j = 0; j < array_length(exprs); j++) {
                        json_object *e = json_object_array_get_idx(exprs, j);
                        json_object *values = member(e, "values", json_type_array);

                        if (!streq_ptr(member_string(e, "key"), KUBE_HOSTNAME_LABEL) ||
                            !streq_ptr(member_string(e, "operator"), "In"))
                                continue;
                        for (size_t k = 0; k < array_length(values); k++) {
                                json_object *v = json_object_array_get_idx(values, k);
                                if (json_object_is_type(v, json_type_string) &&
                                    streq(json_object_get_string(v), node))
                                        return true;
                        }
                }
        }
        return false;
}

int kube_pv_local_path(json_object *pv, const char *node, const char **ret_path, char **ret_why) {
        json_object *spec = member(pv, "spec", json_type_object);
        const char *path = member_string(member(spec, "local", json_type_object), "path");
        bool has_affinity;

        if (!path)
                path = member_string(member(spec, "hostPath", json_type_object), "path");
        if (!path) {
                *ret_why = xstrdup("not a local or hostPath volume");
                return -EXDEV;
        }
        if (!affinity_names_node(pv, node, &has_affinity)) {
                *ret_why = has_affinity ? xasprintf("its node affinity does not name this node (%s)", node)
                                        : xstrdup("it has no node affinity naming a node "
                                                  "(" KUBE_HOSTNAME_LABEL ")");
                return -EXDEV;
        }
        if (!kube_local_path_valid(path)) {
                *ret_why = xasprintf("its path \"%.200s\" is not a clean absolute path", path);
                return -EBADMSG;
        }
        *ret_path = path;
        return 0;
}

int kube_pv_claim_ref(json_object *pv, const char **ret_namespace, const char **ret_name) {
        json_object *ref = member(member(pv, "spec", json_type_object), "claimRef", json_type_object);
        const char *ns = member_string(ref, "namespace"), *name = member_string(ref, "name");

        if (!ns || !name)
                return -ENOENT;
        *ret_namespace = ns;
        *ret_name = name;
        return 0;
}

static bool volumes_name_claim(json_object *volumes, const char *claim) {
        for (size_t i = 0; i < array_length(volumes); i++) {
                json_object *pvc = member(json_object_array_get_idx(volumes, i), "persistentVolumeClaim",
                                          json_type_object);
                if (streq_ptr(member_string(pvc, "claimName"), claim))
                        return true;
        }
        return false;
}

bool kube_pod_mounts_claim(json_object *pod, const char *claim) {
        return volumes_name_claim(member(member(pod, "spec", json_type_object), "volumes", json_type_array),
                                  claim);
}

bool kube_workload_mounts_claim(json_object *workload, const char *claim) {
        json_object *spec = member(workload, "spec", json_type_object);
        json_object *tmpl = member(member(spec, "template", json_type_object), "spec", json_type_object);
        json_object *vcts = member(spec, "volumeClaimTemplates", json_type_array);
        const char *name = member_string(member(workload, "metadata", json_type_object), "name");

        if (volumes_name_claim(member(tmpl, "volumes", json_type_array), claim))
                return true;
        for (size_t i = 0; name && i < array_length(vcts); i++) {
                const char *t = member_string(
                        member(json_object_array_get_idx(vcts, i), "metadata", json_type_object), "name");
                _cleanup_free_ char *prefix = t ? xasprintf("%s-%s-", t, name) : NULL;
                const char *ordinal = prefix ? startswith(claim, prefix) : NULL;

                if (ordinal && *ordinal && strspn(ordinal, "0123456789") == strlen(ordinal))
                        return true;
        }
        return false;
}

static int strv_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int kube_workloads_using_claim(KubeClient *c, const char *ns, const char *claim, char ***ret) {
        static const char *const kinds[] = { "deployments", "statefulsets" };
        _cleanup_strv_free_ char **l = xcalloc(1, sizeof(char *));
        int r;

        if (!kube_name_valid(ns, 63))
                return -EINVAL;
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                _cleanup_free_ char *path = xasprintf("/apis/apps/v1/namespaces/%s/%s", ns, kinds[k]);
                _cleanup_free_ char *what = xasprintf("list %s in namespace \"%s\"", kinds[k], ns);
                json_object *items = NULL;

                r = kube_list_all(c, path, what, &items);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < json_object_array_length(items); i++) {
                        json_object *w = json_object_array_get_idx(items, i);
                        const char *name = member_string(member(w, "metadata", json_type_object), "name");

                        if (kube_name_valid(name, 253) && kube_workload_mounts_claim(w, claim))
                                strv_push(&l, xasprintf("%s/%s", kinds[k], name));
                }
                json_object_put(items);
        }
        qsort(l, strv_length(l), sizeof *l, strv_cmp);
        *ret = TAKE_PTR(l);
        return 0;
}

int kube_pods_using_claim(KubeClient *c, const char *ns, const char *claim, size_t *ret_n,
                          char **ret_first) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        json_object *items = NULL;
        const char *first = NULL;
        size_t n = 0;
        int r;

        if (!kube_name_valid(ns, 63))
                return -EINVAL;
        path = xasprintf("/api/v1/namespaces/%s/pods", ns);
        what = xasprintf("list pods in namespace \"%s\"", ns);
        r = kube_list_all(c, path, what, &items);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(items); i++) {
                json_object *p = json_object_array_get_idx(items, i);
                if (!kube_pod_mounts_claim(p, claim))
                        continue;
                if (n++ == 0)
                        first = member_string(member(p, "metadata", json_type_object), "name");
        }
        *ret_n = n;
        if (ret_first)
                *ret_first = first ? xstrdup(first) : NULL;
        json_object_put(items);
        return 0;
}

static int scale_path(const char *ns, const char *workload, char **ret) {
        const char *slash = strchr(workload, '/');
        _cleanup_free_ char *kind = slash ? xstrndup(workload, (size_t) (slash - workload)) : NULL;

        if (!kind || !(streq(kind, "deployments") || streq(kind, "statefulsets")) ||
            !kube_name_valid(slash + 1, 253) || !kube_name_valid(ns, 63))
                return -EINVAL;
        *ret = xasprintf("/apis/apps/v1/namespaces/%s/%s/%s/scale", ns, kind, slash + 1);
        return 0;
}

/* spec.replicas (absent: 0, as the API server omits a zero) and status.replicas of a Scale. */
static int scale_parse(json_object *scale, unsigned *ret_spec, unsigned *ret_status) {
        json_object *spec = member(scale, "spec", json_type_object);
        json_object *sr = member(spec, "replicas", json_type_int);
        json_object *st = member(member(scale, "status", json_type_object), "replicas", json_type_int);
        int64_t s = sr ? json_object_get_int64(sr) : 0, t = st ? json_object_get_int64(st) : 0;

        if (!spec || !streq_ptr(member_string(scale, "kind"), "Scale") || s < 0 || s > INT32_MAX || t < 0 ||
            t > INT32_MAX)
                return -EBADMSG;
        *ret_spec = (unsigned) s;
        if (ret_status)
                *ret_status = (unsigned) t;
        return 0;
}

static int scale_read(KubeClient *c, const char *ns, const char *workload, const char *path,
                      KubeReply *ret) {
        _cleanup_free_ char *what = xasprintf("read the scale of %s in namespace \"%s\"", workload, ns);
        int r;

        r = kube_request_json(c, "GET", path, NULL, ret);
        if (r < 0)
                return r;
        if (ret->status == 404) {
                kube_reply_done(ret);
                return err_set(-ENOENT, EX_UNAVAILABLE, "%s in namespace \"%s\" does not exist (any more)",
                               workload, ns);
        }
        if (ret->status != 200) {
                r = kube_reply_error(c, ret, what);
                kube_reply_done(ret);
                return r;
        }
        return 0;
}

int kube_scale_get(KubeClient *c, const char *ns, const char *workload, unsigned *ret_spec,
                   unsigned *ret_status) {
        _cleanup_(kube_reply_done) KubeReply reply = {};
        _cleanup_free_ char *path = NULL;
        int r;

        r = scale_path(ns, workload, &path);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "\"%s\" in \"%s\" is not a workload that scales", workload,
                               ns);
        r = scale_read(c, ns, workload, path, &reply);
        if (r < 0)
                return r;
        if (scale_parse(reply.json, ret_spec, ret_status) < 0)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the Kubernetes API at %s answered GET %s with something that is not an "
                               "autoscaling/v1 Scale",
                               kube_client_server(c), path);
        return 0;
}

int kube_scale_set(KubeClient *c, const char *ns, const char *workload, unsigned replicas,
                   unsigned *ret_old) {
        _cleanup_free_ char *path = NULL, *what = NULL;
        int r;

        r = scale_path(ns, workload, &path);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "\"%s\" in \"%s\" is not a workload that scales", workload,
                               ns);
        what = xasprintf("scale %s in namespace \"%s\" to %u", workload, ns, replicas);
        for (unsigned attempt = 0;; attempt++) {
                _cleanup_(kube_reply_done) KubeReply get = {}, put = {};
                json_object *spec;
                unsigned old;

                r = scale_read(c, ns, workload, path, &get);
                if (r < 0)
                        return r;
                if (scale_parse(get.json, &old, NULL) < 0)
                        return err_set(-EBADMSG, EX_PROTOCOL,
                                       "the Kubernetes API at %s answered GET %s with something that is not "
                                       "an autoscaling/v1 Scale",
                                       kube_client_server(c), path);
                if (ret_old)
                        *ret_old = old;
                if (old == replicas)
                        return 0;
                /* The Scale as read, with the new count: its metadata.resourceVersion makes the PUT
                 * conditional, so a change made meanwhile (kubectl scale, an HPA) is not overwritten. */
                spec = member(get.json, "spec", json_type_object);
                json_object_object_add(spec, "replicas", json_object_new_int64(replicas));
                json_object_object_del(get.json, "status");
                r = kube_request_json(c, "PUT", path, get.json, &put);
                if (r < 0)
                        return r;
                if (put.status == 200 || put.status == 201)
                        return 0;
                if (put.status != 409 || attempt >= SCALE_CONFLICT_RETRIES)
                        return kube_reply_error(c, &put, what);
                log_debug("Kubernetes API: the scale of %s/%s changed meanwhile, reading it again.", ns,
                          workload);
        }
}
