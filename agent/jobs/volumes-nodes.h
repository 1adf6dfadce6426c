/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"
#include "jobs/volumes.h"
#include "store/objects.h"

/* Each node keeps its volumes backups in a folder of its own, DEST/NODE/ (NODE: [agent] node_name, else
 * the host name): its runs write there, its retention deletes there only, its incrementals chain there
 * only, and its ids are unique there. Backups written before node folders sit in DEST itself (the
 * "shared" folder): they stay readable, listable and restorable, and retention never deletes them. */

/* How the shared folder (DEST itself) is named where a node name is expected: `--node .`. */
#define VOLUMES_SHARED_FOLDER "."

/* This node's name, checked (an error naming [agent] node_name otherwise). */
int volumes_this_node(const Config *c, char **ret);

/* The location of node's folder: DEST/NODE/ (node NULL: this node's). */
int volumes_node_location(const Config *c, const char *node, char **ret);

/* The location a job stores into and prunes: the node folder for volumes, the destination otherwise. */
int volumes_job_location(const Config *c, const char *job, char **ret);

typedef struct VolumesFolder {
        char *node; /* NULL: the shared folder, DEST itself */
        char *location;
        Store *store;
        BackupList list; /* this folder's volumes backups, newest first; each Manifest's node set */
} VolumesFolder;

typedef struct VolumesFolders {
        VolumesFolder *items; /* this node's first (when it has a folder), the others by name, shared last */
        size_t n;
        char *self; /* this node's name */
        char *destination;
        bool picked; /* one folder was asked for (--node) */
} VolumesFolders;

void volumes_folders_done(VolumesFolders *f);

/* The folders of DEST that hold volumes backups. only: NULL for all, VOLUMES_SHARED_FOLDER for the shared
 * one, else one node's (an error naming the nodes there when it has none). A local destination that does
 * not exist: no folders, 0. */
int volumes_folders_open(const Config *c, const char *only, VolumesFolders *ret);

/* Backup id_or_latest. "latest": this node's newest, else the shared folder's newest, else an error naming
 * the nodes to pick from with --node. An id: where it is; found in several folders, this node's wins, else
 * an error naming them. */
int volumes_folders_find(const VolumesFolders *f, const char *id_or_latest, const VolumesFolder **ret_folder,
                         const Manifest **ret);

/* Every volumes backup of every folder, newest first (moved out of f). */
int volumes_folders_take_all(VolumesFolders *f, BackupList *ret);

/* "node a" or "the shared folder" (to free). */
char *volumes_folder_describe(const VolumesFolder *v);

/* restore volumes [--node NODE] ID|latest: finds the backup (volumes_folders_find()) and restores it from
 * its folder; its id in *ret_id (also when the restore fails after finding it). */
int volumes_restore_from_folders(const Config *c, const char *node, const char *id_or_latest,
                                 const VolumesRestoreOptions *o, char **ret_id);
