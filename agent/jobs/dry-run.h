/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "jobs/job.h"

/* `run postgres --dry-run`, `run config --dry-run`: what the real run would do, found out with reads only
 * (a libpq login with SELECTs, GETs to the Kubernetes API, a listing of the store, stat()s of the
 * manifest directories). No lock, no state, no store object, no directory is created. */

typedef struct DryRunDatabase {
        char *name;
        uint64_t bytes; /* pg_database_size() */
} DryRunDatabase;

typedef struct DryRunTool {
        char *program; /* pg_dumpall, pg_dump */
        char *path;
        char *version; /* its --version line */
        char *use; /* what the run does with it */
} DryRunTool;

typedef struct DryRunDirectory {
        char *path;
        char *member; /* the archive's manifests/<basename> */
        uint64_t files, bytes;
} DryRunDirectory;

typedef struct DryRunNamespace {
        char *name;
        char **secrets; /* names only: the values never leave kube_list_secrets()'s reply */
} DryRunNamespace;

typedef struct DryRunResult {
        const char *job;
        char *destination;
        char **objects; /* the names the run writes, with ID for the new backup's id */
        bool encrypted;
        size_t n_recipients;

        /* postgres */
        char *server_target, *server_version;
        int server_version_num;
        DryRunDatabase *databases;
        size_t n_databases;
        uint64_t size_estimate;
        DryRunTool *tools;
        size_t n_tools;

        /* config */
        DryRunDirectory *directories;
        size_t n_directories;
        char *kube_server;
        DryRunNamespace *namespaces;
        size_t n_namespaces, n_secrets;
        char **extra_secret_files;

        /* What retention would then delete: the decisions of prune, with the new backup counted in. */
        unsigned retention_days, keep_min;
        char *retention_note; /* no decisions: why (the destination does not exist yet) */
        PruneResult retention;

        Failure failure; /* what would make the real run fail */
} DryRunResult;

void dry_run_result_done(DryRunResult *res);
/* Whether job has a dry run here (postgres, config; mirror's is mirror_run()'s). */
bool job_dry_run_supported(const char *job);
/* Fills res as far as it gets; returns the failure the real run would meet (also in res->failure). */
int job_dry_run_result(const Config *c, const char *job, DryRunResult *res);
void dry_run_result_print(const DryRunResult *res, FILE *out);
struct json_object;
/* {job, result: ok|failed, dry_run: true, error, exit_code, destination, objects, encryption: {encrypted,
 * recipients}, server, databases, tools, manifests, secrets, retention} (skyforge-agent(8)). */
struct json_object *dry_run_result_to_json(const DryRunResult *res);
