/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>

#include "sys/pool.h"
#include "shared/util.h"

typedef struct Counts {
        pthread_mutex_t lock;
        unsigned items, slots_made, slots_done;
        pthread_t caller;
        bool in_caller;
} Counts;

static void run(void *item, void **slot, void *userdata) {
        Counts *c = userdata;

        pthread_mutex_lock(&c->lock);
        if (!*slot) {
                *slot = xcalloc(1, sizeof(unsigned));
                c->slots_made++;
        }
        (*(unsigned *) *slot)++;
        c->items += *(unsigned *) item;
        c->in_caller = pthread_equal(pthread_self(), c->caller);
        pthread_mutex_unlock(&c->lock);
        free(item);
}

static void slot_done(void *slot, void *userdata) {
        Counts *c = userdata;

        pthread_mutex_lock(&c->lock);
        if (slot)
                c->slots_done++;
        pthread_mutex_unlock(&c->lock);
        free(slot);
}

static const PoolOps ops = { .run = run, .slot_done = slot_done };

static unsigned *one(void) {
        unsigned *u = xmalloc(sizeof *u);
        *u = 1;
        return u;
}

/* Every item runs once, in a pool thread with a slot of its own; the queue stays bounded. */
static void pool_runs_every_item_in_its_threads(void **state) {
        Counts c = { .lock = PTHREAD_MUTEX_INITIALIZER, .caller = pthread_self() };
        Pool *p;

        assert_int_equal(pool_new(3, 2, &ops, &c, &p), 0);
        for (unsigned i = 0; i < 500; i++)
                pool_push(p, one());
        pool_wait_idle(p, NULL);
        assert_int_equal(c.items, 500);
        assert_false(c.in_caller);
        assert_true(c.slots_made >= 1 && c.slots_made <= 3);
        pool_push(p, one());
        pool_free(p);
        assert_int_equal(c.items, 501); /* queued items run before the threads end */
        assert_int_equal(c.slots_done, c.slots_made);
}

/* No threads: items run in the caller (the mirror's --dry-run). */
static void pool_without_threads_runs_in_the_caller(void **state) {
        Counts c = { .lock = PTHREAD_MUTEX_INITIALIZER, .caller = pthread_self() };
        Pool *p;

        assert_int_equal(pool_new(0, 1, &ops, &c, &p), 0);
        pool_push(p, one());
        pool_push(p, one());
        assert_int_equal(c.items, 2);
        assert_true(c.in_caller);
        pool_free(p);
        assert_int_equal(c.slots_done, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(pool_runs_every_item_in_its_threads),
                cmocka_unit_test(pool_without_threads_runs_in_the_caller),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
