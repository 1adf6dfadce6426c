/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "jobs/context.h"

/* The runner: dispatches a job by name and does everything around its backup step (jobs/context.h). */

extern const JobDefinition job_postgres;
extern const JobDefinition job_mirror;
extern const JobDefinition job_config;

const JobDefinition *job_find(const char *name);

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
