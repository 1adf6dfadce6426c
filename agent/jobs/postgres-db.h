/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"
#include "jobs/context.h"
#include "pg/pg.h"
#include "pipe/pipe.h"
#include "store/manifest.h"
#include "store/store.h"

/* The write chain of every postgres object: zstd -> age (when recipients are set) -> stored digest -> store
 * writer (which the caller commits). */
int postgres_sink_chain(const PostgresConfig *pc, StoreWriter *w, Digest *stored, Sink **ret);
/* Runs argv (pg_dumpall, pg_dump) with env added (the connection, from postgres_client_argv()) and stores
 * its stdout as object `name` through that chain, with progress; records the object and adds the dump's size
 * to m->raw_bytes (and *ret_raw, may be NULL). A failed, killed or cancelled dump leaves nothing: the writer
 * is aborted. */
int postgres_dump_to_object(JobContext *ctx, char *const argv[], char *const env[], const char *name,
                            Manifest *m, uint64_t *ret_raw);

/* The command line of a PostgreSQL client program: program, then options (NULL-terminated), then what the
 * connection needs on the command line; and *ret_env, the environment that carries the rest of conninfo
 * (password included) with dbname replaced when not NULL. Nothing secret is ever on the command line, where
 * every local user reads it. */
int postgres_client_argv(const char *program, char *const options[], const char *conninfo,
                         const char *dbname, char ***ret_argv, char ***ret_env);
/* The read chain: store -> stored digest -> age (when the manifest says encrypted) -> zstd. */
int postgres_source_chain(const PostgresConfig *pc, const Manifest *m, StoreReader *rd, Digest *stored,
                          Source **ret);

/* per_database = yes: after the cluster dump, `pg_dumpall --globals-only` into <id>/globals.sql.zst and one
 * `pg_dump -Fc` per database into <id>/db/<percent-encoded name>.dump, all recorded in the manifest
 * (objects, and details.per_database). */
int postgres_dump_databases(JobContext *ctx, const PgServerInfo *info, Manifest *m);

/* Restores one database of a per-database backup into the server at conninfo with pg_restore, creating it
 * there (it must not exist); the roles it needs are created from the globals first when missing. jobs > 1
 * restores in parallel (pg_restore -j) from a temporary file in work_dir. */
int postgres_restore_database(const Config *c, Store *s, const Manifest *m, const char *database,
                              const char *conninfo, unsigned jobs);

/* "netbox_ü 日本/x" -> "netbox_%C3%BC%20%E6%97%A5%E6%9C%AC%2Fx": object names safe on every store. */
char *postgres_db_object_encode(const char *name);

/* The statements of a globals dump (sql, modified) that concern roles missing on the target: their CREATE
 * ROLE and ALTER ROLE lines, and the memberships granted to them. Roles that exist stay as they are, their
 * passwords included. *ret_n: how many roles would be created. */
char *postgres_globals_for_missing_roles(char *sql, char *const *existing, unsigned *ret_n);
