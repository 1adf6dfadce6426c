/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "kube/client.h"

/* coordination.k8s.io/v1 Leases: read, create and update with the API's optimistic concurrency, and the
 * leader-election decision of client-go's leaderelection package. */

typedef struct KubeLease {
        json_object *obj; /* the Lease as the API server returned it; the fields below point into it */
        const char *name;
        const char *namespace;
        const char *resource_version;
        const char *holder; /* spec.holderIdentity; NULL when free (released or never held) */
        unsigned duration_sec; /* spec.leaseDurationSeconds; 0 when unset */
        unsigned transitions; /* spec.leaseTransitions */
        const char *acquire_time, *renew_time; /* as the holder wrote them, from its clock: shown only */
        uint64_t server_date_usec; /* the API server's Date header of the reply that brought it; 0: none */
} KubeLease;

void kube_lease_free(KubeLease *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeLease *, kube_lease_free);

/* metadata.annotations[key] or NULL. */
const char *kube_lease_annotation(const KubeLease *l, const char *key);

/* What a create or update writes. */
typedef struct KubeLeaseSpec {
        const char *holder; /* NULL: released (holderIdentity cleared) */
        unsigned duration_sec;
        uint64_t acquire_usec, renew_usec; /* this node's wall clock, for people reading the Lease */
        unsigned transitions;
        /* Annotations to set (pairs key, value; a NULL value removes the key), NULL-terminated by key. */
        const char *const *annotations;
} KubeLeaseSpec;

/* GET; -ENOENT (nothing recorded) when there is no such Lease, other errors with err_set(). */
int kube_lease_get(KubeClient *c, const char *ns, const char *name, KubeLease **ret);
/* POST; -EEXIST (nothing recorded) when another writer created it first (409 AlreadyExists). */
int kube_lease_create(KubeClient *c, const char *ns, const char *name, const KubeLeaseSpec *spec,
                      KubeLease **ret);
/* PUT of old with spec, conditional on old's resourceVersion; -ESTALE (nothing recorded) when the Lease
 * changed since old was read (409 Conflict), -ENOENT when it is gone. */
int kube_lease_update(KubeClient *c, const KubeLease *old, const KubeLeaseSpec *spec, KubeLease **ret);

/* The Lease object a create or update sends (exported for the unit tests). old may be NULL. */
json_object *kube_lease_build(const char *ns, const char *name, const json_object *old,
                              const KubeLeaseSpec *spec);
/* Fills the fields of l from l->obj; -EBADMSG when it is not a Lease. */
int kube_lease_parse(KubeLease *l);
/* "2026-12-01T19:40:00.123456Z", a metav1.MicroTime. */
char *kube_format_micro_time(uint64_t usec);

/* ---- leader election, as client-go's tryAcquireOrRenew() decides ---- */

typedef enum KubeLeaseDecision {
        KUBE_LEASE_ACQUIRE, /* free, or its holder stopped renewing: take it over (a new acquireTime) */
        KUBE_LEASE_RENEW, /* ours already: renew it */
        KUBE_LEASE_WAIT, /* another holder whose lease is valid as far as this node has seen */
} KubeLeaseDecision;

/* What this node knows of a Lease. A holder is judged only by observed_usec, the time on THIS node's
 * monotonic clock when it last saw the Lease change (its resourceVersion), plus the Lease's duration: never
 * by the times written in the Lease, which come from another node's clock. */
typedef struct KubeLeaseObservation {
        bool exists;
        const char *holder; /* NULL or "": free */
        const char *holder_instance; /* the holder's process, when it says (NULL: unknown) */
        unsigned duration_sec;
        uint64_t observed_usec;
} KubeLeaseObservation;

KubeLeaseDecision kube_lease_decide(const KubeLeaseObservation *o, uint64_t now_usec, const char *me,
                                    const char *my_instance);
const char *kube_lease_decision_to_string(KubeLeaseDecision d);
