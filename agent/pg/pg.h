/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <libpq-fe.h>
#include <stdint.h>

#include "shared/util.h"

/* What the preflight learns about the server before dumping. */
typedef struct PgServerInfo {
        int version_num;        /* server_version_num, e.g. 150020 */
        char *version;          /* "15.20 (Debian 15.20-0+deb12u1)" */
        uint64_t size_estimate; /* sum(pg_database_size) of the databases that allow connections */
        char *target;           /* "host=127.0.0.1 port=5432 user=postgres" for messages, never a password */
        char *user;
        char **databases;       /* names of databases that allow connections, sorted */
        uint64_t *database_sizes; /* pg_database_size() of each, in the order of databases */
} PgServerInfo;

void pg_server_info_done(PgServerInfo *i);

/* Connects with libpq, checks reachability and authentication, reads the version and the size.
 * Errors: EX_UNAVAILABLE when unreachable, EX_NOPERM when the login is refused. */
int pg_preflight(const char *conninfo, PgServerInfo *ret);

/* A PostgreSQL client program (pg_dumpall, psql, pg_restore) whose major version is >= the server's. */
typedef struct PgClient {
        char *path;
        int major;
        char *version_line; /* "pg_dumpall (PostgreSQL) 15.20 (Debian ...)" */
} PgClient;

void pg_client_done(PgClient *c);
/* Looks in bindir when set, else /usr/lib/postgresql/N/bin (exact major first, then newer ones, newest
 * first), then PATH. A too-old client is an error naming both versions and the package to install. */
int pg_find_client(const char *program, const char *bindir, int server_major, PgClient *ret);
/* "pg_dumpall (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)" -> 15; "... 9.6.24" -> 9. -1 when unparsable. */
int pg_parse_client_major(const char *version_line);

/* How a client program (psql, pg_dump, pg_dumpall, pg_restore) gets a conninfo without a password on its
 * command line, where every local user reads it in /proc/PID/cmdline: the secret keywords (password)
 * become their libpq environment variables in *ret_env ("PGPASSWORD=..."; only this user and root read a
 * process's environment), everything else comes back in *ret_args as "-d" "CONNINFO" (empty when nothing
 * is left), with dbname replaced when not NULL. A secret libpq has no variable for (sslpassword) is
 * refused. */
int pg_conninfo_for_client(const char *conninfo, const char *dbname, char ***ret_env, char ***ret_args);

/* Overwrites a password in conninfo, in place, so that a conninfo given on our command line (restore
 * --to) stops showing in our own /proc/PID/cmdline. Returns whether there was one. */
bool pg_conninfo_hide_password(char *conninfo);

/* Sets or replaces one keyword in a conninfo string, e.g. dbname. Returns a new string. */
int pg_conninfo_set(const char *conninfo, const char *key, const char *value, char **ret);

/* Cleanup helpers for libpq handles. */
static inline void pqfinishp(PGconn **c) {
        if (*c)
                PQfinish(*c);
}

static inline void pqclearp(PGresult **r) {
        if (*r)
                PQclear(*r);
}

/* libpq's messages span lines and indent with tabs: one line for the journal and the state file, each of
 * libpq's lines a sentence ("...failed: Connection refused. Is the server running...?"). */
char *pg_message_one_line(const char *msg);
