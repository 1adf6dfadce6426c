/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "conf/conf.h"
#include "jobs/wal.h"
#include "store/objects.h"

/* Where a restore reads a job's backups from: the configured destination (MinIO), or the mirror's offsite
 * copy of it when that holds none or cannot be read (a rebuilt node whose MinIO is empty or not up yet). */

typedef struct BackupSource {
        Store *store;
        BackupList list;
        char *location;
        bool offsite;
} BackupSource;

void backup_source_done(BackupSource *p);

/* Where the mirror job keeps its copy of location (a location on the [mirror] source remote):
 * DEST/<bucket>/<prefix>. NULL when the location is not mirrored. */
char *backup_offsite_location(const Config *c, const char *location);

/* The backups of job: the destination's when it has any, else the offsite copy's; an error naming both
 * when neither has one. */
int backup_source_open(const Config *c, const char *job, BackupSource *ret);

/* The physical path (base backups and the WAL archive), both from the same side: the base backups'
 * destination when it holds any, else the offsite copy, whose WAL is then the offsite copy of the WAL
 * archive too. */
typedef struct PhysicalSource {
        BackupSource base;
        WalStore wal;
} PhysicalSource;

void physical_source_done(PhysicalSource *p);
int physical_source_open(const Config *c, PhysicalSource *ret);
/* The same from the offsite copy alone (a base backup the destination does not hold); -ENOENT without a
 * message when [mirror] does not copy the base backups' destination. */
int physical_source_open_offsite(const Config *c, PhysicalSource *ret);
