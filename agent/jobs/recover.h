/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"

/* `recover`: the rebuild runbook as steps (PRODUCT.md §7). Every step can run alone, is safe to rerun,
 * and says what it did; a step whose job is not configured is skipped. */
#define RECOVER_DEFAULT_OVERLAY "k8s/overlays/k3s-traefik"
#define RECOVER_DEFAULT_HEALTH_TIMEOUT_USEC (300 * USEC_PER_SEC)
#define RECOVER_HEALTH_INTERVAL_USEC (2 * USEC_PER_SEC)
#define RECOVER_DEFAULT_BIND_TIMEOUT_USEC (300 * USEC_PER_SEC)

typedef enum RecoverOutcome {
        RECOVER_DONE,
        RECOVER_SKIPPED,     /* not configured, or nothing to do (already restored) */
        RECOVER_UNAVAILABLE, /* not in this build yet */
} RecoverOutcome;

typedef struct RecoverOptions {
        const char *postgres_to;   /* target conninfo; NULL: [postgres] conninfo */
        const char *manifests_dir; /* NULL: <work_dir>/recover-manifests */
        const char *overlay;       /* inside manifests_dir; NULL: RECOVER_DEFAULT_OVERLAY */
        uint64_t health_timeout_usec; /* 0: RECOVER_DEFAULT_HEALTH_TIMEOUT_USEC */
        const char *postgres_from; /* "logical", "physical"; NULL/"auto": the newer (jobs/recover-pg.h) */
        bool force;                   /* volumes: replace the content of a non-empty PV directory */
        uint64_t bind_timeout_usec;   /* volumes: wait for a PVC to bind, its pods to end; 0: default */
} RecoverOptions;

typedef struct RecoverStep {
        const char *name;
        const char *summary;
        /* Prints what the step would do (backup ids, byte counts, sources) without changing anything. */
        int (*plan)(const Config *c, const RecoverOptions *o, FILE *out);
        /* Does it; *ret_note says what was done or why nothing was. */
        int (*run)(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome, char **ret_note);
} RecoverStep;

extern const RecoverStep recover_steps[];
extern const size_t recover_n_steps;
const RecoverStep *recover_step_find(const char *name);

/* The volumes step (recover-volumes.c). */
int recover_volumes_plan(const Config *c, const RecoverOptions *o, FILE *out);
int recover_volumes_run(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome, char **ret_note);
