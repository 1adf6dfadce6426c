/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "shared/util.h"

/* Which backups retention removes: those older than retention_days, but never the newest keep_min.
 * Pure: the caller lists, decides with this, then deletes. */
typedef struct RetentionItem {
        const char *id;
        uint64_t time_usec; /* when the backup was taken */
        bool remove;        /* out */
        char reason[96];    /* out: why kept or removed */
} RetentionItem;

/* items must be sorted newest first. Returns the number marked for removal. */
size_t retention_select(RetentionItem *items, size_t n, uint64_t now_usec, unsigned retention_days,
                        unsigned keep_min);
