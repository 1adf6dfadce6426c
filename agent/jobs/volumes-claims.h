/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"
#include "kube/client.h"

/* [volumes] claims = and exclude =, resolved through the Kubernetes API: each bound PVC whose name
 * matches → its PV → the PV's directory, when the PV lives on this node. */

typedef struct VolumeClaim {
        char *name; /* NAMESPACE/PVC */
        char *path; /* the PV's directory on this node */
        char *pv;
} VolumeClaim;

typedef struct VolumeClaims {
        VolumeClaim *items;
        size_t n;
} VolumeClaims;

void volume_claim_done(VolumeClaim *k);
void volume_claims_done(VolumeClaims *l);

/* This node's name in PV node affinities: [agent] node_name, else the host name. */
const char *volumes_node_name(const Config *c, char *buf, size_t n);

/* The client for [volumes] kubeconfig. */
int volumes_kube_open(const Config *c, KubeClient **ret);

/* Whether error r from volumes_kube_open() or a request means "no cluster here" (no kubeconfig, API
 * unreachable), not a refusal or a broken reply. */
bool volumes_kube_unreachable(int r);

/* Whether NAMESPACE/PVC name is picked by claims (NULL: all) and not by exclude. */
bool volumes_claim_selected(char *const *claims, char *const *exclude, const char *name);

/* Resolves the claims of c through client: the selected, bound PVCs whose PV lives on this node, sorted by
 * name. PVCs and PVs that do not qualify are logged (a warning when hostile or when an explicit pattern
 * picked them) and left out. */
int volumes_claims_resolve(const Config *c, KubeClient *client, VolumeClaims *ret);

/* The PV directory of one claim on this node, for recover: 0 with *ret_claim filled; -EAGAIN (nothing
 * recorded) while the PVC is missing or not bound; errors with err_set() otherwise (PV elsewhere,
 * hostile path). */
int volumes_claim_lookup(const Config *c, KubeClient *client, const char *name, VolumeClaim *ret_claim);

/* The claims of a backup: resolved through the API. When no API is reachable (no kubeconfig, connection
 * refused, timed out) and claims = was not written (the default *), 0 with an empty list and a note in the
 * journal: the backup holds the paths only. An explicit claims = fails then, as does any refusal. */
int volumes_claims_for_backup(const Config *c, VolumeClaims *ret);
