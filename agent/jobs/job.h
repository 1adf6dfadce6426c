/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "jobs/context.h"

/* The runner: dispatches a job by name and does everything around its backup step (jobs/context.h). */

extern const JobDefinition job_postgres;
extern const JobDefinition job_mirror;
extern const JobDefinition job_config;
extern const JobDefinition job_volumes;
extern const JobDefinition job_basebackup; /* jobs/basebackup.c; run by name, not by "all" */

const JobDefinition *job_find(const char *name);

/* What one run of a job did: filled by job_run_result(), rendered by the runner into the state file, the
 * journal, metrics and the ping, and by the caller as text or JSON. */
typedef struct JobRunResult {
        const char *job;
        bool ran; /* false: it never started (unknown job, another run holds the lock) */
        bool no_manifest; /* mirror: nothing stored under the id */
        char id[BACKUP_ID_LEN + 1];
        uint64_t started_usec, finished_usec, duration_usec;
        uint64_t bytes;
        size_t n_objects;
        unsigned pruned; /* retention after the backup */
        bool retention_deferred; /* a reader held the read lock */
        char *retention_error; /* retention failed (the backup is safe) */
        bool skipped; /* another node holds the job's Lease, or ran it within min_interval */
        char *skip_message; /* "skipped: postgres is running on node-b (lease renewed 3 s ago)" */
        Failure failure; /* captured where the work returned */
} JobRunResult;
void job_run_result_done(JobRunResult *res);

/* Runs one job to the end and fills res (also on failure); returns the run's error, raised again from
 * res->failure. */
int job_run_result(const Config *c, const char *job, JobRunResult *res);
/* The same when only the new backup id matters (returned in ret_id on success). */
int job_run(const Config *c, const char *job, char **ret_id);
struct json_object;
/* {job, result: success|failed, error, exit_code, id, started, finished, duration_usec, bytes, objects,
 * retention: {pruned, deferred, error}} (see skyforge-agent(8), run --json). */
struct json_object *job_run_result_to_json(const JobRunResult *res);

/* Applies retention to a job's store. With dry_run nothing is deleted. Each decision is printed to out
 * (may be NULL). Returns the number of backups deleted (or that would be). */
int job_prune(const Config *c, const char *job, bool dry_run, FILE *out);
int job_prune_store(const Config *c, const char *job, Store *s, bool dry_run, FILE *out);

/* What a prune decided and did, per backup of the job, in the order retention looked at them. */
typedef enum PruneAction {
        PRUNE_KEEP,
        PRUNE_WOULD_DELETE, /* --dry-run */
        PRUNE_DELETED,
} PruneAction;
typedef struct PruneDecision {
        char *id;
        PruneAction action;
        char *reason;
        bool foreign_objects_left; /* deleted, but objects another backup lists were left */
        uint64_t bytes;
} PruneDecision;
typedef struct PruneDamaged {
        char *id;
        char *message;
} PruneDamaged;
typedef struct PruneResult {
        const char *job;
        bool dry_run;
        PruneDecision *decisions;
        size_t n_decisions;
        PruneDamaged *damaged; /* manifests that cannot be used: left alone */
        size_t n_damaged;
        unsigned deleted; /* or would be */
        bool skipped; /* another node holds the job's Lease: nothing was looked at */
        char *skip_message;
        char **more; /* lines of the job's own retention (JobDefinition.prune_more: basebackup's WAL) */
        Failure failure;
} PruneResult;
void prune_result_done(PruneResult *res);
/* job_prune() into res (also on failure, as far as it got); returns the same. */
int job_prune_result(const Config *c, const char *job, bool dry_run, PruneResult *res);
/* The lines `prune` prints: damaged, keep, would delete, deleted. */
void prune_result_print(const PruneResult *res, FILE *out);
/* {job, result: ok|failed, error, exit_code, dry_run, deleted, backups: [{id, action, reason,
 * foreign_objects_left}], damaged: [{id, error}]} (skyforge-agent(8), prune --json). */
struct json_object *prune_result_to_json(const PruneResult *res);

/* Jobs that keep backups with manifests (NULL-terminated: postgres, config, volumes, basebackup). */
extern const char *const job_listable[];
/* The backups of every such job (only: just that one), newest first: what `list` shows. The config job
 * is left out unless configured or asked for. */
int job_list_backups(const Config *c, const char *only, BackupList *ret);
