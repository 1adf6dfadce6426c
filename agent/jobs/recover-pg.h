/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"

/* recover's postgres step has two paths: logical (the newest dump, replayed with psql into a running
 * server) and physical (the newest complete base backup + the stored WAL into [postgres] data_directory,
 * replayed by a local PostgreSQL with the server's own workload scaled to 0). The step takes whichever
 * reaches the later moment, or the one --postgres-from names. */

typedef struct RecoverPgChoice {
        bool physical; /* the choice */
        char *reason; /* why, for --plan and the note */
        /* The physical path: */
        bool physical_ok;
        char *physical_why_not;
        char *base_id;
        uint64_t base_bytes;
        uint64_t wal_usec; /* when the newest WAL object was stored: the physical recovery point */
        char *wal_newest; /* its name */
        char *source;     /* where the base backup and the WAL are read from */
        bool offsite;     /* ... the offsite copy (the configured store has no base backup) */
        /* The logical path (from the configured destination): */
        char *dump_id;
        uint64_t dump_usec; /* when the newest dump started */
} RecoverPgChoice;

void recover_pg_choice_done(RecoverPgChoice *ch);
/* Looks at both paths and chooses (from: NULL/"auto", "logical", "physical"); forcing the physical path
 * when it cannot be taken is an error naming why. */
int recover_pg_choose(const Config *c, const char *from, RecoverPgChoice *ret);

/* The step's plan: prints what the physical path would do when chosen and returns 1; prints why not and
 * returns 0 when the logical path is chosen (its plan follows). */
int recover_pg_plan(const Config *c, const char *from, FILE *out);
/* The step: runs the physical path when chosen (returns 1 with *ret_skipped, true when it was done before,
 * and the note filled); returns 0 when the logical path is chosen. */
int recover_pg_run(const Config *c, const char *from, bool *ret_skipped, char **ret_note);
