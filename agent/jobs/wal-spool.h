/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "conf/conf.h"
#include "jobs/wal-spool-take.h"
#include "jobs/wal.h"

/* The WAL spool: how the agent, running as root with the configuration, the age identity and the store,
 * hands WAL to a PostgreSQL that recovers as another user (the data directory's owner, who can read none of
 * those). The model is pgBackRest's asynchronous archive-get: the agent fetches each WAL file (decrypted,
 * decompressed, checked) into DATADIR/skyforge-wal, a directory owned by the data directory's owner, and
 * restore_command (`skyforge-agent wal-fetch --spool DIR %f %p`) needs no configuration: it moves a file
 * from there to %p. What the spool holds:
 *   FILE           a WAL file, ready (written as .FILE.tmp, owned by the data directory's owner, renamed)
 *   FILE.want      restore_command asks for FILE (it found neither FILE nor an answer)
 *   FILE.missing   the answer: the store does not hold FILE (restore_command exits 1: the end of the WAL)
 *   FILE.error     the answer: FILE could not be fetched, the text says why (exit 126: recovery stops)
 *   complete       every WAL file that recovery can ask for is in the spool already: what is not there,
 *                  the store does not hold (`restore postgres --to-datadir` without --start)
 * While the agent serves the spool it holds an flock on the directory; restore_command asks only then. */

#define WAL_SPOOL_NAME "skyforge-wal"
/* The live prefetch keeps at least this much free on the data directory's file system. */
#define WAL_SPOOL_RESERVE (UINT64_C(64) * 1024 * 1024)

/* Creates DATADIR/skyforge-wal (mode 0700, owned by uid:gid); *ret_path: its path. */
int wal_spool_create(const char *datadir, uid_t uid, gid_t gid, char **ret_path);

/* The live prefetch (restore --start, recover): a thread that answers restore_command's requests from the
 * store ws (cloned: the caller keeps its own) and fetches up to `ahead` segments beyond the newest one asked
 * for, never more than that many in the spool at once, and none while the file system has less than
 * WAL_SPOOL_RESERVE free. system_id: the base backup's system identifier, checked in each segment's first
 * page (0: not checked). */
typedef struct WalPrefetch WalPrefetch;
int wal_prefetch_start(const Config *c, const WalStore *ws, const char *spool, uid_t uid, gid_t gid,
                       unsigned ahead, uint64_t system_id, WalPrefetch **ret);
/* The first WAL file the prefetch could not serve (recovery stops there): err_set() with its message and
 * its error returned; 0 when there was none. */
int wal_prefetch_failure(WalPrefetch *p);
/* Stops the thread, releases the spool (restore_command no longer waits for answers) and frees p. */
void wal_prefetch_stop(WalPrefetch *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(WalPrefetch *, wal_prefetch_stop);

/* The whole range up front (restore --to-datadir without --start, when no agent stays to serve the
 * spool): every WAL file recovery from a base backup starting at segment start_segno of timeline tli can
 * ask for (its segments from there on, later timelines, history files) into the spool, after checking
 * that they fit with WAL_SPOOL_RESERVE to spare; then marks it complete. Returns the number of files. */
/* What wal_spool_fill() would fetch: the number of files and the bytes they take in the spool. */
int wal_spool_need(const WalStore *ws, uint32_t tli, uint64_t start_segno, size_t *ret_files,
                   uint64_t *ret_bytes);
int wal_spool_fill(const Config *c, const WalStore *ws, const char *spool, uid_t uid, gid_t gid,
                   uint32_t tli, uint64_t start_segno, uint64_t system_id, uint64_t *ret_bytes);

/* ---- the pure parts (unit tests) ---- */

/* Checks the first page of WAL segment segno: a long page header for that position, the segment size, and
 * (system_id != 0) the cluster's system identifier. A partial segment may still be all zeros there. -EBADMSG
 * with *ret_why set when it does not fit. */
int wal_segment_header_check(const uint8_t *page, size_t n, uint64_t segno, uint64_t system_id, bool partial,
                             const char **ret_why);
