/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/util.h"

/* restore_command's side of the WAL spool (jobs/wal-spool.h describes the protocol): what the data
 * directory's owner runs, without the configuration. This part needs libc alone (it links only shared/,
 * log/err.c and pg/wal-name.c), so that skyforge-wal-fetch, PostgreSQL's restore_command, starts in a
 * fraction of the full agent's time: recovery runs it once per WAL file. */

/* restore_command's exit status (skyforge-wal-fetch and `skyforge-agent wal-fetch`). PostgreSQL takes any
 * status up to 125 for "no such file" and ends recovery there; above 125 it stops instead. So: 1 when the
 * store does not hold FILE, 126 for every other failure, usage errors too (a store it cannot reach must
 * never look like the end of WAL). */
#define WAL_FETCH_EXIT_NOT_FOUND 1
#define WAL_FETCH_EXIT_FAILED    126

/* How long restore_command waits for one answer while the agent serves the spool. */
#define WAL_SPOOL_WAIT_USEC (600 * USEC_PER_SEC)
/* The spool holds everything recovery can ask for (jobs/wal-spool.h). */
#define WAL_SPOOL_COMPLETE "complete"

/* restore_command's side, as the data directory's owner, without the configuration: FILE into path.
 * 0: done; -ENOENT with no err_message(): the store does not hold FILE; else an error with its message
 * (the agent could not fetch it, no agent serves the spool, or no answer within WAL_SPOOL_WAIT_USEC). */
int wal_spool_take(const char *spool, const char *file, const char *path);
/* recovery_end_command's: removes a complete spool once recovery has ended (as its owner). */
int wal_spool_clean(const char *spool);
/* Removes the spool and what it holds (never following a link); missing is fine. */
int wal_spool_remove(const char *path);

/* FILE as restore_command gets it: a segment (*ret_segno set) or a timeline history file. -EINVAL for
 * anything else (backup history files and the like, which the archive never holds). */
int wal_spool_file_parse(const char *file, uint32_t *ret_tli, uint64_t *ret_segno, bool *ret_history);

/* A WAL file written where PostgreSQL asked for it (restore_command's %p), from the spool or from the
 * store: path.skyforge-tmp (created anew, 0600), filled from read_fn, fsync'ed and renamed over path, so
 * PostgreSQL never sees half a file. read_fn returns the bytes it put in buf, 0 at the end, or a negative
 * errno after err_set(). Errors carry their message (err_set()); the temporary file is removed. */
typedef ssize_t (*WalFileReadFn)(void *userdata, void *buf, size_t size);
int wal_file_write_atomic(const char *path, WalFileReadFn read_fn, void *userdata);
