/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "conf/conf.h"
#include "store/store.h"

/* The WAL archive: wal-stream writes it, wal-fetch (restore_command) and the point-in-time restore read it.
 * Objects, under [postgres] wal_destination (default: "wal/" in [postgres] destination):
 *   TTTTTTTT/SEGMENT.zst[.age]          a complete segment (TTTTTTTT: its timeline, 8 hex digits)
 *   TTTTTTTT/SEGMENT.partial.zst[.age]  the segment being written (zero-padded to the segment size),
 *                                       replaced when it completes; the last one of a timeline that ended
 *   TTTTTTTT/TTTTTTTT.history.zst[.age] the history file of timeline TTTTTTTT
 * Each is zstd, then age when [postgres] recipients are set, like the dumps. */

typedef struct WalStore {
        Store *store;
        char *prefix; /* "" or "wal/" */
} WalStore;

void wal_store_done(WalStore *w);
int wal_store_open(const Config *c, bool for_write, WalStore *ret);
/* Where the archive is: [postgres] wal_destination (prefix ""), else "wal/" in the dumps' destination. */
char *wal_store_location(const Config *c, char **ret_prefix);
/* The archive at location (e.g. its offsite copy), with the prefix wal_store_location() gave. */
int wal_store_open_location(const Config *c, const char *location, const char *prefix, bool for_write,
                            WalStore *ret);

/* The object name of WAL file `file` (a segment "000000010000000000000003" or a history file
 * "00000002.history"); NULL when file is neither. */
char *wal_object_name(const WalStore *w, const char *file, bool partial, bool encrypted);

/* Streams WAL from the [postgres] server into the store until SIGTERM (then the partial segment is
 * uploaded and 0 returned) or a failure. */
int wal_stream(const Config *c);

/* Fetches WAL file `file` into path (atomically): the complete segment, else its .partial, else -ENOENT
 * (with nothing written). */
int wal_fetch(const Config *c, const char *file, const char *path);

struct Manifest;
/* Deletes the WAL that no kept base backup needs: the segments (complete or partial) before the start
 * segment of oldest_kept (the oldest base backup retention keeps), on its timeline and older ones; history
 * files stay. Nothing without a kept base backup. With dry_run, only prints. Returns the number of objects
 * (to be) deleted. */
int wal_prune(const Config *c, Store *base_store, const struct Manifest *oldest_kept, bool dry_run, FILE *out);

struct Manifest;
/* Checks the WAL chain of base backup m: every segment from its start to its end, then no gap on its
 * timeline up to the newest stored segment, nor on any later timeline. Each problem is appended to
 * *problems; returns their number, or a negative errno when the store failed. */
int wal_check_chain(const Config *c, const struct Manifest *m, char ***problems);
/* The same for the archive ws (the configured one, or its offsite copy). */
int wal_check_chain_in(const WalStore *ws, const struct Manifest *m, char ***problems);
