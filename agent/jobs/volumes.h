/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "store/manifest.h"
#include "shared/stream.h"
#include "store/store.h"
#include "jobs/volumes-chain.h"

/* The volumes job: each volume (a host directory) as one tar (pax) → zstd → age stream plus a sorted
 * catalog per backup; a full every full_every_days, incrementals in between, found by merging the sorted
 * walk of the tree with the previous catalog (constant memory). */

typedef struct VolumesRestoreOptions {
        const char *volume; /* NULL: every volume of the backup, each under to/NAME */
        const char *to;
        bool dry_run;
        /* A non-empty target is replaced (recover --force): the tree is built beside it as always, then
         * swapped in, and the old content removed. */
        bool replace;
        FILE *out;
} VolumesRestoreOptions;

/* The plaintext of one object of backup m: decrypted when m is encrypted, decompressed. */
int volumes_object_open(const Config *c, Store *s, const Manifest *m, const char *name, Source **ret);

/* Restores backup m (chains checked first: every object's SHA-256, before anything is written). */
int volumes_restore(const Config *c, Store *s, const BackupList *l, const Manifest *m,
                    const VolumesRestoreOptions *o);
