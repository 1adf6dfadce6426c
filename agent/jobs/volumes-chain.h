/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "store/manifest.h"
#include "store/retention.h"

/* The member of an incremental's tar that lists the deleted paths, NUL-terminated, relative. */
#define VOLUMES_DELETED_MEMBER ".skyforge-deleted"

/* One volume's record in a backup's manifest (details.volumes[]). Strings point into the manifest. */
typedef struct VolumeRecord {
        const char *name;
        const char *kind; /* "full" or "incremental" */
        const char *parent; /* NULL for a full */
        const char *full; /* id of the full its chain starts with */
        const char *archive; /* object names */
        const char *catalog;
        const char *catalog_sha256; /* of the plaintext catalog */
        const char *pv; /* a claim's PersistentVolume when it was backed up; NULL for a path */
        uint64_t files;
} VolumeRecord;

/* The record of volume name in backup m; -ENOENT when m does not hold it. */
int volumes_record(const Manifest *m, const char *name, VolumeRecord *ret);
/* Every volume name of backup m (to free). */
char **volumes_names(const Manifest *m);

/* The chain of volume name as of backup target: the full first, target last (pointers into l). */
int volumes_chain(const BackupList *l, const Manifest *target, const char *name, const Manifest ***ret,
                  size_t *ret_n);

/* verify: calls f for each backup that m's incrementals depend on (each once), with the names of the
 * objects of m's volumes in it (NULL-terminated); with m NULL and problem set for a chain that is broken
 * (a parent gone). f returns < 0 to stop. */
typedef int (*VolumesChainObjectFunc)(const Manifest *m, char *const *objects, const char *problem,
                                      void *userdata);
int volumes_chain_objects(const BackupList *l, const Manifest *m, VolumesChainObjectFunc f, void *userdata);

/* Retention in chains: marks kept every backup that a kept backup's chain needs, saying why. items and
 * mine are parallel, newest first. */
void volumes_retention_protect(Manifest *const *mine, RetentionItem *items, size_t n);
