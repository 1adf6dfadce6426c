/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stddef.h>

/* A fixed set of worker threads (started with thread_start(), so signals stay with the main thread)
 * taking items from a bounded queue: the producer blocks while the queue is full, so memory does not
 * grow with the number of items. Each thread has a slot of its own for state it keeps between items
 * (its own connections). Errors are the run function's to carry home (ErrSaved). */
typedef struct Pool Pool;

typedef struct PoolOps {
        void (*run)(void *item, void **slot, void *userdata); /* owns item */
        void (*slot_done)(void *slot, void *userdata);         /* when the thread ends; may be NULL */
} PoolOps;

/* n_threads 0: no threads, pool_push() runs items in the caller. -errno with err_set() when no thread
 * could be started. */
int pool_new(unsigned n_threads, size_t queue_max, const PoolOps *ops, void *userdata, Pool **ret);
void pool_push(Pool *p, void *item);
/* Waits until every item pushed so far ran; tick (may be NULL) is called about every second meanwhile. */
void pool_wait_idle(Pool *p, void (*tick)(void *userdata));
/* Lets the queued items run, then ends the threads. */
void pool_free(Pool *p);
