/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>

/* What earlier runs copied, where the destination lists a copy with another ETag than its source's: a
 * multipart source object copied in one PUT (its copy's ETag is the MD5 of the bytes). Without a record
 * such an object costs one HEAD of the destination per run (its recorded source ETag decides); with one,
 * the two listings decide: the source's ETag and the copy's ETag are both as they were recorded.
 *
 * A cache, never the truth: a missing, unreadable or damaged file only means HEADs again, and the records
 * are learned back from them. An entry is made of digests only (SHA-256 of the destination, bucket and
 * key, and of each of the two ETags), so nothing a server sent is ever parsed back from the file, and
 * every line has the same length. A record matches only while both ETags are as recorded, so an old one
 * is never wrong, only useless: a bucket listed to its end keeps only the records this run met, so the
 * file does not outgrow the objects that need it. Thread-safe. */
typedef struct MirrorRecords MirrorRecords;

/* path: the file (a missing one is an empty set); destination: names the other side, so that records of
 * one destination never answer for another. Never fails: what cannot be read is logged and left out. */
MirrorRecords *mirror_records_load(const char *path, const char *destination);
void mirror_records_free(MirrorRecords *r);

/* Whether (bucket, key) was copied from the source version `version` into the destination object whose
 * ETag is `dst_etag`; a match is kept for the next save. */
bool mirror_records_match(MirrorRecords *r, const char *bucket, const char *key, const char *version,
                          const char *dst_etag);
/* Records a copy (or a HEAD that confirmed one); nothing for empty or equal ETags. */
void mirror_records_note(MirrorRecords *r, const char *bucket, const char *key, const char *version,
                         const char *dst_etag);
/* The listings of bucket were read to their end: its records that this run did not match or note are
 * of objects gone or changed, and are not saved. Records of other buckets are. */
void mirror_records_listed(MirrorRecords *r, const char *bucket);
/* Writes what is worth keeping (temporary file, fsync, rename). */
int mirror_records_save(MirrorRecords *r);
