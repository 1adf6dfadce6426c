/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <pthread.h>
#include <sysexits.h>
#include <time.h>

#include "log/log.h"
#include "pipe/sink-thread.h"

typedef struct ThreadSink {
        Sink sink;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t filled; /* a buffer was queued, or the end, or stop */
        pthread_cond_t drained; /* a buffer came back, or the consumer ended */
        uint8_t **buffers;
        size_t *lengths;
        unsigned n_buffers;
        size_t buffer_size;
        unsigned head, queued; /* queued buffers from head on; the consumer works on buffers[head] */
        unsigned fill; /* the producer's buffer: head + queued, moved only by the producer */
        bool end; /* the producer is done: finish downstream after the queue */
        bool stop; /* give up: leave the queue, do not finish downstream */
        bool exited; /* the consumer returned */
        int error; /* the consumer's failure, ErrSaved in failure */
        ErrSaved failure;
        bool finished;
} ThreadSink;

static void *consumer_main(void *userdata) {
        ThreadSink *t = userdata;
        int r = 0;

        pthread_mutex_lock(&t->lock);
        for (;;) {
                if (t->stop)
                        break;
                if (t->queued > 0) {
                        uint8_t *buf = t->buffers[t->head];
                        size_t n = t->lengths[t->head];

                        pthread_mutex_unlock(&t->lock);
                        r = sink_write(t->sink.next, buf, n);
                        pthread_mutex_lock(&t->lock);
                        if (r < 0)
                                break;
                        t->head = (t->head + 1) % t->n_buffers;
                        t->queued--;
                        pthread_cond_signal(&t->drained);
                        continue;
                }
                if (t->end) {
                        pthread_mutex_unlock(&t->lock);
                        r = sink_finish(t->sink.next);
                        pthread_mutex_lock(&t->lock);
                        break;
                }
                pthread_cond_wait(&t->filled, &t->lock);
        }
        if (r < 0) {
                err_save(&t->failure, r);
                t->error = r;
        }
        t->exited = true;
        pthread_cond_broadcast(&t->drained);
        pthread_mutex_unlock(&t->lock);
        return NULL;
}

/* Waits, with the lock held, until pred() holds or the consumer has failed; a cancellation request (which
 * only interrupts the main thread's system calls, not a condition wait) is noticed within a second. */
static int wait_consumer(ThreadSink *t, bool (*pred)(const ThreadSink *t)) {
        while (!pred(t) && !t->exited) {
                struct timespec ts;

                if (cancel_requested())
                        return -ECANCELED;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                (void) pthread_cond_timedwait(&t->drained, &t->lock, &ts);
        }
        return 0;
}

static bool has_room(const ThreadSink *t) {
        return t->queued < t->n_buffers;
}

static bool has_exited(const ThreadSink *t) {
        return t->exited;
}

static int consumer_failed(ThreadSink *t) {
        return t->error < 0 ? err_restore(&t->failure)
                            : err_setf(-EPIPE, "the stream's writer thread ended before its input");
}

/* Queues the buffer being filled and moves on to the next one once it is free: the consumer never reads
 * what the producer writes. */
static int queue_current(ThreadSink *t) {
        int r;

        if (t->lengths[t->fill] == 0)
                return 0;
        pthread_mutex_lock(&t->lock);
        if (t->exited) {
                pthread_mutex_unlock(&t->lock);
                return consumer_failed(t);
        }
        t->queued++;
        pthread_cond_signal(&t->filled);
        r = wait_consumer(t, has_room);
        if (r >= 0 && t->exited)
                r = consumer_failed(t);
        if (r >= 0) {
                t->fill = (t->fill + 1) % t->n_buffers;
                t->lengths[t->fill] = 0;
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int thread_sink_write(Sink *s, const void *buf, size_t n) {
        ThreadSink *t = (ThreadSink *) s;
        const uint8_t *p = buf;

        if (t->finished)
                return -ESTALE;
        while (n > 0) {
                size_t k = MIN(n, t->buffer_size - t->lengths[t->fill]);
                int r;

                memcpy(t->buffers[t->fill] + t->lengths[t->fill], p, k);
                t->lengths[t->fill] += k;
                p += k;
                n -= k;
                if (t->lengths[t->fill] == t->buffer_size) {
                        r = queue_current(t);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int thread_sink_finish(Sink *s) {
        ThreadSink *t = (ThreadSink *) s;
        int r;

        if (t->finished)
                return -ESTALE;
        r = queue_current(t);
        if (r < 0)
                return r;
        pthread_mutex_lock(&t->lock);
        t->end = true;
        pthread_cond_signal(&t->filled);
        r = wait_consumer(t, has_exited);
        if (r >= 0 && t->error < 0)
                r = consumer_failed(t);
        pthread_mutex_unlock(&t->lock);
        if (r >= 0)
                t->finished = true;
        return r;
}

static void thread_sink_free(Sink *s) {
        ThreadSink *t = (ThreadSink *) s;

        if (t->started) {
                pthread_mutex_lock(&t->lock);
                t->stop = true;
                pthread_cond_signal(&t->filled);
                pthread_mutex_unlock(&t->lock);
                /* The consumer stops at its next buffer; a write it is in the middle of obeys
                 * cancellation itself (the store's network loops). */
                pthread_join(t->thread, NULL);
        }
        /* sink_free() frees the downstream after this, with the thread gone. */
        pthread_cond_destroy(&t->drained);
        pthread_cond_destroy(&t->filled);
        pthread_mutex_destroy(&t->lock);
        for (unsigned i = 0; i < t->n_buffers; i++)
                free(t->buffers[i]);
        free(t->buffers);
        free(t->lengths);
        err_saved_done(&t->failure);
        free(t);
}

Sink *sink_thread_new(Sink *next, size_t buffer_size, unsigned n_buffers, int *ret_error) {
        ThreadSink *t = xcalloc(1, sizeof *t);
        int r;

        t->sink = (Sink){ .write = thread_sink_write,
                          .finish = thread_sink_finish,
                          .free = thread_sink_free,
                          .next = next };
        t->buffer_size = MAX(buffer_size, (size_t) 4096);
        t->n_buffers = MAX(n_buffers, 2U);
        t->buffers = xcalloc(t->n_buffers, sizeof *t->buffers);
        t->lengths = xcalloc(t->n_buffers, sizeof *t->lengths);
        for (unsigned i = 0; i < t->n_buffers; i++)
                t->buffers[i] = xmalloc(t->buffer_size);
        pthread_mutex_init(&t->lock, NULL);
        pthread_cond_init(&t->filled, NULL);
        pthread_cond_init(&t->drained, NULL);
        r = thread_start(&t->thread, consumer_main, t);
        if (r < 0) {
                t->sink.next = NULL;
                thread_sink_free(&t->sink);
                *ret_error =
                        err_set(r, EX_OSERR, "cannot start the stream's writer thread: %s", strerror(-r));
                return NULL;
        }
        t->started = true;
        return &t->sink;
}
