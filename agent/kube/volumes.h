/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "kube/client.h"

/* PersistentVolumeClaims, PersistentVolumes and the workloads that mount them (apps/v1 Deployments and
 * StatefulSets with their autoscaling/v1 Scale subresource): what the volumes job and the recover volumes
 * step need. Everything read from the API is hostile: names are checked before they go into a URL path,
 * a PV's directory must be a clean absolute path. */

#define KUBE_HOSTNAME_LABEL "kubernetes.io/hostname"
/* The most items one listing may bring: far beyond the PVCs, PVs or workloads of any real cluster. */
#define KUBE_LIST_ITEMS_MAX 100000U

/* Every item of a (paged) list at path ("/api/v1/persistentvolumes") into a new json-c array; follows
 * continue tokens (a 410 restarts the listing, a repeated token or too many pages is an error). */
int kube_list_all(KubeClient *c, const char *path, const char *what, json_object **ret_items);

/* The fields of a PVC; strings point into pvc. phase and volume are NULL when absent. */
typedef struct KubeClaim {
        const char *namespace;
        const char *name;
        const char *phase; /* status.phase: "Bound", "Pending", "Lost" */
        const char *volume; /* spec.volumeName */
} KubeClaim;
/* -EBADMSG when namespace or name is missing or not a valid name; volume is NULL when invalid. */
int kube_claim_parse(json_object *pvc, KubeClaim *ret);
bool kube_claim_bound(const KubeClaim *k);

/* Where a PV keeps its data on node: spec.local.path or spec.hostPath.path, when its node affinity
 * (spec.nodeAffinity.required.nodeSelectorTerms[].matchExpressions, key kubernetes.io/hostname, operator
 * In) names node. 0 with *ret_path (into pv); -EXDEV with *ret_why when it lives elsewhere (another node,
 * no node affinity, not a directory PV); -EBADMSG with *ret_why when the path is not a clean absolute
 * path. *ret_why is to free. */
int kube_pv_local_path(json_object *pv, const char *node, const char **ret_path, char **ret_why);
/* spec.claimRef of a PV: 0 with namespace and name (into pv), -ENOENT when it has none. */
int kube_pv_claim_ref(json_object *pv, const char **ret_namespace, const char **ret_name);
/* An absolute path without ".", ".." or empty components and without control characters. */
bool kube_local_path_valid(const char *p);

/* Whether a Deployment or StatefulSet's pods mount the claim: a pod template volume that names it, or
 * (StatefulSet) a volumeClaimTemplate whose claims are TEMPLATE-STATEFULSET-ORDINAL. */
bool kube_workload_mounts_claim(json_object *workload, const char *claim);
/* Whether a Pod mounts the claim. */
bool kube_pod_mounts_claim(json_object *pod, const char *claim);

/* The Deployments and StatefulSets of namespace ns whose pods mount claim, as "deployments/NAME" and
 * "statefulsets/NAME" (sorted, to free). */
int kube_workloads_using_claim(KubeClient *c, const char *ns, const char *claim, char ***ret);
/* The Pods of ns that mount claim (terminating ones included): how many, and the first one's name. */
int kube_pods_using_claim(KubeClient *c, const char *ns, const char *claim, size_t *ret_n, char **ret_first);

/* The Scale subresource of workload ("deployments/NAME" or "statefulsets/NAME"): spec.replicas and
 * status.replicas. */
int kube_scale_get(KubeClient *c, const char *ns, const char *workload, unsigned *ret_spec,
                   unsigned *ret_status);
/* GET the Scale, then PUT it with spec.replicas set, conditional on its resourceVersion (a 409 Conflict
 * reads it again, a few times). Nothing is written when it has that count already. *ret_old (may be
 * NULL) gets spec.replicas as it was. */
int kube_scale_set(KubeClient *c, const char *ns, const char *workload, unsigned replicas,
                   unsigned *ret_old);
