/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "sys/progress.h"
#include "store/manifest.h"
#include "store/store.h"

/* Re-reads every object of a backup and compares it with the manifest: present, size, SHA-256. Each
 * problem found is appended to *problems (one line naming the object and what is wrong); checking goes on
 * after a damaged object, so one run reports all of them. Returns the number of problems, or a negative
 * errno (err_message() set) when the store itself failed (unreachable, I/O error): that says nothing about
 * the backup. only: the object names to check (NULL: all); p may be NULL. */
int backup_check_objects(Store *s, const Manifest *m, char *const *only, Progress *p, char ***problems);

/* The same for callers that only need yes/no: the first problem becomes the error (EX_DATAERR). */
int backup_verify_objects(Store *s, const Manifest *m, bool show_progress);

/* Per-database results of a restore test. */
typedef struct RestoreTestDatabase {
        char *name;
        uint64_t tables;
        uint64_t rows;
} RestoreTestDatabase;

typedef struct RestoreTestResult {
        char *backup_id;
        RestoreTestDatabase *databases;
        size_t n_databases;
        char **missing;      /* databases of the manifest that did not come back */
        uint64_t duration_usec;
} RestoreTestResult;

void restore_test_result_done(RestoreTestResult *r);

/* Restores the backup into a throwaway cluster in work_dir (initdb; as the postgres user when running as
 * root), checks that every database of the manifest exists, counts tables and rows per database, and
 * removes the cluster again, also on failure and cancellation. Returns 0 when the restore worked and
 * every database is there; the result is filled in as far as the test got. */
int postgres_restore_test(const Config *c, Store *s, const Manifest *m, RestoreTestResult *result);

typedef struct VerifyOptions {
        const char *id; /* NULL: newest backup */
        bool all;
        bool restore_test;
        FILE *out;      /* per-backup lines for the operator; may be NULL */
} VerifyOptions;

/* Verifies backups of one job (postgres or config), waits for a running backup of the job first (so
 * retention does not delete what is being read), records the result in the job state (last_verify, a JSON
 * object) and in the journal (SKYFORGE_MESSAGE_VERIFY). Returns 0 when all is well, -EBADMSG
 * (EX_DATAERR) when a backup is damaged or the restore test found a problem, other negative errnos when
 * verification could not run. */
int verify_job(const Config *c, const char *job, const VerifyOptions *o);
