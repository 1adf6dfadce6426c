/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sysexits.h>

#include "crypto/age.h"
#include "log/log.h"
#include "pipe/bigbuf.h"
#include "pipe/pipe.h"

#define CIPHER_CHUNK_SIZE (AGE_CHUNK_SIZE + AGE_TAG_SIZE)

static void *fail_with(int *ret_error, int r) {
        *ret_error = r;
        return NULL;
}

/* STREAM chunks are independent (the nonce is the chunk counter), so a round of up to AGE_BATCH chunks is
 * sealed or opened by AGE_THREADS threads at once. Rounds are handed to a worker thread; the caller's
 * thread goes on with its own work (reading the next round) and, when it needs a round's result, seals or
 * opens unclaimed chunks itself until that round is done: the oldest round's first, then those of the
 * rounds after it, so it never sleeps while there is work (sleeping and being woken cost more than a
 * chunk's crypto on a VM, and the caller waiting for the worker's last chunk left a core idle). So the
 * split of the crypto between the two threads follows whatever else the caller has to do. Output order is
 * kept because every chunk has its fixed place in its round's buffer, and memory stays at a few rounds of
 * buffers whatever the stream's size. The worker starts with the first round of more than one chunk, so
 * small payloads never start a thread. */
#define AGE_THREADS 2
#define AGE_BATCH 8
#define AGE_QUEUE 2       /* decryption's rounds */
#define AGE_SEAL_ROUNDS 3 /* encryption's */
#define AGE_POOL_QUEUE 3  /* the most rounds either side submits and has not waited for yet */
#define PLAIN_ROUND_SIZE (AGE_BATCH * AGE_CHUNK_SIZE)
#define CIPHER_ROUND_SIZE (AGE_BATCH * CIPHER_CHUNK_SIZE)

/* The buffers of n rounds live in one block (bigbuf.h: huge pages, as they are touched throughout): the
 * plaintext of every round, then the ciphertext of every round. */
#define ROUNDS_SIZE(n) ((n) * (PLAIN_ROUND_SIZE + CIPHER_ROUND_SIZE))
#define ROUND_PLAIN(block, i) ((block) + (i) * PLAIN_ROUND_SIZE)
#define ROUND_CIPHER(block, n, i) ((block) + (n) * PLAIN_ROUND_SIZE + (i) * CIPHER_ROUND_SIZE)

typedef int (*AgeChunkFn)(void *userdata, AgeStream *s, size_t i);

/* One round of chunks; claimed and done are guarded by the pool's lock. */
typedef struct AgeRound {
        AgeChunkFn fn;
        void *userdata;
        size_t n, claimed, done;
        int results[AGE_BATCH];
} AgeRound;

typedef struct AgePool {
        AgeStream *worker_stream;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t work, finished; /* the worker waits on work, the caller on finished */
        bool running, unavailable, quit;
        AgeRound *queue[AGE_POOL_QUEUE]; /* submitted rounds not yet waited for, oldest first */
        size_t queued;
} AgePool;

/* Called with the lock held; drops it while fn runs. */
static void round_run_one(AgePool *pool, AgeRound *round, AgeStream *s) {
        size_t i = round->claimed++;
        int r;

        pthread_mutex_unlock(&pool->lock);
        r = round->fn(round->userdata, s, i);
        pthread_mutex_lock(&pool->lock);
        round->results[i] = r;
        if (++round->done == round->n)
                pthread_cond_broadcast(&pool->finished);
}

/* The oldest round with unclaimed chunks: rounds are finished in the order they are waited for. */
static AgeRound *pool_next_unclaimed(AgePool *pool) {
        for (size_t i = 0; i < pool->queued; i++)
                if (pool->queue[i]->claimed < pool->queue[i]->n)
                        return pool->queue[i];
        return NULL;
}

static void *pool_worker(void *p) {
        AgePool *pool = p;

        pthread_mutex_lock(&pool->lock);
        for (;;) {
                AgeRound *round;
                while (!pool->quit && !(round = pool_next_unclaimed(pool)))
                        pthread_cond_wait(&pool->work, &pool->lock);
                if (pool->quit)
                        break;
                round_run_one(pool, round, pool->worker_stream);
        }
        pthread_mutex_unlock(&pool->lock);
        return NULL;
}

static void pool_start(AgePool *pool, const AgeStream *s) {
        if (age_stream_clone(s, &pool->worker_stream) < 0) {
                pool->unavailable = true;
                return;
        }
        pthread_mutex_init(&pool->lock, NULL);
        pthread_cond_init(&pool->work, NULL);
        pthread_cond_init(&pool->finished, NULL);
        pool->running = thread_start(&pool->thread, pool_worker, pool) >= 0;
        if (!pool->running) {
                /* Not fatal: the caller's thread does all chunks. */
                pthread_cond_destroy(&pool->finished);
                pthread_cond_destroy(&pool->work);
                pthread_mutex_destroy(&pool->lock);
                age_stream_free(TAKE_PTR(pool->worker_stream));
                pool->unavailable = true;
        }
}

/* Queues chunks 0..n-1 of a round for fn; pool_wait() returns when they are done. Without a worker the
 * round is run here and now. At most AGE_QUEUE rounds may be submitted and not yet waited for. */
static void pool_submit(AgePool *pool, AgeStream *s, AgeRound *round, AgeChunkFn fn, void *userdata,
                        size_t n) {
        assert(n > 0 && n <= AGE_BATCH);
        *round = (AgeRound){ .fn = fn, .userdata = userdata, .n = n };
        if (n > 1 && !pool->running && !pool->unavailable)
                pool_start(pool, s);
        if (!pool->running) {
                for (size_t i = 0; i < n; i++)
                        round->results[i] = fn(userdata, s, i);
                round->claimed = round->done = n;
                return;
        }
        pthread_mutex_lock(&pool->lock);
        assert(pool->queued < AGE_POOL_QUEUE);
        pool->queue[pool->queued++] = round;
        pthread_cond_signal(&pool->work);
        pthread_mutex_unlock(&pool->lock);
}

/* Waits for the oldest submitted round, doing unclaimed chunks (its own first, then later rounds') on the
 * caller's thread meanwhile; results[] then holds what each chunk's fn returned. */
static void pool_wait(AgePool *pool, AgeStream *s, AgeRound *round) {
        if (!pool->running) {
                assert(round->done == round->n);
                return;
        }
        pthread_mutex_lock(&pool->lock);
        assert(pool->queued > 0 && pool->queue[0] == round);
        while (round->done < round->n) {
                AgeRound *next = pool_next_unclaimed(pool);
                if (next)
                        round_run_one(pool, next, s);
                else
                        pthread_cond_wait(&pool->finished, &pool->lock);
        }
        pool->queued--;
        memmove(pool->queue, pool->queue + 1, pool->queued * sizeof pool->queue[0]);
        pthread_mutex_unlock(&pool->lock);
}

/* Stops the worker; a chunk it is running is finished first, queued ones are dropped. */
static void pool_done(AgePool *pool) {
        if (pool->running) {
                pthread_mutex_lock(&pool->lock);
                pool->quit = true;
                pthread_cond_broadcast(&pool->work);
                pthread_mutex_unlock(&pool->lock);
                pthread_join(pool->thread, NULL);
                pthread_cond_destroy(&pool->finished);
                pthread_cond_destroy(&pool->work);
                pthread_mutex_destroy(&pool->lock);
                pool->running = false;
        }
        age_stream_free(TAKE_PTR(pool->worker_stream));
}

/* Encryption. The header and payload nonce go out with the first write (or at finish), so a sink that
 * fails to set up writes nothing. A full round of chunks is held back until more data arrives, because
 * only then do we know its last chunk is not the final one. AGE_SEAL_ROUNDS rounds go round a ring:
 * while the submitted ones are sealed (by the worker, and by this thread once it has to wait for the
 * oldest), the next one is filled, and the oldest is waited for and written only when all are in flight,
 * so the worker has work queued while this thread reads. A round's plaintext is contiguous and sealed
 * into a buffer of its own, so a producer can read straight into it (the sink's buffer()/commit()) and
 * nothing is copied on the way to the cipher. */
typedef struct SealRound {
        AgeRound job;
        uint8_t *plain;  /* AGE_BATCH chunks of plaintext, back to back */
        uint8_t *cipher; /* AGE_BATCH sealed chunks, each AGE_CHUNK_SIZE + tag */
        size_t used;     /* plaintext bytes in the round */
        size_t wipe;     /* plaintext bytes the buffer ever held or lent: wiped at the end */
        uint64_t base_counter;
        size_t n_chunks;
        bool final;
} SealRound;

typedef struct AgeSink {
        Sink base;
        char *pending; /* header + payload nonce, not written yet */
        size_t pending_len;
        AgeStream *stream;
        AgePool pool;
        uint8_t *block; /* the rounds' buffers */
        SealRound rounds[AGE_SEAL_ROUNDS];
        SealRound *cur; /* the round being filled */
        size_t in_flight; /* submitted and not written: the rounds before cur in the ring, oldest first */
        uint64_t next_counter;
        size_t lent; /* bytes of cur->plain lent by buffer(), not committed yet */
        int error; /* sticky: once a write failed, the stream is broken for good */
        bool finished;
} AgeSink;

static int age_sink_flush_pending(AgeSink *a) {
        int r;

        if (!a->pending)
                return 0;
        r = sink_write(a->base.next, a->pending, a->pending_len);
        free(a->pending);
        a->pending = NULL;
        return r;
}

static int age_sink_seal_one(void *userdata, AgeStream *s, size_t i) {
        SealRound *round = userdata;
        size_t off = i * AGE_CHUNK_SIZE;
        size_t n = round->used - off < AGE_CHUNK_SIZE ? round->used - off : AGE_CHUNK_SIZE;

        age_stream_set_counter(s, round->base_counter + i);
        return age_stream_seal(s, round->plain + off, n, round->final && i == round->n_chunks - 1,
                               round->cipher + i * CIPHER_CHUNK_SIZE);
}

/* Waits until the round is sealed and writes it: all chunks are full except perhaps the final one, so the
 * ciphertext is contiguous. With reseal_final, the round was submitted as not the last one and then the
 * input ended (a producer that borrowed the buffer filled the round exactly): its plaintext is still there,
 * so its last chunk is sealed again, now as the final one. */
static int age_sink_write_round(AgeSink *a, SealRound *round, bool reseal_final) {
        pool_wait(&a->pool, a->stream, &round->job);
        if (reseal_final) {
                round->final = true;
                round->job.results[round->n_chunks - 1] =
                        age_sink_seal_one(round, a->stream, round->n_chunks - 1);
        }
        for (size_t i = 0; i < round->n_chunks; i++)
                if (round->job.results[i] < 0)
                        return err_set(round->job.results[i], EX_SOFTWARE,
                                       "ChaCha20-Poly1305 encryption failed in OpenSSL");
        return sink_write(a->base.next, round->cipher, round->used + round->n_chunks * AGE_TAG_SIZE);
}

static SealRound *age_sink_oldest(AgeSink *a) {
        size_t cur = (size_t) (a->cur - a->rounds);
        return &a->rounds[(cur + AGE_SEAL_ROUNDS - a->in_flight) % AGE_SEAL_ROUNDS];
}

/* Writes the oldest round in flight; see age_sink_write_round() for reseal_final. */
static int age_sink_write_oldest(AgeSink *a, bool reseal_final) {
        SealRound *round = age_sink_oldest(a);

        assert(a->in_flight > 0);
        a->in_flight--;
        return age_sink_write_round(a, round, reseal_final);
}

/* Submits the round being filled and moves on to the next one in the ring, writing the oldest round first
 * when all are in flight. Only an empty payload has an empty final chunk. */
static int age_sink_submit(AgeSink *a, bool final) {
        SealRound *round = a->cur;
        int r;

        r = age_sink_flush_pending(a);
        if (r < 0)
                return r;
        round->final = final;
        round->n_chunks = round->used == 0 ? 1 : (round->used + AGE_CHUNK_SIZE - 1) / AGE_CHUNK_SIZE;
        round->base_counter = a->next_counter;
        a->next_counter += round->n_chunks;
        pool_submit(&a->pool, a->stream, &round->job, age_sink_seal_one, round, round->n_chunks);
        a->in_flight++;
        a->cur = &a->rounds[(size_t) (round - a->rounds + 1) % AGE_SEAL_ROUNDS];
        if (final) {
                while (a->in_flight > 0) {
                        r = age_sink_write_oldest(a, false);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        if (a->in_flight == AGE_SEAL_ROUNDS) {
                r = age_sink_write_oldest(a, false);
                if (r < 0)
                        return r;
        }
        a->cur->used = 0;
        return 0;
}

/* Free plaintext space in the round being filled; submits a full round first. */
static int age_sink_space(AgeSink *a, uint8_t **ret_buf, size_t *ret_size) {
        if (a->error < 0)
                return a->error;
        if (a->finished)
                return -ESTALE;
        if (a->cur->used == PLAIN_ROUND_SIZE) {
                int r = age_sink_submit(a, false);
                if (r < 0)
                        return a->error = r;
        }
        *ret_buf = a->cur->plain + a->cur->used;
        *ret_size = PLAIN_ROUND_SIZE - a->cur->used;
        return 0;
}

static int age_sink_write(Sink *s, const void *buf, size_t n) {
        AgeSink *a = (AgeSink *) s;
        const uint8_t *p = buf;

        while (n > 0) {
                uint8_t *space;
                size_t k;
                int r = age_sink_space(a, &space, &k);
                if (r < 0)
                        return r;
                if (k > n)
                        k = n;
                memcpy(space, p, k);
                a->cur->used += k;
                a->cur->wipe = MAX(a->cur->wipe, a->cur->used);
                p += k;
                n -= k;
        }
        return 0;
}

static int age_sink_buffer(Sink *s, void **ret_buf, size_t *ret_size) {
        AgeSink *a = (AgeSink *) s;
        uint8_t *space;
        int r;

        r = age_sink_space(a, &space, &a->lent);
        if (r < 0)
                return r;
        a->cur->wipe = PLAIN_ROUND_SIZE; /* the producer may write anywhere in what it borrows */
        *ret_buf = space;
        *ret_size = a->lent;
        return 0;
}

static int age_sink_commit(Sink *s, size_t n) {
        AgeSink *a = (AgeSink *) s;

        if (a->error < 0)
                return a->error;
        assert(n <= a->lent);
        a->cur->used += n;
        a->lent = 0;
        return 0;
}

static int age_sink_finish(Sink *s) {
        AgeSink *a = (AgeSink *) s;
        int r = 0;

        if (a->error < 0)
                return a->error;
        if (a->finished)
                return 0;
        if (a->cur->used == 0 && a->in_flight > 0) {
                /* The input ended right after a full round: the newest round in flight is the last. */
                while (r >= 0 && a->in_flight > 0)
                        r = age_sink_write_oldest(a, a->in_flight == 1);
        } else /* only an empty payload has an empty final chunk */
                r = age_sink_submit(a, true);
        if (r < 0)
                return a->error = r;
        a->finished = true;
        return sink_finish(a->base.next);
}

static void age_sink_free(Sink *s) {
        AgeSink *a = (AgeSink *) s;

        pool_done(&a->pool); /* before the buffers go: the worker may still be sealing into one */
        age_stream_free(a->stream);
        for (size_t i = 0; i < AGE_SEAL_ROUNDS; i++)
                if (a->rounds[i].wipe > 0)
                        OPENSSL_cleanse(a->rounds[i].plain, a->rounds[i].wipe);
        bigbuf_free(a->block, ROUNDS_SIZE(AGE_SEAL_ROUNDS), 0);
        free(a->pending);
        free(a);
}

Sink *sink_age_new(Sink *next, char *const *recipients, int *ret_error) {
        _cleanup_free_ uint8_t (*keys)[AGE_KEY_SIZE] = NULL;
        _cleanup_free_ char *header = NULL;
        uint8_t file_key[AGE_FILE_KEY_SIZE], nonce[AGE_NONCE_SIZE];
        size_t n = strv_length(recipients), header_len;
        AgeStream *stream = NULL;
        AgeSink *a;
        int r;

        if (n == 0)
                return fail_with(ret_error, err_set(-EINVAL, EX_CONFIG,
                                                    "cannot encrypt: no age recipients configured"));
        keys = xcalloc(n, AGE_KEY_SIZE);
        for (size_t i = 0; i < n; i++) {
                r = age_recipient_parse(recipients[i], keys[i]);
                if (r < 0)
                        return fail_with(ret_error, r);
        }
        if (RAND_bytes(file_key, sizeof file_key) != 1 || RAND_bytes(nonce, sizeof nonce) != 1)
                return fail_with(ret_error, err_set(-EIO, EX_SOFTWARE,
                                                    "cannot encrypt: the OpenSSL random generator failed"));
        r = age_header_build((const uint8_t(*)[AGE_KEY_SIZE]) keys, n, file_key, &header, &header_len);
        if (r >= 0)
                r = age_stream_new(file_key, nonce, true, &stream);
        OPENSSL_cleanse(file_key, sizeof file_key);
        if (r < 0)
                return fail_with(ret_error, r);

        header = xrealloc(header, header_len + AGE_NONCE_SIZE);
        memcpy(header + header_len, nonce, AGE_NONCE_SIZE);

        a = xcalloc(1, sizeof *a);
        a->base = (Sink){ .write = age_sink_write, .finish = age_sink_finish, .free = age_sink_free,
                          .next = next, .buffer = age_sink_buffer, .commit = age_sink_commit };
        a->pending = TAKE_PTR(header);
        a->pending_len = header_len + AGE_NONCE_SIZE;
        a->stream = stream;
        a->block = bigbuf_alloc(ROUNDS_SIZE(AGE_SEAL_ROUNDS));
        for (size_t i = 0; i < AGE_SEAL_ROUNDS; i++) {
                a->rounds[i].plain = ROUND_PLAIN(a->block, i);
                a->rounds[i].cipher = ROUND_CIPHER(a->block, AGE_SEAL_ROUNDS, i);
        }
        a->cur = &a->rounds[0];
        return &a->base;
}

/* Decryption. The header is read and checked when the source is created, so a wrong identity or a
 * corrupt header fails before any plaintext exists. A round of chunks is opened at once, and two rounds
 * alternate: while one is opened (by the worker, and by this thread once it has read the next one), the
 * ciphertext of the next round is read into the other. Plaintext is released only for chunks that
 * authenticated, in order, up to the first one that did not; a round read ahead past the final chunk is
 * trailing data. */
typedef struct OpenRound {
        AgeRound job;
        uint8_t *cipher; /* up to AGE_BATCH encrypted chunks, back to back */
        size_t cipher_len;
        uint8_t *plain; /* AGE_BATCH chunks of plaintext */
        size_t wipe;    /* plaintext bytes the buffer ever held: wiped at the end */
        uint64_t base_counter;
        size_t n_chunks;
        bool is_last[AGE_BATCH];
        bool in_flight; /* submitted, not yet waited for */
} OpenRound;

typedef struct AgeSource {
        Source base;
        AgeStream *stream;
        AgePool pool;
        uint8_t *block; /* the rounds' buffers */
        OpenRound rounds[AGE_QUEUE];
        OpenRound *cur; /* the round whose plaintext is being read */
        uint8_t *carry; /* bytes read past the header, consumed before upstream */
        size_t carry_pos, carry_len;
        uint64_t next_counter; /* of the first chunk of the next round read */
        size_t pos, len; /* unread plaintext in cur->plain */
        bool input_end; /* upstream ended: a round was read short */
        bool last_seen, eof;
        int deferred; /* an error to return once the plaintext before it was read */
        int error;
} AgeSource;

/* Reads up to n bytes, short only at the end of the input. */
static ssize_t age_source_fill(AgeSource *a, uint8_t *buf, size_t n) {
        size_t done = 0;

        if (a->carry_pos < a->carry_len) {
                size_t k = a->carry_len - a->carry_pos < n ? a->carry_len - a->carry_pos : n;
                memcpy(buf, a->carry + a->carry_pos, k);
                a->carry_pos += k;
                done = k;
        }
        while (done < n) {
                ssize_t k = source_read(a->base.upstream, buf + done, n - done);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        return (ssize_t) done;
}

static int payload_fail(const char *what) {
        return err_set(-EPROTO, EX_DATAERR, "the age payload %s (the file is truncated or corrupt)", what);
}

/* Opening results of one chunk, turned into messages by the caller's thread. */
#define CHUNK_BAD -1         /* does not authenticate */
#define CHUNK_EMPTY_FINAL -2 /* an empty final chunk after data */

static int age_source_open_one(void *userdata, AgeStream *s, size_t i) {
        OpenRound *round = userdata;
        size_t off = i * CIPHER_CHUNK_SIZE;
        size_t n = round->cipher_len - off < CIPHER_CHUNK_SIZE ? round->cipher_len - off : CIPHER_CHUNK_SIZE;
        uint64_t counter = round->base_counter + i;
        uint8_t *in = round->cipher + off, *out = round->plain + i * AGE_CHUNK_SIZE;

        round->is_last[i] = false;
        age_stream_set_counter(s, counter);
        if (n < CIPHER_CHUNK_SIZE) {
                if (n == AGE_TAG_SIZE && counter > 0)
                        return CHUNK_EMPTY_FINAL;
                if (age_stream_open(s, in, n, true, out) < 0)
                        return CHUNK_BAD;
                round->is_last[i] = true;
                return 0;
        }
        if (age_stream_open(s, in, n, false, out) >= 0)
                return 0;
        /* A full-size chunk may also be the final one. */
        age_stream_set_counter(s, counter);
        if (age_stream_open(s, in, n, true, out) < 0)
                return CHUNK_BAD;
        round->is_last[i] = true;
        return 0;
}

/* Reads the next round's ciphertext into round and submits it to be opened; at the end of the input there
 * is nothing to submit and round stays idle. */
static int age_source_read_round(AgeSource *a, OpenRound *round) {
        ssize_t n;

        assert(!round->in_flight);
        if (a->input_end)
                return 0;
        n = age_source_fill(a, round->cipher, CIPHER_ROUND_SIZE);
        if (n < 0)
                return (int) n;
        if ((size_t) n < CIPHER_ROUND_SIZE)
                a->input_end = true;
        if (n == 0)
                return 0;
        round->cipher_len = (size_t) n;
        round->base_counter = a->next_counter;
        round->n_chunks = (round->cipher_len + CIPHER_CHUNK_SIZE - 1) / CIPHER_CHUNK_SIZE;
        round->wipe = MAX(round->wipe, round->n_chunks * AGE_CHUNK_SIZE);
        a->next_counter += round->n_chunks;
        pool_submit(&a->pool, a->stream, &round->job, age_source_open_one, round, round->n_chunks);
        round->in_flight = true;
        return 0;
}

/* Called once the current round's plaintext was read: releases the next round's. */
static int age_source_next_round(AgeSource *a) {
        OpenRound *next = &a->rounds[a->cur == &a->rounds[0]];
        uint64_t counter = age_stream_counter(a->stream); /* chunks released so far */
        size_t released = 0;
        ssize_t n;
        uint8_t extra;
        int r, ahead;

        if (a->deferred < 0)
                return a->deferred;
        if (a->last_seen) {
                /* Like age: the last chunk was released; anything after it is an error, not ignored. */
                if (next->in_flight) {
                        pool_wait(&a->pool, a->stream, &next->job);
                        next->in_flight = false;
                        return payload_fail("has trailing data after the final chunk");
                }
                n = a->input_end ? 0 : age_source_fill(a, &extra, 1);
                if (n < 0)
                        return (int) n;
                if (n > 0)
                        return payload_fail("has trailing data after the final chunk");
                a->eof = true;
                return 0;
        }

        if (!next->in_flight) { /* the first round, or the input ended */
                r = age_source_read_round(a, next);
                if (r < 0)
                        return r;
                if (!next->in_flight)
                        return payload_fail(counter == 0 ? "has no chunks" : "ends without a final chunk");
        }
        /* Read ahead into the round just read while the next one is opened. An error there is reported
         * once the plaintext before it was read. */
        ahead = age_source_read_round(a, a->cur);
        pool_wait(&a->pool, a->stream, &next->job);
        next->in_flight = false;
        a->cur = next;

        a->pos = a->len = 0;
        for (size_t i = 0; i < next->n_chunks; i++) {
                int k = next->job.results[i];
                size_t chunk_len = next->cipher_len - i * CIPHER_CHUNK_SIZE;

                if (chunk_len > CIPHER_CHUNK_SIZE)
                        chunk_len = CIPHER_CHUNK_SIZE;
                if (k == CHUNK_EMPTY_FINAL)
                        a->deferred = payload_fail("has an empty final chunk after data");
                else if (k < 0)
                        a->deferred = payload_fail(next->base_counter + i == 0 && chunk_len < AGE_TAG_SIZE ?
                                                   "is shorter than one chunk" : "does not authenticate");
                if (a->deferred < 0)
                        break;
                a->len += chunk_len - AGE_TAG_SIZE;
                released++;
                if (next->is_last[i]) {
                        a->last_seen = true;
                        if (i + 1 < next->n_chunks)
                                a->deferred = payload_fail("has trailing data after the final chunk");
                        break;
                }
        }
        if (a->deferred == 0 && ahead < 0)
                a->deferred = ahead;
        age_stream_set_counter(a->stream, next->base_counter + released);
        return released > 0 ? 0 : a->deferred;
}

/* > 0 once there is plaintext to read, 0 at the end. */
static int age_source_ready(AgeSource *a) {
        if (a->error < 0)
                return a->error;
        while (a->pos == a->len) {
                int r;
                if (a->eof)
                        return 0;
                r = age_source_next_round(a);
                if (r < 0)
                        return a->error = r;
        }
        return 1;
}

static ssize_t age_source_read(Source *s, void *buf, size_t n) {
        AgeSource *a = (AgeSource *) s;
        int r = age_source_ready(a);
        size_t k;

        if (r <= 0)
                return r;
        k = a->len - a->pos < n ? a->len - a->pos : n;
        memcpy(buf, a->cur->plain + a->pos, k);
        a->pos += k;
        return (ssize_t) k;
}

static ssize_t age_source_lend(Source *s, const void **ret_buf, size_t n) {
        AgeSource *a = (AgeSource *) s;
        int r = age_source_ready(a);
        size_t k;

        if (r <= 0)
                return r;
        k = a->len - a->pos < n ? a->len - a->pos : n;
        *ret_buf = a->cur->plain + a->pos;
        a->pos += k;
        return (ssize_t) k;
}

static void age_source_free(Source *s) {
        AgeSource *a = (AgeSource *) s;

        pool_done(&a->pool); /* before the buffers go: the worker may still be opening into one */
        age_stream_free(a->stream);
        for (size_t i = 0; i < AGE_QUEUE; i++)
                if (a->rounds[i].wipe > 0)
                        OPENSSL_cleanse(a->rounds[i].plain, a->rounds[i].wipe);
        bigbuf_free(a->block, ROUNDS_SIZE(AGE_QUEUE), 0);
        free(a->carry);
        free(a);
}

/* Reads the header into a buffer of its own; what was read past it goes to *ret_carry. */
static int age_source_read_header(Source *upstream, char **ret_header, size_t *ret_header_len,
                                  uint8_t **ret_carry, size_t *ret_carry_len) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t end, k;
                if (len == cap) {
                        cap = cap ? cap * 2 : 16384;
                        buf = xrealloc(buf, cap);
                }
                k = source_read(upstream, buf + len, cap - len);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        return err_set(-EBADMSG, EX_DATAERR, len == 0 ? "the age input is empty" :
                                       "the age header is truncated (is this an age file?)");
                len += (size_t) k;
                end = age_header_find_end(buf, len);
                if (end < 0)
                        return (int) end;
                if (end > 0) {
                        *ret_carry_len = len - (size_t) end;
                        *ret_carry = xmalloc(*ret_carry_len + 1);
                        memcpy(*ret_carry, buf + end, *ret_carry_len);
                        *ret_header_len = (size_t) end;
                        *ret_header = TAKE_PTR(buf);
                        return 0;
                }
        }
}

Source *source_age_new(Source *upstream, const char *identity_file, int *ret_error) {
        _cleanup_(age_identities_freep) AgeIdentities *ids = NULL;
        _cleanup_free_ char *header = NULL;
        _cleanup_free_ uint8_t *carry = NULL;
        uint8_t file_key[AGE_FILE_KEY_SIZE], nonce[AGE_NONCE_SIZE];
        size_t header_len = 0, carry_len = 0;
        AgeStream *stream = NULL;
        AgeSource *a;
        ssize_t n;
        int r;

        r = age_identities_load(identity_file, &ids);
        if (r < 0)
                return fail_with(ret_error, r);
        r = age_source_read_header(upstream, &header, &header_len, &carry, &carry_len);
        if (r < 0)
                return fail_with(ret_error, r);
        r = age_header_unwrap(header, header_len, ids, file_key);
        if (r < 0)
                return fail_with(ret_error, r);

        a = xcalloc(1, sizeof *a);
        a->base = (Source){ .read = age_source_read, .free = age_source_free, .upstream = upstream,
                            .lend = age_source_lend };
        a->carry = TAKE_PTR(carry);
        a->carry_len = carry_len;
        n = age_source_fill(a, nonce, sizeof nonce);
        /* Like age, a missing nonce counts as a bad header: it is read before any STREAM chunk. */
        if (n < 0)
                r = (int) n;
        else if ((size_t) n < sizeof nonce)
                r = err_set(-EBADMSG, EX_DATAERR,
                            "the age file ends before its payload nonce (is it truncated?)");
        else
                r = 0;
        if (r >= 0)
                r = age_stream_new(file_key, nonce, false, &stream);
        OPENSSL_cleanse(file_key, sizeof file_key);
        if (r < 0) {
                age_source_free(&a->base); /* not source_free(): upstream stays the caller's */
                return fail_with(ret_error, r);
        }
        a->stream = stream;
        a->block = bigbuf_alloc(ROUNDS_SIZE(AGE_QUEUE));
        for (size_t i = 0; i < AGE_QUEUE; i++) {
                a->rounds[i].plain = ROUND_PLAIN(a->block, i);
                a->rounds[i].cipher = ROUND_CIPHER(a->block, AGE_QUEUE, i);
        }
        a->cur = &a->rounds[0];
        return &a->base;
}
