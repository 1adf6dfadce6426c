/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The S3 backend behind the storage interface: a bucket and key prefix on a configured remote. */
#include <sysexits.h>
#include <time.h>

#include "log/log.h"
#include "s3-internal.h"
#include "store/store.h"

/* A reader is one GetObject streamed by a thread into a ring of this size: the object is requested once
 * (servers like moto re-read the whole object for every range), the network overlaps the caller's work,
 * and memory stays bounded. A dropped connection is resumed by s3_get_object with a Range and If-Match. */
#define S3_READ_RING (4U * 1024 * 1024)

typedef struct S3Store {
        S3Client *client;
        char *bucket;
        char *prefix; /* "" or ends with '/' */
} S3Store;

typedef struct S3Writer {
        StoreWriter base;
        S3Upload *upload;
} S3Writer;

typedef struct S3Reader {
        StoreReader base;
        uint64_t offset; /* where the GET starts */
        uint64_t size;
        char *key;
        char *etag;
        S3Client *client; /* the thread's own: the store's stays usable by the caller */
        pthread_t thread;
        bool started;

        /* Shared with the thread; under lock. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint8_t *ring;
        size_t head; /* next byte to read */
        size_t fill; /* bytes in the ring */
        bool done;   /* the thread ended */
        bool closing;
        ErrSaved error;
} S3Reader;

static S3Store *s3_store(Store *s) {
        return s->data;
}

static char *full_key(S3Store *st, const char *name) {
        return xasprintf("%s%s", st->prefix, name);
}

static int s3_writer_open(Store *s, const char *name, StoreWriter **ret) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *key = full_key(st, name);
        S3Writer *w;
        S3Upload *u;
        int r;

        r = s3_upload_new(st->client, st->bucket, key, NULL, &u);
        if (r < 0)
                return r;
        w = xcalloc(1, sizeof *w);
        w->base = (StoreWriter){ .store = s, .name = xstrdup(name) };
        w->upload = u;
        *ret = &w->base;
        return 0;
}

static int s3_writer_write(StoreWriter *base, const void *buf, size_t n) {
        return s3_upload_write(((S3Writer *) base)->upload, buf, n);
}

static int s3_writer_commit(StoreWriter *base) {
        return s3_upload_commit(((S3Writer *) base)->upload, NULL);
}

static void s3_writer_free(StoreWriter *base) {
        S3Writer *w = (S3Writer *) base;

        if (!w)
                return;
        s3_upload_free(w->upload); /* aborts an uncommitted multipart upload */
        free(w->base.name);
        free(w);
}

static int s3_reader_open(Store *s, const char *name, uint64_t offset, StoreReader **ret) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *key = full_key(st, name);
        _cleanup_(s3_object_info_done) S3ObjectInfo info = {};
        S3Reader *r;
        int k;

        /* HEAD first: a missing object fails here, and the size and ETag pin the GET and its resumes. */
        k = s3_head_object(st->client, st->bucket, key, &info);
        if (k < 0)
                return k;
        r = xcalloc(1, sizeof *r);
        r->base = (StoreReader){ .store = s, .name = xstrdup(name) };
        r->offset = MIN(offset, info.size);
        r->size = info.size;
        r->key = TAKE_PTR(key);
        r->etag = TAKE_PTR(info.etag);
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->cond, NULL);
        *ret = &r->base;
        return 0;
}

typedef struct RingSink {
        Sink sink;
        S3Reader *reader;
} RingSink;

/* Runs in the reader's thread: blocks while the ring is full. */
static int ring_sink_write(Sink *s, const void *buf, size_t n) {
        S3Reader *r = ((RingSink *) s)->reader;
        const uint8_t *p = buf;
        int ret = 0;

        pthread_mutex_lock(&r->lock);
        while (n > 0) {
                if (r->closing) {
                        ret = -ECANCELED;
                        break;
                }
                if (r->fill == S3_READ_RING) {
                        pthread_cond_wait(&r->cond, &r->lock);
                        continue;
                }
                size_t tail = (r->head + r->fill) % S3_READ_RING;
                size_t k = MIN(n, MIN(S3_READ_RING - r->fill, S3_READ_RING - tail));
                memcpy(r->ring + tail, p, k);
                r->fill += k;
                p += k;
                n -= k;
                pthread_cond_broadcast(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);
        return ret;
}

static void *reader_main(void *userdata) {
        S3Reader *r = userdata;
        S3Store *st = s3_store(r->base.store);
        RingSink rs = { .sink = { .write = ring_sink_write }, .reader = r };
        int k;

        k = s3_get_object(r->client, st->bucket, r->key, r->offset, r->size - r->offset, r->etag, &rs.sink);
        pthread_mutex_lock(&r->lock);
        err_save(&r->error, k);
        r->done = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return NULL;
}

static int reader_start(S3Reader *r) {
        S3Store *st = s3_store(r->base.store);
        int k;

        k = s3_client_clone(st->client, &r->client);
        if (k < 0)
                return k;
        r->ring = xmalloc(S3_READ_RING);
        k = thread_start(&r->thread, reader_main, r);
        if (k < 0)
                return err_set(k, EX_OSERR, "cannot start a download thread: %s", strerror(-k));
        r->started = true;
        return 0;
}

static ssize_t s3_reader_read(StoreReader *base, void *buf, size_t n) {
        S3Reader *r = (S3Reader *) base;
        ssize_t ret;

        if (r->offset >= r->size || n == 0)
                return 0;
        if (!r->started) {
                int k = reader_start(r);
                if (k < 0)
                        return k;
        }
        pthread_mutex_lock(&r->lock);
        while (r->fill == 0 && !r->done)
                pthread_cond_wait(&r->cond, &r->lock);
        if (r->fill > 0) {
                n = MIN(n, MIN(r->fill, S3_READ_RING - r->head));
                memcpy(buf, r->ring + r->head, n);
                r->head = (r->head + n) % S3_READ_RING;
                r->fill -= n;
                pthread_cond_broadcast(&r->cond);
                ret = (ssize_t) n;
        } else if (r->error.error < 0)
                ret = err_restore(&r->error);
        else
                ret = 0;
        pthread_mutex_unlock(&r->lock);
        return ret;
}

static void s3_reader_free(StoreReader *base) {
        S3Reader *r = (S3Reader *) base;

        if (!r)
                return;
        if (r->started) {
                pthread_mutex_lock(&r->lock);
                r->closing = true; /* a GET still running is cut off at its next write */
                pthread_cond_broadcast(&r->cond);
                pthread_mutex_unlock(&r->lock);
                pthread_join(r->thread, NULL);
        }
        s3_client_free(r->client);
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r->base.name);
        free(r->key);
        free(r->etag);
        free(r->ring);
        err_saved_done(&r->error);
        free(r);
}

typedef struct ListCtx {
        S3Store *st;
        StoreListFunc f;
        void *userdata;
} ListCtx;

static int list_one(const S3Object *o, void *userdata) {
        ListCtx *ctx = userdata;
        const char *name = startswith(o->key, ctx->st->prefix);
        StoreEntry e;

        if (isempty(name))
                return 0;
        e = (StoreEntry){ .name = (char *) name, .size = o->size, .mtime_usec = o->mtime_usec,
                          .etag = (char *) o->etag };
        return ctx->f(&e, ctx->userdata);
}

static int s3_list(Store *s, const char *prefix, StoreListFunc f, void *userdata) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *p = full_key(st, strempty(prefix));
        ListCtx ctx = { st, f, userdata };

        return s3_list_objects(st->client, st->bucket, p, NULL, list_one, &ctx);
}

static int s3_stat(Store *s, const char *name, StoreEntry *ret) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *key = full_key(st, name);
        _cleanup_(s3_object_info_done) S3ObjectInfo info = {};
        int r;

        r = s3_head_object(st->client, st->bucket, key, &info);
        if (r < 0)
                return r;
        *ret = (StoreEntry){ .name = xstrdup(name), .size = info.size, .mtime_usec = info.mtime_usec,
                             .etag = TAKE_PTR(info.etag) };
        return 0;
}

static int s3_remove(Store *s, const char *name) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *key = full_key(st, name);

        return s3_delete_object(st->client, st->bucket, key);
}

typedef struct CleanupCtx {
        S3Store *st;
        uint64_t before_usec;
        unsigned aborted;
        int error;
} CleanupCtx;

static int cleanup_one(const S3UploadInfo *u, void *userdata) {
        CleanupCtx *ctx = userdata;
        int r;

        if (u->initiated_usec > ctx->before_usec)
                return 0; /* may still be in progress in another run */
        r = s3_abort_multipart_upload(ctx->st->client, ctx->st->bucket, u->key, u->upload_id);
        if (r < 0) {
                ctx->error = r;
                return 0; /* try the others too */
        }
        log_debug("aborted unfinished multipart upload %s of %s/%s", u->upload_id, ctx->st->bucket, u->key);
        ctx->aborted++;
        return 0;
}

static int s3_cleanup(Store *s, uint64_t min_age_usec) {
        S3Store *st = s3_store(s);
        uint64_t now = now_usec(CLOCK_REALTIME);
        CleanupCtx ctx = { .st = st, .before_usec = now > min_age_usec ? now - min_age_usec : 0 };
        int r;

        r = s3_list_multipart_uploads(st->client, st->bucket, st->prefix, cleanup_one, &ctx);
        if (r < 0)
                return r;
        return ctx.error < 0 ? ctx.error : (int) ctx.aborted;
}

static void s3_done(Store *s) {
        S3Store *st = s3_store(s);

        if (!st)
                return;
        s3_client_free(st->client);
        free(st->bucket);
        free(st->prefix);
        free(st);
        s->data = NULL;
}

static const StoreInterface s3_store_interface = {
        .type = "s3",
        .writer_open = s3_writer_open,
        .writer_write = s3_writer_write,
        .writer_commit = s3_writer_commit,
        .writer_free = s3_writer_free,
        .reader_open = s3_reader_open,
        .reader_read = s3_reader_read,
        .reader_free = s3_reader_free,
        .list = s3_list,
        .stat = s3_stat,
        .remove = s3_remove,
        .cleanup = s3_cleanup,
        .done = s3_done,
};

int store_s3_open(const RemoteConfig *remote, const char *bucket, const char *prefix, bool for_write,
                  Store **ret) {
        _cleanup_(s3_client_freep) S3Client *c = NULL;
        _cleanup_free_ char *location = NULL;
        S3Store *st;
        Store *s;
        int r;

        if (isempty(bucket))
                return err_set(-EINVAL, EX_CONFIG, "location on remote \"%s\" has no bucket",
                               strempty(remote->name));
        r = s3_client_new(remote, &c);
        if (r < 0)
                return r;
        /* Readers (list, verify, restore, prune) never create a bucket: a key that may read need not be
         * allowed to create. */
        if (for_write && remote->create_bucket) {
                r = s3_ensure_bucket(c, bucket);
                if (r < 0)
                        return r;
        }
        st = xcalloc(1, sizeof *st);
        st->client = TAKE_PTR(c);
        st->bucket = xstrdup(bucket);
        st->prefix = isempty(prefix) || endswith(prefix, "/") ? xstrdup(strempty(prefix))
                                                              : xasprintf("%s/", prefix);
        location = xasprintf("%s:%s/%s", strempty(remote->name), bucket, st->prefix);
        s = store_new(&s3_store_interface, location, st);
        *ret = s;
        return 0;
}
