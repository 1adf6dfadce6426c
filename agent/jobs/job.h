/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <signal.h>

#include "conf/conf.h"
#include "sys/progress.h"
#include "sys/state.h"
#include "store/manifest.h"
#include "store/store.h"

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
        /* The names of its data objects after "<id>" (NULL-terminated; one ending in '/' covers a whole
         * "<id>/" tree): what the leftover cleanup may remove, so that it never touches another job's
         * objects in a shared location. backup() writes no other names. */
        const char *const *object_suffixes;
        /* Writes the data objects and records them (and job details) in m; never writes the manifest. */
        int (*backup)(JobContext *ctx, Manifest *m);
} JobDefinition;

extern const JobDefinition job_postgres;
extern const JobDefinition job_mirror;
extern const JobDefinition job_config;
extern const JobDefinition job_volumes;

const JobDefinition *job_find(const char *name);
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

/* Runs one job to the end. On success the new backup id is returned in ret_id. */
int job_run(const Config *c, const char *job, char **ret_id);

/* Applies retention to a job's store. With dry_run nothing is deleted. Each decision is printed to out
 * (may be NULL). Returns the number of backups deleted (or that would be). */
int job_prune(const Config *c, const char *job, bool dry_run, FILE *out);
int job_prune_store(const Config *c, const char *job, Store *s, bool dry_run, FILE *out);

/* Jobs that keep backups with manifests (NULL-terminated: postgres, config). */
extern const char *const job_listable[];
/* The backups of every such job (only: just that one), newest first: what `list` shows. The config job
 * is left out unless configured or asked for. */
int job_list_backups(const Config *c, const char *only, BackupList *ret);

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
