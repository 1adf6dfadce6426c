/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <pthread.h>
#include <sysexits.h>
#include <time.h>

#include "log/log.h"
#include "sys/pool.h"
#include "shared/util.h"

typedef struct PoolThread {
        Pool *pool;
        pthread_t thread;
        void *slot;
} PoolThread;

struct Pool {
        const PoolOps *ops;
        void *userdata;
        pthread_mutex_t lock;
        pthread_cond_t work;  /* an item is queued, or closing */
        pthread_cond_t space; /* the queue has room */
        pthread_cond_t idle;  /* an item finished */
        void **queue;
        size_t cap, head, len;
        size_t pending; /* queued or running */
        bool closing;
        PoolThread *threads;
        unsigned n_threads;
        void *caller_slot; /* n_threads 0 */
};

static void *pool_main(void *userdata) {
        PoolThread *t = userdata;
        Pool *p = t->pool;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                if (p->len > 0) {
                        void *item = p->queue[p->head];
                        p->head = (p->head + 1) % p->cap;
                        p->len--;
                        pthread_cond_signal(&p->space);
                        pthread_mutex_unlock(&p->lock);
                        p->ops->run(item, &t->slot, p->userdata);
                        pthread_mutex_lock(&p->lock);
                        p->pending--;
                        pthread_cond_broadcast(&p->idle);
                        continue;
                }
                if (p->closing)
                        break;
                pthread_cond_wait(&p->work, &p->lock);
        }
        pthread_mutex_unlock(&p->lock);
        if (p->ops->slot_done)
                p->ops->slot_done(t->slot, p->userdata);
        return NULL;
}

int pool_new(unsigned n_threads, size_t queue_max, const PoolOps *ops, void *userdata, Pool **ret) {
        Pool *p = xcalloc(1, sizeof *p);
        int r = 0;

        p->ops = ops;
        p->userdata = userdata;
        p->cap = MAX(queue_max, (size_t) 1);
        p->queue = xcalloc(p->cap, sizeof(void *));
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->work, NULL);
        pthread_cond_init(&p->space, NULL);
        pthread_cond_init(&p->idle, NULL);
        p->threads = xcalloc(MAX(n_threads, 1U), sizeof(PoolThread));
        for (; p->n_threads < n_threads; p->n_threads++) {
                p->threads[p->n_threads].pool = p;
                r = thread_start(&p->threads[p->n_threads].thread, pool_main, &p->threads[p->n_threads]);
                if (r < 0)
                        break;
        }
        if (r < 0 && p->n_threads == 0) {
                pool_free(p);
                return err_set(r, EX_OSERR, "cannot start a worker thread: %s", strerror(-r));
        }
        *ret = p;
        return 0;
}

void pool_push(Pool *p, void *item) {
        if (p->n_threads == 0) {
                p->ops->run(item, &p->caller_slot, p->userdata);
                return;
        }
        pthread_mutex_lock(&p->lock);
        while (p->len >= p->cap)
                pthread_cond_wait(&p->space, &p->lock);
        p->queue[(p->head + p->len) % p->cap] = item;
        p->len++;
        p->pending++;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->lock);
}

void pool_wait_idle(Pool *p, void (*tick)(void *userdata)) {
        pthread_mutex_lock(&p->lock);
        while (p->pending > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&p->idle, &p->lock, &ts);
                if (tick) {
                        pthread_mutex_unlock(&p->lock);
                        tick(p->userdata);
                        pthread_mutex_lock(&p->lock);
                }
        }
        pthread_mutex_unlock(&p->lock);
}

void pool_free(Pool *p) {
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        p->closing = true;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_threads; i++)
                pthread_join(p->threads[i].thread, NULL);
        if (p->n_threads == 0 && p->ops->slot_done)
                p->ops->slot_done(p->caller_slot, p->userdata);
        free(p->threads);
        free(p->queue);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->space);
        pthread_cond_destroy(&p->idle);
        pthread_mutex_destroy(&p->lock);
        free(p);
}
