/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "store/manifest.h"
#include "store/store.h"

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
