/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "shared/util.h"
#include "store/store.h"

struct json_object;

/* A backup is a set of data objects plus the manifest "<id>.json", written last. A backup exists only
 * when its manifest exists. */
typedef struct ManifestObject {
        char *name; /* relative to the store location */
        uint64_t bytes;
        char *sha256; /* hex */
} ManifestObject;

typedef struct Manifest {
        char *job;
        char *id;
        uint64_t started_usec;
        uint64_t finished_usec;
        uint64_t bytes;     /* stored bytes, all objects */
        uint64_t raw_bytes; /* before compression/encryption */
        char *compression;  /* "zstd" or "none" */
        int compression_level;
        bool encrypted;
        char **recipients;
        char *agent_version;
        char *tool;          /* "pg_dumpall" */
        char *tool_version;  /* "pg_dumpall (PostgreSQL) 15.20" */
        char *server_version;
        char *hostname;
        ManifestObject *objects;
        size_t n_objects;
        struct json_object *extra; /* job-specific details, may be NULL */
        char *node; /* volumes: the node folder it was found in (NULL: the shared one); not stored */
} Manifest;

void manifest_free(Manifest *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manifest *, manifest_free);
void manifest_add_object(Manifest *m, const char *name, uint64_t bytes, const char *sha256);

struct json_object *manifest_to_json(const Manifest *m);
int manifest_from_json(struct json_object *o, Manifest **ret);
char *manifest_serialize(const Manifest *m);
int manifest_parse(const char *text, Manifest **ret);

char *manifest_name(const char *id); /* "<id>.json" */
bool manifest_name_valid(const char *name, char ret_id[static BACKUP_ID_LEN + 1]);
/* A data object's name as a manifest may give it: relative, no empty, "." or ".." segment, no control
 * characters, not itself a manifest's name. Anything else would leave the location or alias another name. */
bool manifest_object_name_valid(const char *name);
/* Whether the object name belongs to backup id: "<id>." or "<id>/" followed by more. A backup only ever
 * deletes objects that belong to it. */
bool backup_object_belongs(const char *id, const char *name);

/* Writes the manifest (last step of a backup). */
int manifest_store(Store *s, const Manifest *m);
int manifest_load(Store *s, const char *id, Manifest **ret);

/* A manifest that exists but cannot be used (unreadable, not valid JSON, truncated, no objects, a bad object
 * name, another backup's id): a damaged backup of unknown job. */
typedef struct BackupDamaged {
        char id[BACKUP_ID_LEN + 1];
        char *message; /* names the manifest and the defect */
} BackupDamaged;

/* All backups of a store, newest first. Data without a manifest is not a backup. */
typedef struct BackupList {
        Manifest **items;
        size_t n;
        BackupDamaged *damaged; /* newest first */
        size_t n_damaged;
} BackupList;
void backup_list_done(BackupList *l);
/* job: only the manifests whose "job" is job (NULL: all). Damaged manifests are listed for every job, as
 * their job is unknown, and logged as warnings. */
int backup_list_load(Store *s, const char *job, BackupList *ret);
/* "latest" or an id; -ENOENT with a message naming what exists otherwise. */
int backup_list_find(const BackupList *l, const char *id_or_latest, const Manifest **ret);

/* Whether every object of backup m exists with the size its manifest gives (no hashing): NULL when so, else
 * a description of the first that does not (to free), also when the store could not say. */
char *backup_size_damage(Store *s, const Manifest *m);

/* Deletes a backup: manifest first (the backup ceases to exist atomically), then its objects: only those
 * that belong to it (backup_object_belongs()) and that none of the kept manifests names. Every other
 * object it lists is left in place, with a warning naming the object and why. Returns the number of
 * objects left so. */
int backup_delete(Store *s, const Manifest *m, Manifest *const *kept, size_t n_kept);
/* Removes objects left by an interrupted run of one job: "<id><suffix>" for one of the job's suffixes
 * (a suffix ending in '/' covers everything under "<id>/") with no manifest "<id>.json", except those of
 * keep_id; and the backend's interrupted writes, unless the location holds objects that are not that
 * job's (another writer's uploads may be in flight there). Returns the number of objects removed. */
int backup_cleanup_orphans(Store *s, const char *keep_id, const char *job, const char *const *suffixes);
