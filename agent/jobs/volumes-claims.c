/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fnmatch.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "jobs/lease-guard.h"
#include "jobs/volumes-claims.h"
#include "kube/kubeconfig.h"
#include "kube/volumes.h"
#include "log/log.h"

void volume_claim_done(VolumeClaim *k) {
        free(k->name);
        free(k->path);
        free(k->pv);
        *k = (VolumeClaim){};
}

void volume_claims_done(VolumeClaims *l) {
        for (size_t i = 0; i < l->n; i++)
                volume_claim_done(&l->items[i]);
        free(l->items);
        *l = (VolumeClaims){};
}

const char *volumes_node_name(const Config *c, char *buf, size_t n) {
        return lease_guard_node_name(c, buf, n);
}

int volumes_kube_open(const Config *c, KubeClient **ret) {
        const char *path = c->volumes.kubeconfig ?: KUBECONFIG_DEFAULT_PATH;

        if (access(path, F_OK) < 0 && errno == ENOENT)
                return err_set(-ENOENT, EX_UNAVAILABLE,
                               "no kubeconfig at %s, so no Kubernetes API to resolve claims through (is k3s "
                               "installed? or set kubeconfig = in [volumes] or [agent])",
                               path);
        return kube_client_open(path, ret);
}

bool volumes_kube_unreachable(int r) {
        switch (-r) {
        case ENOENT:
        case ECONNREFUSED:
        case ETIMEDOUT:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ECONNABORTED:
        case ECONNRESET:
        case EHOSTDOWN:
                return true;
        default:
                return false;
        }
}

bool volumes_claim_selected(char *const *claims, char *const *exclude, const char *name) {
        bool picked = strv_isempty(claims);

        for (size_t i = 0; claims && claims[i]; i++)
                picked = picked || fnmatch(claims[i], name, FNM_PATHNAME) == 0;
        for (size_t i = 0; exclude && exclude[i]; i++)
                if (fnmatch(exclude[i], name, FNM_PATHNAME) == 0)
                        return false;
        return picked;
}

static json_object *pv_find(json_object *pvs, const char *name) {
        for (size_t i = 0; i < json_object_array_length(pvs); i++) {
                json_object *pv = json_object_array_get_idx(pvs, i), *meta, *n;
                if (json_object_object_get_ex(pv, "metadata", &meta) &&
                    json_object_object_get_ex(meta, "name", &n) &&
                    json_object_is_type(n, json_type_string) && streq(json_object_get_string(n), name))
                        return pv;
        }
        return NULL;
}

/* The checks shared by the backup and recover: the PV is the claim's, on this node, its directory a clean
 * absolute path that exists and is a directory. 0 with *ret_path (into pv); -EXDEV (elsewhere) or
 * -EBADMSG (hostile, broken) with *ret_why. */
static int claim_pv_check(const KubeClaim *k, json_object *pv, const char *node, const char **ret_path,
                          char **ret_why) {
        const char *ref_ns, *ref_name, *path;
        struct stat st;
        int r;

        if (kube_pv_claim_ref(pv, &ref_ns, &ref_name) < 0 || !streq(ref_ns, k->namespace) ||
            !streq(ref_name, k->name)) {
                *ret_why = xasprintf("PersistentVolume %s is not bound to it (its claimRef names another "
                                     "claim)",
                                     k->volume);
                return -EBADMSG;
        }
        r = kube_pv_local_path(pv, node, &path, ret_why);
        if (r < 0)
                return r;
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
                *ret_why = xasprintf("the directory %s of PersistentVolume %s %s", path, k->volume,
                                     errno == ENOENT ? "does not exist on this node" : "is not a directory");
                return -EBADMSG;
        }
        *ret_path = path;
        return 0;
}

static int claim_cmp(const void *a, const void *b) {
        return strcmp(((const VolumeClaim *) a)->name, ((const VolumeClaim *) b)->name);
}

int volumes_claims_resolve(const Config *c, KubeClient *client, VolumeClaims *ret) {
        const VolumesConfig *vc = &c->volumes;
        _cleanup_(volume_claims_done) VolumeClaims l = {};
        json_object *pvcs = NULL, *pvs = NULL;
        bool all = strv_isempty(vc->claims);
        char nodebuf[256];
        const char *node = volumes_node_name(c, nodebuf, sizeof nodebuf);
        int r;

        r = kube_list_all(client, "/api/v1/persistentvolumeclaims",
                          "list PersistentVolumeClaims in all namespaces", &pvcs);
        if (r >= 0)
                r = kube_list_all(client, "/api/v1/persistentvolumes", "list PersistentVolumes", &pvs);
        for (size_t i = 0; r >= 0 && i < json_object_array_length(pvcs); i++) {
                _cleanup_free_ char *name = NULL, *why = NULL;
                const char *path = NULL;
                json_object *pv;
                KubeClaim k;
                int q;

                if (kube_claim_parse(json_object_array_get_idx(pvcs, i), &k) < 0) {
                        log_warning(
                                "Skipping a PersistentVolumeClaim from the Kubernetes API at %s without a "
                                "valid namespace and name.",
                                kube_client_server(client));
                        continue;
                }
                name = xasprintf("%s/%s", k.namespace, k.name);
                if (!volumes_claim_selected(vc->claims, vc->exclude, name))
                        continue;
                if (!kube_claim_bound(&k)) {
                        log_full_errno(all ? LOG_INFO : LOG_WARNING, 0,
                                       "Skipping claim %s: it is not bound to a volume (phase %s).", name,
                                       strna(k.phase));
                        continue;
                }
                pv = pv_find(pvs, k.volume);
                if (!pv) {
                        log_warning("Skipping claim %s: its PersistentVolume %s is not in the cluster.",
                                    name, k.volume);
                        continue;
                }
                q = claim_pv_check(&k, pv, node, &path, &why);
                if (q == -EXDEV) {
                        log_full_errno(
                                all ? LOG_INFO : LOG_NOTICE, 0,
                                "Skipping claim %s: PersistentVolume %s is not a directory on this node "
                                "(%s).",
                                name, k.volume, why);
                        continue;
                }
                if (q < 0) {
                        log_warning("Skipping claim %s: %s.", name, why);
                        continue;
                }
                l.items = xrealloc(l.items, (l.n + 1) * sizeof *l.items);
                l.items[l.n++] = (VolumeClaim){ .name = TAKE_PTR(name),
                                                .path = xstrdup(path),
                                                .pv = xstrdup(k.volume) };
        }
        if (pvcs)
                json_object_put(pvcs);
        if (pvs)
                json_object_put(pvs);
        if (r < 0)
                return r;
        if (l.n > 1)
                qsort(l.items, l.n, sizeof *l.items, claim_cmp);
        *ret = l;
        l = (VolumeClaims){};
        return 0;
}

int volumes_claim_lookup(const Config *c, KubeClient *client, const char *name, VolumeClaim *ret_claim) {
        _cleanup_(kube_reply_done) KubeReply pvc = {}, pv = {};
        _cleanup_free_ char *ns = NULL, *path = NULL, *what = NULL, *why = NULL;
        const char *slash = strchr(name, '/'), *dir;
        char nodebuf[256];
        KubeClaim k;
        int r;

        if (!slash || !kube_name_valid(slash + 1, 253))
                return err_set(-EINVAL, EX_DATAERR, "\"%s\" is not a NAMESPACE/PVC name", name);
        ns = xstrndup(name, (size_t) (slash - name));
        if (!kube_name_valid(ns, 63))
                return err_set(-EINVAL, EX_DATAERR, "\"%s\" is not a NAMESPACE/PVC name", name);
        path = xasprintf("/api/v1/namespaces/%s/persistentvolumeclaims/%s", ns, slash + 1);
        what = xasprintf("read PersistentVolumeClaim %s", name);
        r = kube_request_json(client, "GET", path, NULL, &pvc);
        if (r < 0)
                return r;
        if (pvc.status == 404)
                return -EAGAIN;
        if (pvc.status != 200)
                return kube_reply_error(client, &pvc, what);
        if (kube_claim_parse(pvc.json, &k) < 0 || !streq(k.namespace, ns) || !streq(k.name, slash + 1))
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the Kubernetes API at %s answered GET %s with something that is not that "
                               "PersistentVolumeClaim",
                               kube_client_server(client), path);
        if (!kube_claim_bound(&k))
                return -EAGAIN;
        free(path);
        path = xasprintf("/api/v1/persistentvolumes/%s", k.volume);
        free(what);
        what = xasprintf("read PersistentVolume %s", k.volume);
        r = kube_request_json(client, "GET", path, NULL, &pv);
        if (r < 0)
                return r;
        if (pv.status == 404)
                return -EAGAIN; /* bound a moment ago; the PV shows up */
        if (pv.status != 200)
                return kube_reply_error(client, &pv, what);
        r = claim_pv_check(&k, pv.json, volumes_node_name(c, nodebuf, sizeof nodebuf), &dir, &why);
        if (r == -EXDEV)
                return err_set(r, EX_UNAVAILABLE,
                               "claim %s is bound to PersistentVolume %s, which is not a directory on this "
                               "node (%s): run the recover volumes step on the node that holds it",
                               name, k.volume, why);
        if (r < 0)
                return err_set(r, EX_DATAERR, "cannot restore claim %s: %s", name, why);
        *ret_claim = (VolumeClaim){ .name = xstrdup(name), .path = xstrdup(dir), .pv = xstrdup(k.volume) };
        return 0;
}

static char *claims_text(char *const *claims) {
        char *s = NULL;

        if (strv_isempty(claims))
                return xstrdup("*");
        for (size_t i = 0; claims[i]; i++) {
                char *j = xasprintf("%s%s%s", strempty(s), s ? " " : "", claims[i]);
                free(s);
                s = j;
        }
        return s;
}

int volumes_claims_for_backup(const Config *c, VolumeClaims *ret) {
        const VolumesConfig *vc = &c->volumes;
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        _cleanup_free_ char *patterns = claims_text(vc->claims);
        int r;

        r = volumes_kube_open(c, &client);
        if (r >= 0)
                r = volumes_claims_resolve(c, client, ret);
        if (r >= 0)
                return 0;
        if (r == -ECANCELED)
                return r;
        if (volumes_kube_unreachable(r) && !vc->claims_set) {
                /* claims = * is the default: on a node without a cluster (or before k3s), the paths alone
                 * are what the operator asked for; said in the journal, never silently. */
                log_full_errno(r == -ENOENT ? LOG_NOTICE : LOG_WARNING, 0,
                               "Claims are not resolved (claims = * by default): %s. This backup holds the "
                               "paths = of [volumes] only.",
                               err_message() ?: strerror(-r));
                *ret = (VolumeClaims){};
                return 0;
        }
        {
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                int code = err_exit_code(r);

                return err_set(r, code,
                               "cannot resolve claims = %s of [volumes] through the Kubernetes API: %s; %s "
                               "(nothing was stored)",
                               patterns, why,
                               volumes_kube_unreachable(r)
                                       ? "start k3s or fix kubeconfig = in [volumes], or remove claims = to "
                                         "back up only paths ="
                                       : "fix the cluster's answer or the kubeconfig's rights (get and list "
                                         "persistentvolumeclaims and persistentvolumes)");
        }
}
