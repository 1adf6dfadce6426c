/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <signal.h>

#include "conf/conf.h"
#include "log/log.h"
#include "sys/progress.h"
#include "sys/state.h"
#include "store/manifest.h"
#include "store/store.h"

/* What the jobs share: the context a job's backup step gets, the locks, cancellation, retention settings,
 * decryption. The runner (jobs/job.h) builds on this; no job includes the runner. */

/* What a job's backup step gets: the store it writes into, the id of the backup, and progress. The runner
 * (job.c) does everything around it: locking, state, journal, orphan cleanup, the manifest, retention. */
typedef struct JobContext {
        const Config *config;
        const char *job;
        Store *store;
        char id[BACKUP_ID_LEN + 1];
        JobState *state;
        Progress progress;
} JobContext;

typedef struct JobDefinition {
        const char *name;
        bool has_retention;
        /* The job keeps no backups (mirror): no store, no manifest; still lock, state, journal. */
        bool no_manifest;
        /* The job works on what the whole cluster shares (PostgreSQL, MinIO, the API's Secrets): with more
         * than one node it runs on one at a time, under its Lease (jobs/lease-guard.h). A node-local job
         * (volumes: this node's own volumes) leaves it false and needs no Lease. */
        bool cluster_wide;
        /* The names of its data objects after "<id>" (NULL-terminated; one ending in '/' covers a whole
         * "<id>/" tree): what the leftover cleanup may remove, so that it never touches another job's
         * objects in a shared location. backup() writes no other names. */
        const char *const *object_suffixes;
        /* Writes the data objects and records them (and job details) in m; never writes the manifest. */
        int (*backup)(JobContext *ctx, Manifest *m);
        /* Optional: retention beyond the job's backups, after them (basebackup: the WAL that no kept base
         * backup needs). oldest_kept: the oldest of the job's backups that retention keeps (also with
         * dry_run), NULL when none. Returns the number of objects (to be) deleted. */
        int (*prune_more)(const Config *c, Store *s, const Manifest *oldest_kept, bool dry_run, FILE *out);
        /* Optional: verify's checks beyond the backup's objects (basebackup: the WAL chain after it).
         * Appends each problem; returns their number. */
        int (*verify_more)(const Config *c, const Manifest *m, char ***problems);
} JobDefinition;

extern const char *const job_names[]; /* NULL-terminated: postgres, mirror, config, volumes */

/* The job's run lock in state_dir (JOB.lock), taken by backup runs only; the fd holds it until closed. */
int job_lock(const char *state_dir, const char *job, bool wait, int *ret_fd);

/* The job's read lock (state_dir/JOB.read.lock): shared by whoever reads stored backups (verify,
 * restore), exclusive for retention and prune, which delete them. Independent of the run lock, so a
 * verify and a backup run side by side, and retention never deletes what a verify reads. Waits up to
 * timeout_usec (then -EBUSY, EX_TEMPFAIL), or until SIGTERM (-ECANCELED). */
#define JOB_READ_LOCK_TIMEOUT_USEC (3600 * USEC_PER_SEC)
int job_read_lock(const char *state_dir, const char *job, bool exclusive, uint64_t timeout_usec,
                  int *ret_fd);

void job_retention_settings(const Config *c, const char *job, unsigned *ret_days, unsigned *ret_keep_min);

/* SIGTERM/SIGINT during a run: set by the signal handler, checked by long loops. */
extern volatile sig_atomic_t job_cancel_requested;
void job_install_signal_handlers(void);

struct Source;
/* Puts age decryption on top of upstream (taking it over, also on failure) for an encrypted object of
 * backup m, with the identities in identity_file (the key named by "[section] identity_file"). The
 * errors name the backup and the fix: a missing identity_file, or one whose keys match none of the
 * backup's recipients. */
int job_source_decrypt(struct Source *upstream, const Manifest *m, const char *identity_file,
                       const char *section, struct Source **ret);
