/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>

#include "store/retention.h"

size_t retention_select(RetentionItem *items, size_t n, uint64_t now_usec, unsigned retention_days,
                        unsigned keep_min) {
        uint64_t max_age = (uint64_t) retention_days * USEC_PER_DAY;
        size_t removed = 0, intact = 0;

        for (size_t i = 0; i < n; i++) {
                RetentionItem *it = items + i;
                uint64_t age = now_usec > it->time_usec ? now_usec - it->time_usec : 0;
                unsigned days = (unsigned) (age / USEC_PER_DAY);

                it->remove = false;
                if (!it->damage && intact < keep_min) {
                        intact++;
                        snprintf(it->reason, sizeof it->reason,
                                 "kept: one of the newest %u intact (keep_min)", keep_min);
                } else if (it->damage && i < keep_min)
                        snprintf(it->reason, sizeof it->reason,
                                 "kept: one of the newest %u, but damaged (%s), so not counted toward "
                                 "keep_min",
                                 keep_min, it->damage);
                else if (age <= max_age)
                        snprintf(it->reason, sizeof it->reason, "kept: %u days old, within %u days%s%s%s",
                                 days, retention_days, it->damage ? " (damaged: " : "", strempty(it->damage),
                                 it->damage ? ")" : "");
                else {
                        it->remove = true;
                        removed++;
                        snprintf(it->reason, sizeof it->reason,
                                 "%u days old, older than retention_days = %u%s%s%s", days, retention_days,
                                 it->damage ? " (damaged: " : "", strempty(it->damage),
                                 it->damage ? ")" : "");
                }
        }
        return removed;
}
