/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror job: a merge of two stores (store/store.h), either of them an S3 remote or a local directory.
 * Bucket by bucket, the two listings are pulled page by page and merged in key order; the main thread
 * decides per key (copy, check, delete, skip) and hands copies to `transfers` worker threads through a
 * small bounded queue. A copy is one streamed read of the source (one GET, whose reply brings the headers:
 * no HEAD) into one writer of the destination, which sends it the cheapest way (in memory and one PUT,
 * one streamed PUT, or multipart through the S3 part workers). Nothing here grows with the number of
 * objects: a listing page per side, the queue, and fixed buffers per transfer.
 *
 * Content identity: every offsite copy records the source's ETag (and the SHA-256 where the object was
 * read whole before it was written) in destination metadata, so an object whose destination ETag differs
 * from the source's compares by one HEAD, and same-size edits are caught because the source ETag changes
 * with the content. Equal ETags need no request at all, so a no-op resync only lists; that is why a source
 * object that is multipart is copied in its own part sizes (the same parts give the same ETag) from
 * multipart_threshold up, and below it, in one PUT, noted in the records (jobs/mirror-record.h): the copy's
 * ETag with the source ETag it was made from, which the next run's listings then match. A
 * local file has no ETag: a local destination keeps the source's ETag with the file (store/local.c), so it
 * lists like the object it was copied from; a local source file that carries none is identified by its
 * size and modification time (a copy made after the file last changed is current, as rsync decides).
 * Where the bookkeeping would push an object past S3's 2 KB of user metadata it is left out, and the
 * object compares by size and ETag alone. `restore mirror` writes none into the source: the offsite copy's
 * record is compared with the source's ETag instead.
 *
 * Keys and bucket names come from the less trusted side: a key is opaque bytes and is written as the same
 * key or not at all (a local directory cannot hold "a/../b": such keys are named, counted and fail the
 * run), and a bucket name that is not a valid S3 bucket name is refused before it becomes a destination
 * bucket, prefix or directory. */
#include <assert.h>
#include <inttypes.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/context.h"
#include "jobs/mirror.h"
#include "jobs/mirror-record.h"
#include "log/log.h"
#include "store/store.h"
#include "sys/pool.h"
#include "sys/spool.h"

#define COPY_ATTEMPTS 3U
#define COPY_CHUNK (64U * 1024)
#define DELETE_BATCH 1000U
#define MIRROR_MMAP_THRESHOLD (1024 * 1024)
/* Small objects read ahead of their upload, all together at most (bytes). */
#define PREFETCH_MAX (4U * 1024 * 1024)
/* Threads reading ahead: a source reply takes a fraction of the destination's round trip over a WAN. */
#define MIRROR_FETCHERS(transfers) MAX((transfers) / 2, 1U)
/* In state_dir: jobs/mirror-record.h. */
#define MIRROR_RECORDS_FILE "mirror-records"

typedef struct Pair {
        char *name; /* the mirrored bucket, for filters and messages */
        Store *src, *dst;
        unsigned gen; /* workers clone the stores of the pair they work on */
} Pair;

typedef enum TaskKind {
        TASK_COPY,
        TASK_CHECK, /* same size, different ETag: compare the stored source ETag first */
} TaskKind;

/* A small object read whole by a fetcher before a transfer takes it: the transfer then only uploads. */
typedef struct Fetched {
        uint8_t *data;
        StoreAttrs attrs; /* from the GET's reply */
        char sha[65];
} Fetched;

typedef struct Task {
        TaskKind kind;
        const Pair *pair;
        char *key;
        char *version; /* the source's ETag, or its size and time when it has none */
        uint64_t size;
        char *dst_etag; /* TASK_CHECK: the destination's listed ETag */
        Fetched *fetched; /* read ahead; NULL: the transfer reads it */
} Task;

typedef struct Mirror {
        const Config *config;
        const MirrorConfig *mc;
        const MirrorOptions *o;
        Progress *progress;
        Pool *pool;  /* `transfers` threads taking copies */
        Pool *fetch; /* threads reading small objects ahead, then handing them to pool */
        MirrorRecords *records; /* copies listed with another ETag than their source's; NULL restoring */

        pthread_mutex_t lock;
        pthread_cond_t gate;           /* a multipart copy finished */
        unsigned big_running, big_max; /* multipart copies at once: each holds a few parts in memory */
        MirrorStats stats;
        uint64_t done_bytes;       /* for progress: copied, skipped or failed */
        uint64_t seen, seen_bytes; /* source objects selected so far */
        uint64_t fetched_bytes;    /* held by Fetched, at most PREFETCH_MAX */
        ErrSaved first;            /* the first failure: its message and exit code */
} Mirror;

/* A worker thread's own handles on the current pair's stores. */
typedef struct Worker {
        unsigned gen;
        Store *src, *dst;
} Worker;

static void fetched_free(Mirror *m, Task *t) {
        if (!t->fetched)
                return;
        pthread_mutex_lock(&m->lock);
        m->fetched_bytes -= t->size;
        pthread_mutex_unlock(&m->lock);
        free(t->fetched->data);
        store_attrs_done(&t->fetched->attrs);
        free(t->fetched);
        t->fetched = NULL;
}

static void task_free(Task *t) {
        if (!t)
                return;
        assert(!t->fetched);
        free(t->key);
        free(t->version);
        free(t->dst_etag);
        free(t);
}

/* Logs a failure where it happens and keeps the first, with its exit code, for the job's error. */
static void mirror_fail(Mirror *m, int r, const char *what) {
        _cleanup_free_ char *msg = xstrdup(err_message() ?: strerror(-r));
        int code = err_exit_code(r);

        log_error("%s: %s", what, msg);
        (void) err_set(r, code, "%s: %s", what, msg);
        pthread_mutex_lock(&m->lock);
        err_save(&m->first, r);
        pthread_mutex_unlock(&m->lock);
}

static void stats_add(Mirror *m, uint64_t *count, uint64_t *bytes, uint64_t n, uint64_t done) {
        pthread_mutex_lock(&m->lock);
        (*count)++;
        if (bytes)
                *bytes += n;
        m->done_bytes += done;
        pthread_mutex_unlock(&m->lock);
}

/* ---- copies (worker threads) ---- */

static void sha256_hex(const void *p, size_t n, char ret[static 65]) {
        uint8_t md[32];
        unsigned len = 0;

        EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
        for (unsigned i = 0; i < 32; i++)
                snprintf(ret + 2 * i, 3, "%02x", md[i]);
}

/* The destination's attributes, from the reply of the source read that brings the bytes, so they
 * describe exactly what is copied: every standard header and the user metadata, plus our bookkeeping
 * offsite. sha256: of the bytes when we read them whole, else what the source recorded. */
static void copy_attrs(const Mirror *m, const Task *t, const StoreAttrs *in, const char *sha256,
                       StoreAttrs *ret) {
        bool bookkeeping = m->o->direction == MIRROR_FORWARD;
        _cleanup_free_ char *version = mirror_version(in->etag, in->size, in->mtime_usec);

        if (!streq(t->version, version))
                log_debug("%s/%s changed since it was listed (%s, now %s): copying it as it is now.",
                          t->pair->name, t->key, t->version, version);
        store_attrs_copy(ret, in);
        strv_free(ret->metadata);
        free(ret->etag);
        sha256 = sha256 ?: store_metadata_get(in->metadata, META_SHA256);
        ret->metadata = mirror_metadata(in->metadata, bookkeeping, version, sha256);
        ret->etag = TAKE_PTR(version); /* what a local copy lists with */
        if (bookkeeping && !store_metadata_get(ret->metadata, META_ETAG))
                log_debug("%s/%s: its %zu bytes of user metadata leave no room for " META_ETAG " within "
                          "S3's %u; it is copied without, and later runs compare it by size and ETag only.",
                          t->pair->name, t->key, store_metadata_size(ret->metadata), STORE_METADATA_MAX);
}

static void big_enter(Mirror *m) {
        pthread_mutex_lock(&m->lock);
        while (m->big_running >= m->big_max)
                pthread_cond_wait(&m->gate, &m->lock);
        m->big_running++;
        pthread_mutex_unlock(&m->lock);
}

static void big_leave(Mirror *m) {
        pthread_mutex_lock(&m->lock);
        m->big_running--;
        pthread_cond_broadcast(&m->gate);
        pthread_mutex_unlock(&m->lock);
}

static ssize_t read_full_store(StoreReader *rd, uint8_t *buf, size_t n) {
        size_t got = 0;

        while (got < n) {
                ssize_t k = store_read(rd, buf + got, n - got);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                got += (size_t) k;
        }
        return (ssize_t) got;
}

/* The part size of a source object that is multipart (its listed ETag "<md5>-N") where a copy in the same
 * parts gets the same ETag at the destination: then the next run decides by the listings alone, instead of
 * one HEAD per such object and run. 0: copy it the usual way. One part is the whole object and needs no
 * request; else the source says how it was uploaded (one HEAD), and a layout that its size and part count
 * do not confirm (parts of different sizes) is not guessed at. */
static uint64_t source_part_size(const Mirror *m, Worker *w, const Task *t) {
        unsigned n = mirror_etag_parts(t->version), parts = 0;
        uint64_t part_size = 0;
        int r;

        /* Below multipart_threshold one PUT costs the destination less than parts (S3: one request instead
         * of n + 2; moto: no concatenation at the Complete), and the records keep the next run to listings. */
        if (n == 0 || !m->mc->keep_etags || !store_etag_of_parts(w->dst) || t->size < m->mc->multipart_threshold)
                return 0;
        if (n == 1)
                return mirror_part_layout_valid(t->size, t->size, 1) ? t->size : 0;
        r = store_part_layout(w->src, t->key, &part_size, &parts);
        if (r < 0) {
                /* The copy's GET tells whether it is gone; the copy itself does not need the layout. */
                log_debug("%s/%s: its part layout is unknown (%s); copying it in parts of our own.",
                          t->pair->name, t->key, strna(err_message()));
                err_clear();
                return 0;
        }
        if (parts != n || !mirror_part_layout_valid(t->size, part_size, n)) {
                log_debug("%s/%s: %" PRIu64 " bytes in %u parts (ETag %s) do not make parts of %" PRIu64
                          " bytes (%u parts reported); copying it in parts of our own, later runs compare "
                          "it by one HEAD.",
                          t->pair->name, t->key, t->size, n, t->version, part_size, parts);
                return 0;
        }
        return part_size;
}

/* One read of the source into one writer of the destination; pre: the object read ahead. */
static int copy_once(Mirror *m, Worker *w, const Task *t, Fetched *pre, uint64_t *ret_bytes) {
        _cleanup_(store_reader_freep) StoreReader *rd = NULL;
        _cleanup_(store_writer_freep) StoreWriter *wr = NULL;
        _cleanup_(store_attrs_done) StoreAttrs out = {};
        _cleanup_free_ uint8_t *buf = NULL;
        const StoreAttrs *in;
        char sha[65];
        bool small, big;
        uint64_t total = 0, part_size = source_part_size(m, w, t);
        ssize_t k;
        int r;

        if (pre)
                in = &pre->attrs;
        else {
                r = store_reader_open_with(w->src, t->key, NULL, &rd);
                if (r >= 0)
                        r = store_reader_attrs(rd, &in);
                if (r < 0)
                        return r;
        }
        /* Changed since it was listed: the layout asked for may not be its own. */
        if (part_size > 0 && (!streq_ptr(in->etag, t->version) ||
                              !mirror_part_layout_valid(in->size, part_size, mirror_etag_parts(in->etag))))
                part_size = 0;
        small = in->size <= STORE_BUFFER_MAX;
        /* A copy in the source's parts streams them: no part buffers, no need to wait at the gate. */
        big = part_size == 0 && in->size >= m->mc->multipart_threshold;
        if (small && pre) {
                buf = TAKE_PTR(pre->data);
                memcpy(sha, pre->sha, sizeof sha);
                total = in->size;
        } else if (small) {
                /* Read whole first: its SHA-256 goes into the destination's metadata. */
                buf = xmalloc(in->size + 1);
                k = read_full_store(rd, buf, in->size + 1);
                if (k < 0)
                        return (int) k;
                if ((uint64_t) k != in->size)
                        return err_set(-EBADMSG, EX_PROTOCOL, "%s/%s: read %zd bytes, the reply announced %" PRIu64,
                                       t->pair->name, t->key, k, in->size);
                sha256_hex(buf, (size_t) k, sha);
                total = in->size;
        } else
                buf = xmalloc(COPY_CHUNK);
        copy_attrs(m, t, in, small ? sha : NULL, &out);

        if (big)
                big_enter(m);
        StoreWriteOptions wo = { .attrs = &out, .size = in->size, .multipart = big || part_size > 0,
                                 .part_size = part_size };
        r = store_writer_open_with(w->dst, t->key, &wo, &wr);
        if (r >= 0 && small)
                r = store_write(wr, buf, (size_t) total);
        while (r >= 0 && !small) {
                k = store_read(rd, buf, COPY_CHUNK);
                if (k < 0)
                        r = (int) k;
                else if (k == 0)
                        break;
                else if ((total += (uint64_t) k) > in->size)
                        r = err_set(-EBADMSG, EX_PROTOCOL, "%s/%s: more bytes than the %" PRIu64 " announced",
                                    t->pair->name, t->key, in->size);
                else {
                        r = store_write(wr, buf, (size_t) k);
                        pthread_mutex_lock(&m->lock);
                        m->done_bytes += (uint64_t) k;
                        pthread_mutex_unlock(&m->lock);
                }
        }
        if (r >= 0 && total != in->size)
                r = err_set(-EPIPE, EX_TEMPFAIL, "%s/%s: the read ended after %" PRIu64 " of %" PRIu64 " bytes",
                            t->pair->name, t->key, total, in->size);
        if (r >= 0)
                r = store_writer_commit(wr);
        if (r >= 0)
                mirror_records_note(m->records, t->pair->name, t->key, out.etag, wr->etag);
        if (r < 0 && !small)
                log_debug("copy of %s/%s stopped after %" PRIu64 " bytes", t->pair->name, t->key, total);
        store_writer_free(wr);
        wr = NULL; /* an uncommitted multipart upload is aborted before the gate */
        if (big)
                big_leave(m);
        if (r < 0)
                return r;
        *ret_bytes = total;
        return 0;
}

static bool copy_retryable(int r) {
        /* A changed source (If-Match failed), a cut stream, or a server that kept failing. */
        return r == -ESTALE || r == -EPIPE || r == -ECONNRESET || r == -ETIMEDOUT || r == -EAGAIN || r == -EIO ||
               r == -EBADMSG;
}

typedef struct FindKey {
        const char *key;
        bool found;
} FindKey;

static int find_exact_key(const StoreEntry *e, void *userdata) {
        FindKey *f = userdata;

        f->found = streq(e->name, f->key);
        return 1; /* the key itself lists first among the keys it prefixes */
}

/* The source answered "not found" for a key its listing just returned. That is a real vanishing only when
 * the object is gone for HEAD and for a new listing as well; a 404 for an object that still exists (a
 * broken or hostile server, or something in between) must not turn into a silent skip. Returns 0 when it
 * vanished, < 0 with the error to count otherwise. */
static int confirm_vanished(Worker *w, const char *key, const char *get_error) {
        _cleanup_(store_attrs_done) StoreAttrs a = {};
        _cleanup_free_ char *why = xstrdup(strempty(get_error));
        FindKey f = { .key = key };
        int r;

        r = store_stat_attrs(w->src, key, &a);
        if (r >= 0)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the source answered GET with %s, but HEAD finds the object (%" PRIu64
                               " bytes, ETag %s): not counting it as vanished; check the source server "
                               "and anything between it and this node",
                               why, a.size, strempty(a.etag));
        if (r != -ENOENT)
                return r;
        r = store_list(w->src, key, find_exact_key, &f);
        if (r < 0)
                return r;
        if (f.found)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the source still lists the object, but answers GET and HEAD with 404 (%s): "
                               "not counting it as vanished; check the source server and anything between "
                               "it and this node",
                               why);
        return 0;
}

static void task_copy(Mirror *m, Worker *w, Task *t) {
        uint64_t bytes = 0, failing_since = 0;
        uint64_t budget = MAX(store_retry_time_usec(w->src), store_retry_time_usec(w->dst));
        int r = 0;

        for (unsigned attempt = 1; attempt <= COPY_ATTEMPTS; attempt++) {
                if (job_cancel_requested)
                        break;
                /* What was read ahead serves the first attempt; another one reads again. */
                r = copy_once(m, w, t, t->fetched, &bytes);
                fetched_free(m, t);
                if (r >= 0 || !copy_retryable(r))
                        break;
                /* Started over only within retry_time of the first failure: a source whose reads stall
                 * after a little progress does not keep the copy going attempt after attempt. */
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (failing_since == 0)
                        failing_since = now;
                else if (now - failing_since >= budget)
                        break;
                log_debug("copy of %s/%s failed (%s), %s", t->pair->name, t->key, strna(err_message()),
                          attempt < COPY_ATTEMPTS ? "starting over" : "giving up");
        }
        if (r == -ENOENT && !startswith(strempty(err_message()), "NoSuchBucket")) {
                r = confirm_vanished(w, t->key, err_message());
                if (r >= 0) {
                        /* Deleted at the source after it was listed: nothing to copy, not a failure. */
                        log_info("%s/%s vanished at the source after it was listed, skipping it.", t->pair->name,
                                 t->key);
                        stats_add(m, &m->stats.vanished, NULL, 0, t->size);
                        return;
                }
        }
        if (r < 0) {
                _cleanup_free_ char *what = xasprintf("cannot copy %s/%s", t->pair->name, t->key);
                mirror_fail(m, r, what);
                stats_add(m, &m->stats.failed, &m->stats.failed_bytes, t->size, t->size);
                return;
        }
        /* Streamed copies counted their bytes as they went. */
        stats_add(m, &m->stats.copied, &m->stats.copied_bytes, bytes, bytes <= STORE_BUFFER_MAX ? bytes : 0);
}

/* Same size, other ETag. Offsite: copied unless the destination records this source version. Restoring
 * (nothing of ours is written into the source): copied unless the offsite copy records the ETag the
 * object in the source has now, i.e. it was made from that very object. */
static int check_needs_copy(const Mirror *m, Store *src, Store *dst, const char *key, const char *version,
                            const char *dst_etag, bool *ret) {
        _cleanup_(store_attrs_done) StoreAttrs a = {};
        bool forward = m->o->direction == MIRROR_FORWARD;
        int r;

        r = store_stat_attrs(forward ? dst : src, key, &a);
        if (r == -ENOENT) {
                *ret = true;
                return 0;
        }
        if (r < 0)
                return r;
        *ret = !streq_ptr(store_metadata_get(a.metadata, META_ETAG), forward ? version : dst_etag);
        return 0;
}

/* A new bucket: handles of this thread's own on the pair's source and (with_dst) destination. */
static int worker_bind(Worker *w, const Pair *p, bool with_dst) {
        int r;

        if (w->gen == p->gen)
                return 0;
        store_free(w->src);
        store_free(w->dst);
        w->src = w->dst = NULL;
        w->gen = 0;
        r = store_clone(p->src, &w->src);
        if (r >= 0 && with_dst)
                r = store_clone(p->dst, &w->dst);
        if (r < 0)
                return r;
        w->gen = p->gen;
        return 0;
}

static void task_do(Mirror *m, Worker *w, Task *t) {
        bool copy;
        int r;

        r = worker_bind(w, t->pair, true);
        if (r < 0) {
                _cleanup_free_ char *what = xasprintf("cannot copy %s/%s", t->pair->name, t->key);
                mirror_fail(m, r, what);
                stats_add(m, &m->stats.failed, &m->stats.failed_bytes, t->size, t->size);
                return;
        }
        if (t->kind == TASK_CHECK) {
                r = check_needs_copy(m, w->src, w->dst, t->key, t->version, t->dst_etag, &copy);
                if (r < 0) {
                        _cleanup_free_ char *what = xasprintf("cannot compare %s/%s", t->pair->name, t->key);
                        mirror_fail(m, r, what);
                        stats_add(m, &m->stats.failed, NULL, 0, t->size);
                        return;
                }
                if (!copy) {
                        mirror_records_note(m->records, t->pair->name, t->key, t->version, t->dst_etag);
                        stats_add(m, &m->stats.skipped, &m->stats.skipped_bytes, t->size, t->size);
                        return;
                }
        }
        task_copy(m, w, t);
}

/* Runs in a pool thread. */
static void task_run(void *item, void **slot, void *userdata) {
        Worker *w = *slot ?: (*slot = xcalloc(1, sizeof(Worker)));

        if (!job_cancel_requested)
                task_do(userdata, w, item);
        fetched_free(userdata, item);
        task_free(item);
}

static void worker_done(void *slot, void *userdata) {
        Worker *w = slot;

        if (!w)
                return;
        store_free(w->src);
        store_free(w->dst);
        free(w);
}

static const PoolOps mirror_pool_ops = { .run = task_run, .slot_done = worker_done };

/* ---- reading small objects ahead (fetcher threads) ---- */

/* Over a WAN a small copy is the source's reply plus the destination's round trip: read ahead, a transfer
 * spends only the upload. What fails here is left to the transfer, which reads the object again and
 * handles the error as for any copy. */
static int fetch_small(Mirror *m, Worker *w, Task *t) {
        _cleanup_(store_reader_freep) StoreReader *rd = NULL;
        _cleanup_free_ Fetched *f = xcalloc(1, sizeof *f);
        const StoreAttrs *in;
        ssize_t k;
        int r;

        r = worker_bind(w, t->pair, false);
        if (r < 0)
                return r;
        r = store_reader_open_with(w->src, t->key, NULL, &rd);
        if (r >= 0)
                r = store_reader_attrs(rd, &in);
        if (r < 0)
                return r;
        if (in->size != t->size || mirror_etag_parts(in->etag) > 0)
                /* Changed since it was listed: the transfer decides how to copy it. */
                return err_set(-ESTALE, EX_TEMPFAIL, "changed since it was listed");
        f->data = xmalloc(t->size + 1);
        k = read_full_store(rd, f->data, t->size + 1);
        if (k < 0 || (uint64_t) k != t->size) {
                free(f->data);
                return k < 0 ? (int) k : -EBADMSG;
        }
        sha256_hex(f->data, t->size, f->sha);
        store_attrs_copy(&f->attrs, in);
        t->fetched = TAKE_PTR(f);
        return 0;
}

static void fetch_run(void *item, void **slot, void *userdata) {
        Mirror *m = userdata;
        Worker *w = *slot ?: (*slot = xcalloc(1, sizeof(Worker)));
        Task *t = item;
        bool take;

        /* Only what copy_once() would read whole and send in one PUT, within the memory bound. */
        pthread_mutex_lock(&m->lock);
        take = !job_cancel_requested && t->kind == TASK_COPY && t->size <= STORE_BUFFER_MAX &&
               mirror_etag_parts(t->version) == 0 && m->fetched_bytes + t->size <= PREFETCH_MAX;
        if (take)
                m->fetched_bytes += t->size;
        pthread_mutex_unlock(&m->lock);
        if (take) {
                ERR_KEEP_SCOPE();
                int r = fetch_small(m, w, t);
                if (r < 0) {
                        log_debug("reading %s/%s ahead failed (%s); its transfer reads it again.",
                                  t->pair->name, t->key, err_message() ?: strerror(-r));
                        pthread_mutex_lock(&m->lock);
                        m->fetched_bytes -= t->size;
                        pthread_mutex_unlock(&m->lock);
                }
        }
        pool_push(m->pool, t);
}

static const PoolOps fetch_pool_ops = { .run = fetch_run, .slot_done = worker_done };

/* ---- the main thread: listings, decisions ---- */

static void mirror_show_progress(Mirror *m) {
        if (!m->progress)
                return;
        pthread_mutex_lock(&m->lock);
        m->progress->objects_done = m->stats.copied + m->stats.skipped + m->stats.failed;
        m->progress->objects_total = m->seen;
        m->progress->total_estimate = m->seen_bytes;
        uint64_t done = m->done_bytes;
        pthread_mutex_unlock(&m->lock);
        progress_update(m->progress, done);
}

static void show_progress(void *userdata) {
        mirror_show_progress(userdata);
}

typedef struct PairRun {
        Mirror *m;
        const Pair *p;
        Spool *deletes; /* keys to delete, applied after complete listings */
        uint64_t n_deletes, delete_bytes;
} PairRun;

static MirrorEntry entry_of(const StoreEntry *e) {
        return (MirrorEntry){ .size = e->size, .mtime_usec = e->mtime_usec, .etag = e->etag };
}

static int decide(PairRun *pr, const StoreEntry *s, const StoreEntry *d) {
        Mirror *m = pr->m;
        MirrorEntry se = entry_of(s), de = d ? entry_of(d) : (MirrorEntry){};
        MirrorDecision what = mirror_decide(&se, d ? &de : NULL);
        _cleanup_free_ char *version = mirror_version(s->etag, s->size, s->mtime_usec);

        pthread_mutex_lock(&m->lock);
        m->seen++;
        m->seen_bytes += s->size;
        pthread_mutex_unlock(&m->lock);

        if (what == MIRROR_CHECK && mirror_records_match(m->records, pr->p->name, s->name, version, d->etag))
                what = MIRROR_SKIP; /* copied from this version into this very object by an earlier run */
        if (what == MIRROR_SKIP) {
                stats_add(m, &m->stats.skipped, &m->stats.skipped_bytes, s->size, s->size);
                return 0;
        }
        if (!store_name_valid(pr->p->dst, s->name)) {
                /* Written under another name it would be another object (or overwrite one): not at all. */
                log_warning("%s/%s cannot be copied to %s: the destination cannot hold this key as itself (an "
                            "empty, \".\" or \"..\" segment, a segment starting with '.', a trailing '/', or "
                            "too long); it is skipped and the run fails (rename it at the source, or mirror "
                            "to an S3 destination)",
                            pr->p->name, s->name, pr->p->dst->location);
                stats_add(m, &m->stats.unrepresentable, NULL, 0, s->size);
                return 0;
        }
        if (m->o->dry_run) {
                bool copy = true;
                if (what == MIRROR_CHECK) {
                        int r = check_needs_copy(m, pr->p->src, pr->p->dst, s->name, version, d->etag, &copy);
                        if (r < 0)
                                return r;
                }
                if (copy)
                        stats_add(m, &m->stats.copied, &m->stats.copied_bytes, s->size, 0);
                else
                        stats_add(m, &m->stats.skipped, &m->stats.skipped_bytes, s->size, 0);
                return 0;
        }
        Task *t = xcalloc(1, sizeof *t);
        *t = (Task){
                .kind = what == MIRROR_CHECK ? TASK_CHECK : TASK_COPY,
                .pair = pr->p,
                .key = xstrdup(s->name),
                .version = TAKE_PTR(version),
                .size = s->size,
                .dst_etag = what == MIRROR_CHECK ? xstrdup(strempty(d->etag)) : NULL,
        };
        pool_push(m->fetch ?: m->pool, t);
        return 0;
}

static int note_extra(PairRun *pr, const StoreEntry *d) {
        Mirror *m = pr->m;
        int r;

        if (!m->mc->delete) {
                stats_add(m, &m->stats.kept, NULL, 0, 0);
                return 0;
        }
        if (!pr->deletes && (r = spool_new(m->config->agent.work_dir, &pr->deletes)) < 0)
                return r;
        r = spool_add(pr->deletes, d->name);
        if (r < 0)
                return r;
        pr->n_deletes++;
        pr->delete_bytes += d->size;
        return 0;
}

/* Deletes what only the destination has; runs only after both listings reached their end and every copy
 * of the bucket finished. */
static int apply_deletes(PairRun *pr) {
        Mirror *m = pr->m;
        int r = 0;

        if (!m->o->dry_run && pr->n_deletes > 0)
                r = spool_rewind(pr->deletes);
        while (r >= 0 && !m->o->dry_run && pr->n_deletes > 0) {
                _cleanup_strv_free_ char **batch = NULL;
                int n = spool_read(pr->deletes, DELETE_BATCH, &batch);

                if (n <= 0) {
                        r = n;
                        break;
                }
                r = store_remove_many(pr->p->dst, batch, (size_t) n);
                if (r >= 0)
                        m->stats.deleted += (uint64_t) n; /* the workers are idle now: no lock */
        }
        if (r >= 0 && m->o->dry_run)
                m->stats.deleted += pr->n_deletes;
        if (r >= 0)
                m->stats.deleted_bytes += pr->delete_bytes;
        return r;
}

/* Pulls the next selected entry of one side; *ret NULL at the end. */
static int side_next(Mirror *m, const Pair *p, StoreLister *l, const StoreEntry **ret) {
        for (;;) {
                const StoreEntry *e;
                int r = store_lister_next(l, &e);
                if (r < 0)
                        return r;
                if (r == 0) {
                        *ret = NULL;
                        return 0;
                }
                if (mirror_key_selected(m->mc->include, m->mc->exclude, p->name, e->name)) {
                        *ret = e;
                        return 0;
                }
        }
}

static int mirror_pair(Mirror *m, const Pair *p, bool dst_may_be_missing) {
        _cleanup_(store_lister_freep) StoreLister *ls = NULL, *ld = NULL;
        PairRun pr = { .m = m, .p = p };
        const StoreEntry *s = NULL, *d = NULL;
        int r;

        log_info("%s %s: %s -> %s", m->o->dry_run ? "Planning" : "Mirroring", p->name, p->src->location,
                 p->dst->location);
        /* Both listings' first pages are on their way while the destination's unfinished uploads are listed:
         * over a WAN three round trips at once instead of one after the other. */
        r = store_lister_open(p->src, "", &ls);
        if (r >= 0)
                r = store_lister_open(p->dst, "", &ld);
        if (r >= 0 && !m->o->dry_run) {
                /* A run killed during a copy leaves its multipart upload (or temporary file) behind: nobody
                 * else writes here (the job lock), so every leftover is ours. */
                r = store_cleanup(p->dst, 0);
                if (r < 0)
                        log_warning("cannot clean up unfinished uploads in %s: %s", p->dst->location,
                                    strna(err_message()));
                else if (r > 0)
                        log_info("Aborted %i unfinished upload(s) in %s from an interrupted run.", r,
                                 p->dst->location);
                r = 0;
        }
        /* The merge: both sides ascend in byte order. */
        if (r >= 0)
                r = side_next(m, p, ls, &s);
        if (r >= 0) {
                r = side_next(m, p, ld, &d);
                if (r == -ENOENT && m->o->dry_run && dst_may_be_missing) {
                        /* A bucket the real run creates (a rebuilt MinIO has none yet): all of it is to copy. */
                        log_info("%s: %s does not exist yet.", p->name, p->dst->location);
                        store_lister_free(ld);
                        ld = NULL;
                        d = NULL;
                        r = 0;
                }
        }
        while (r >= 0 && (s || d)) {
                int cmp = !s ? 1 : !d ? -1 : strcmp(s->name, d->name);

                if (job_cancel_requested) {
                        r = err_set(-ECANCELED, EX_TEMPFAIL, "job mirror was cancelled");
                        break;
                }
                if (cmp <= 0)
                        r = decide(&pr, s, cmp == 0 ? d : NULL);
                else
                        r = note_extra(&pr, d);
                if (r >= 0 && cmp <= 0)
                        r = side_next(m, p, ls, &s);
                if (r >= 0 && cmp >= 0 && ld)
                        r = side_next(m, p, ld, &d);
                mirror_show_progress(m);
        }
        if (m->fetch)
                pool_wait_idle(m->fetch, show_progress);
        pool_wait_idle(m->pool, show_progress);
        if (r < 0) {
                /* A listing that failed or stopped early says nothing about what is missing: no deletes. */
                if (pr.n_deletes > 0)
                        log_warning("%s: not deleting %" PRIu64 " destination objects, the listings did not "
                                    "complete.", p->name, pr.n_deletes);
        } else {
                mirror_records_listed(m->records, p->name);
                r = apply_deletes(&pr);
        }
        spool_free(pr.deletes);
        return r;
}

static int mirror_bucket(Mirror *m, StoreRoot *src, StoreRoot *dst, const char *bucket, unsigned gen) {
        Pair p = { .name = (char *) bucket, .gen = gen };
        int r;

        r = store_root_open_bucket(src, bucket, false, &p.src);
        if (r >= 0)
                r = store_root_open_bucket(dst, bucket, !m->o->dry_run, &p.dst);
        if (r >= 0)
                r = mirror_pair(m, &p, !dst->remote || dst->create_bucket);
        store_free(p.src);
        store_free(p.dst);
        return r;
}

int mirror_run(const Config *c, const MirrorOptions *o, Progress *progress, MirrorStats *ret_stats) {
        const MirrorConfig *mc = &c->mirror;
        _cleanup_(store_root_freep) StoreRoot *source = NULL, *offsite = NULL;
        _cleanup_strv_free_ char **buckets = NULL;
        unsigned n_workers = o->dry_run ? 0 : MAX(mc->transfers, 1U), gen = 0;
        /* One multipart copy at a time: each holds a few 8 MiB parts in memory (the part workers', which
         * already send in parallel); the other transfers go on with the smaller objects meanwhile. */
        Mirror m = { .config = c, .mc = mc, .o = o, .progress = progress, .big_max = 1 };
        StoreRoot *src, *dst;
        int r;

        r = mirror_resolve(c, &source, &offsite);
        if (r < 0)
                return r;
        src = o->direction == MIRROR_FORWARD ? source : offsite;
        dst = o->direction == MIRROR_FORWARD ? offsite : source;
        r = mirror_buckets(c, o, src, &buckets);
        if (r < 0)
                return r;
        /* glibc raises its mmap threshold to the size of each large block freed, up to 32 MiB: after the
         * first multipart copy, part buffers would come from the threads' arenas and stay there when freed
         * (+20 MiB peak RSS in bench/mirror). A fixed threshold hands them back to the system. */
        (void) mallopt(M_MMAP_THRESHOLD, MIRROR_MMAP_THRESHOLD);
        if (o->direction == MIRROR_FORWARD) {
                _cleanup_free_ char *path = path_join(c->agent.state_dir, MIRROR_RECORDS_FILE);
                m.records = mirror_records_load(path, mc->destination);
        }
        pthread_mutex_init(&m.lock, NULL);
        pthread_cond_init(&m.gate, NULL);
        r = pool_new(n_workers, 4 * (size_t) MAX(n_workers, 1U), &mirror_pool_ops, &m, &m.pool);
        if (r >= 0 && n_workers > 0)
                r = pool_new(MIRROR_FETCHERS(n_workers), n_workers, &fetch_pool_ops, &m, &m.fetch);

        STRV_FOREACH(b, buckets) {
                int k;

                if (r < 0 || job_cancel_requested)
                        break;
                k = mirror_bucket_check(o, src, dst, *b);
                if (k < 0) {
                        mirror_fail(&m, k, "refusing a bucket");
                        m.stats.refused_buckets++;
                        continue;
                }
                k = mirror_bucket(&m, src, dst, *b, ++gen);
                if (k < 0) {
                        _cleanup_free_ char *what = xasprintf("bucket %s", *b);
                        mirror_fail(&m, k, what);
                }
        }
        pool_free(m.fetch); /* it hands its items to m.pool */
        pool_free(m.pool);
        if (m.records && !o->dry_run && mirror_records_save(m.records) < 0) {
                log_warning("%s; the next run compares objects copied in one PUT from a multipart source by "
                            "one HEAD each.", strna(err_message()));
                err_clear();
        }
        mirror_records_free(m.records);
        pthread_cond_destroy(&m.gate);
        pthread_mutex_destroy(&m.lock);
        if (progress) {
                progress->objects_done = m.stats.copied + m.stats.skipped + m.stats.failed;
                progress_flush(progress);
        }
        if (ret_stats)
                *ret_stats = m.stats;

        if (r >= 0 && job_cancel_requested)
                r = err_set(-ECANCELED, EX_TEMPFAIL, "job mirror was cancelled");
        else if (r >= 0 && m.first.error < 0 && m.stats.failed > 0)
                r = err_set(-EIO, m.first.exit_code ?: EX_UNAVAILABLE,
                            "%" PRIu64 " objects could not be mirrored (all others were); first: %s", m.stats.failed,
                            m.first.message);
        else if (r >= 0 && m.first.error < 0)
                r = err_restore(&m.first);
        else if (r >= 0 && m.stats.unrepresentable > 0)
                r = err_set(-EINVAL, EX_DATAERR,
                            "%" PRIu64 " key(s) could not be copied because %s cannot hold them as themselves "
                            "(each is named above); the copy is incomplete: rename them at the source, or "
                            "mirror to an S3 destination",
                            m.stats.unrepresentable, dst->location);
        err_saved_done(&m.first);
        return r;
}

/* ---- the job ---- */

static int mirror_backup(JobContext *ctx, Manifest *manifest) {
        MirrorOptions o = { .direction = MIRROR_FORWARD };
        MirrorStats s = {};
        int r;

        progress_init(&ctx->progress, "mirroring", 0, ctx->config->agent.state_dir, ctx->state);
        ctx->progress.count_objects = true;
        r = mirror_run(ctx->config, &o, &ctx->progress, &s);
        progress_done(&ctx->progress);
        mirror_stats_print(&s, false, stderr);
        manifest->bytes = s.copied_bytes;
        return r;
}

const JobDefinition job_mirror = {
        .cluster_wide = true,
        .name = "mirror",
        .has_retention = false,
        .no_manifest = true,
        .backup = mirror_backup,
};
