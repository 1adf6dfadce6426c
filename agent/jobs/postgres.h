/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"
#include "store/manifest.h"
#include "store/store.h"

/* Restores a pg_dumpall backup into the server at conninfo: checks every object's SHA-256 first, then
 * streams read -> checksum -> decrypt -> decompress -> psql. */
int postgres_restore(const Config *c, Store *s, const Manifest *m, const char *conninfo);

/* A copy of a conninfo given on our command line (restore --to, recover --postgres-to); then its password,
 * if any, is blanked in place, where /proc/PID/cmdline shows it to every local user while we run. */
char *postgres_conninfo_from_argv(char *arg);
