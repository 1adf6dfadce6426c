/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "shared/util.h"

/* Which backups retention removes: those older than retention_days, but never the newest keep_min, and
 * never so many that fewer than keep_min intact backups remain. Pure: the caller lists, decides with this,
 * then deletes. */
typedef struct RetentionItem {
        const char *id;
        uint64_t time_usec; /* when the backup was taken */
        const char *damage; /* NULL: intact (its objects exist with their sizes); else what is wrong */
        bool remove;        /* out */
        char reason[160];   /* out: why kept or removed */
} RetentionItem;

/* items must be sorted newest first. Only intact items count toward keep_min: the newest keep_min intact
 * ones are kept, and so is every damaged one among the newest keep_min (it may still hold something).
 * Returns the number marked for removal. */
size_t retention_select(RetentionItem *items, size_t n, uint64_t now_usec, unsigned retention_days,
                        unsigned keep_min);
