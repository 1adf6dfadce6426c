/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"
#include "sys/state.h"

/* More than one node: a cluster-wide job (postgres, mirror, config, and prune of their backups) runs on one
 * node at a time, through the coordination.k8s.io/v1 Lease "skyforge-agent-JOB" in [agent] lease_namespace.
 * The job runner takes it first, keeps it renewed from a thread while the job runs, checks it right before
 * it commits a manifest or deletes anything, and releases it at the end with a note of the run. */
typedef struct LeaseGuard LeaseGuard;

#define LEASE_GUARD_SKIPPED 1

/* Returns 0 with *ret set to the held Lease, or to NULL when no Lease is used (leader_election = no; auto
 * on a single node or without a reachable cluster; a node-local job): the job goes ahead.
 * LEASE_GUARD_SKIPPED with *ret set: another node runs the job now or ran it successfully less than
 * min_interval ago; lease_guard_message() says which. < 0 with err_set(): leader_election = yes and the
 * cluster cannot be reached (EX_UNAVAILABLE), or the API refused the Lease. */
int lease_guard_begin(const Config *c, const char *job, bool cluster_wide, LeaseGuard **ret);

/* "skipped: postgres is running on node-b (lease renewed 12 s ago)" */
const char *lease_guard_message(const LeaseGuard *g);
const char *lease_guard_holder(const LeaseGuard *g);

/* Whether the Lease is still ours with time to spare for what comes next (before_what: "writing the
 * manifest of backup X"). With r < 0 or a lost Lease: the Lease's error (err_set(), EX_TEMPFAIL) when it
 * was lost, r otherwise. NULL guard: r. */
int lease_guard_check(LeaseGuard *g, int r, const char *before_what);

/* Stops renewing and releases the Lease, noting this node's result ("success", "failed") and backup id
 * on it (result NULL: the note of the last run stays). Safe on NULL and to call twice. */
void lease_guard_end(LeaseGuard *g, const char *result, const char *backup_id);
void lease_guard_free(LeaseGuard *g); /* ends it (result NULL) when not ended */
DEFINE_TRIVIAL_CLEANUP_FUNC(LeaseGuard *, lease_guard_free);

/* A skipped run in the job's state (last_result "skipped", the message in last_error, the holder) and in
 * the journal (SKYFORGE_MESSAGE_JOB_SKIPPED). The metrics file is the caller's. */
void lease_guard_record_skip(const Config *c, const char *job, const LeaseGuard *g, JobState *st,
                             uint64_t duration_usec);

/* What `status` shows of a cluster-wide job's Lease, read with a short timeout. */
typedef struct LeaseGuardStatus {
        bool active; /* leader election applies (false: the fields below are unset) */
        char *error; /* the Lease could not be read */
        char *holder; /* NULL: free */
        int64_t renewed_ago; /* seconds, API server's clock; -1: unknown */
        char *last_node, *last_result, *last_backup_id;
        int64_t finished_ago; /* seconds, API server's clock; -1: unknown */
} LeaseGuardStatus;
void lease_guard_status_done(LeaseGuardStatus *s);
/* One status per job (NULL entries: node-local jobs, left inactive); the API is asked once per job, each
 * request bounded by a few seconds. */
int lease_guard_status(const Config *c, const char *const *jobs, LeaseGuardStatus *ret, size_t n);
/* {"holder", "renewed_seconds_ago", "last_node", "last_result", "last_backup_id",
 * "last_finished_seconds_ago", "error"}, or NULL when leader election is not active. */
struct json_object *lease_guard_status_json(const LeaseGuardStatus *s);
/* "Leases in kube-system (this node: node-a):" and a line per job with an active Lease; nothing when none.
 */
void lease_guard_status_print(const Config *c, const char *const *jobs, const LeaseGuardStatus *s, size_t n,
                              FILE *f);
const char *lease_guard_node_name(const Config *c, char *buf, size_t n);
