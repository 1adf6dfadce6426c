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

/* Writes the manifest (last step of a backup). */
int manifest_store(Store *s, const Manifest *m);
int manifest_load(Store *s, const char *id, Manifest **ret);

/* All backups of a store, newest first. Data without a manifest is not a backup. */
typedef struct BackupList {
        Manifest **items;
        size_t n;
} BackupList;
void backup_list_done(BackupList *l);
int backup_list_load(Store *s, BackupList *ret);
/* "latest" or an id; -ENOENT with a message naming what exists otherwise. */
int backup_list_find(const BackupList *l, const char *id_or_latest, const Manifest **ret);

/* Deletes a backup: manifest first (the backup ceases to exist atomically), then its objects. */
int backup_delete(Store *s, const Manifest *m);
/* Removes objects that belong to no manifest (left by an interrupted run), except those of keep_id, and
 * interrupted writes of the backend. Returns the number of objects removed. */
int backup_cleanup_orphans(Store *s, const char *keep_id);
