/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"
#include "store/manifest.h"
#include "store/store.h"

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
