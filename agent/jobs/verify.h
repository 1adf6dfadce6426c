/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "jobs/restore-test.h"
#include "log/log.h"
#include "store/manifest.h"
#include "store/store.h"

typedef struct VerifyOptions {
        const char *id; /* NULL: newest backup */
        bool all;
        bool restore_test;
        FILE *out;      /* per-backup lines for the operator; may be NULL */
        /* The job's checks beyond the backup's objects (JobDefinition.verify_more: basebackup's WAL chain);
         * may be NULL. */
        int (*verify_more)(const Config *c, const Manifest *m, char ***problems);
} VerifyOptions;

/* Verifies backups of one job (postgres or config), waits for a running backup of the job first (so
 * retention does not delete what is being read), records the result in the job state (last_verify, a JSON
 * object) and in the journal (SKYFORGE_MESSAGE_VERIFY). Returns 0 when all is well, -EBADMSG
 * (EX_DATAERR) when a backup is damaged or the restore test found a problem, other negative errnos when
 * verification could not run. */
int verify_job(const Config *c, const char *job, const VerifyOptions *o);

/* One backup a verify checked. */
typedef struct VerifyBackup {
        char *id;
        bool manifest_ok; /* false: its manifest cannot be used (the one problem says why) */
        size_t n_objects;
        uint64_t bytes;
        char **problems; /* empty: intact */
} VerifyBackup;

/* What a verify of one job found: filled by verify_job_result(), rendered into the state file
 * (last_verify), the journal, the text lines and JSON. */
typedef struct VerifyResult {
        const char *job;
        bool checked; /* false: the verify could not run (lock, store): failure says why */
        VerifyBackup *backups;
        size_t n_backups, n_damaged;
        char *first_problem; /* "backup ID is damaged: ..." of the newest damaged one */
        char *none; /* no backups at all: what to do */
        bool restore_tested;
        RestoreTestResult restore_test;
        Failure restore_test_failure;
        uint64_t total_bytes, finished_usec, duration_usec;
        Failure failure; /* the headline: damage, no backups, the restore test, or why it could not run */
} VerifyResult;
void verify_result_done(VerifyResult *res);

/* verify_job() with its result for the caller to render; returns the same error. */
int verify_job_result(const Config *c, const char *job, const VerifyOptions *o, VerifyResult *res);
struct json_object;
/* {job, result: ok|damaged|no-backups|failed, error, exit_code, finished, checked, damaged, backups,
 * restore_test} (skyforge-agent(8), verify --json). */
struct json_object *verify_result_to_json(const VerifyResult *res);
