/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The S3 backend behind the storage interface: a bucket and key prefix on a configured remote. */
#include <inttypes.h>
#include <sysexits.h>
#include <time.h>

#include "log/log.h"
#include "s3-internal.h"
#include "store/store.h"

/* A reader is one GetObject streamed by a thread into a ring of this size: the object is requested once
 * (servers like moto re-read the whole object for every range), the network overlaps the caller's work,
 * and memory stays bounded. A dropped connection is resumed by s3_get_object with a Range and If-Match. */
#define S3_READ_RING (4U * 1024 * 1024)
/* A copy's reader and streamed writer: many run at once (the mirror's transfers), each a GET or PUT that the
 * other end keeps busy, so a small ring keeps memory low. */
#define S3_COPY_RING (64U * 1024)
/* A multipart copy's part workers: see s3_writer_open_with(). */
#define S3_COPY_PART_WORKERS 1U

typedef struct S3Store {
        S3Client *client;
        char *bucket;
        char *prefix; /* "" or ends with '/' */
} S3Store;

typedef enum S3WriteMode {
        S3_WRITE_UPLOAD, /* S3Upload: one PUT when it fits a part, else multipart through its part workers */
        S3_WRITE_BUFFER, /* a known small size: in memory, one signed PUT at commit */
        S3_WRITE_STREAM, /* a known size: one PUT streamed from a ring by a thread, unsigned payload */
        S3_WRITE_PARTS,  /* a known size in given part sizes (a copy of a multipart object): parts.c */
} S3WriteMode;

typedef struct S3Writer {
        StoreWriter base;
        S3WriteMode mode;
        S3Upload *upload;
        S3PartStream *parts;
        uint64_t size; /* BUFFER, STREAM, PARTS: exactly this many bytes */
        uint64_t written;
        uint8_t *buf;
        S3PutOptions opts;
        StoreAttrs attrs; /* what opts points into */

        /* STREAM: the PUT's thread pulls what write() put in the ring; under lock. */
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint8_t *ring;
        size_t head, fill;
        bool eof, closing, done;
        ErrSaved error;
} S3Writer;

typedef struct S3Reader {
        StoreReader base;
        uint64_t offset; /* where the GET starts */
        uint64_t size;
        /* reader_open_with: no HEAD; the GET starts at once, borrowing the store's client, and publishes
         * the headers of its reply in info. */
        bool with_info;
        uint64_t length;
        size_t ring_size;
        bool has_info;
        StoreAttrs info;
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

/* In the PUT's thread: pulls from the ring; 0 once write() is done and the ring is empty. */
static ssize_t stream_pull(void *buf, size_t n, void *userdata) {
        S3Writer *w = userdata;
        ssize_t ret;

        pthread_mutex_lock(&w->lock);
        while (w->fill == 0 && !w->eof && !w->closing)
                pthread_cond_wait(&w->cond, &w->lock);
        if (w->closing)
                ret = err_set(-ECANCELED, EX_TEMPFAIL, "upload of %s was given up", w->base.name);
        else if (w->fill == 0)
                ret = 0;
        else {
                n = MIN(n, MIN(w->fill, S3_COPY_RING - w->head));
                memcpy(buf, w->ring + w->head, n);
                w->head = (w->head + n) % S3_COPY_RING;
                w->fill -= n;
                pthread_cond_broadcast(&w->cond);
                ret = (ssize_t) n;
        }
        pthread_mutex_unlock(&w->lock);
        return ret;
}

static void *stream_main(void *userdata) {
        S3Writer *w = userdata;
        S3Store *st = s3_store(w->base.store);
        _cleanup_free_ char *key = full_key(st, w->base.name), *etag = NULL;
        int r;

        r = s3_put_object_stream(st->client, st->bucket, key, w->size, stream_pull, w, &w->opts, &etag);
        pthread_mutex_lock(&w->lock);
        err_save(&w->error, r);
        if (r >= 0)
                w->base.etag = TAKE_PTR(etag); /* read by the commit after the thread ends */
        w->done = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

static int stream_push(S3Writer *w, const void *buf, size_t n) {
        const uint8_t *p = buf;
        int r = 0;

        if (!w->started) {
                w->ring = xmalloc(S3_COPY_RING);
                r = thread_start(&w->thread, stream_main, w);
                if (r < 0)
                        return err_set(r, EX_OSERR, "cannot start an upload thread: %s", strerror(-r));
                w->started = true;
        }
        pthread_mutex_lock(&w->lock);
        while (n > 0) {
                if (w->done) {
                        /* The PUT ended before it took everything: its error says why. */
                        r = w->error.error < 0 ? err_restore(&w->error)
                                               : err_set(-EIO, EX_SOFTWARE, "PUT of %s ended early", w->base.name);
                        break;
                }
                if (w->fill == S3_COPY_RING) {
                        pthread_cond_wait(&w->cond, &w->lock);
                        continue;
                }
                size_t tail = (w->head + w->fill) % S3_COPY_RING;
                size_t k = MIN(n, MIN(S3_COPY_RING - w->fill, S3_COPY_RING - tail));
                memcpy(w->ring + tail, p, k);
                w->fill += k;
                p += k;
                n -= k;
                pthread_cond_broadcast(&w->cond);
        }
        pthread_mutex_unlock(&w->lock);
        return r;
}

static int s3_writer_write(StoreWriter *base, const void *buf, size_t n) {
        S3Writer *w = (S3Writer *) base;

        if (w->mode == S3_WRITE_UPLOAD)
                return s3_upload_write(w->upload, buf, n);
        if (w->written + n > w->size)
                return err_set(-EFBIG, EX_SOFTWARE, "%s/%s: more than the %" PRIu64 " bytes announced",
                               base->store->location, base->name, w->size);
        w->written += n;
        if (w->mode == S3_WRITE_PARTS)
                return s3_part_stream_write(w->parts, buf, n);
        if (w->mode == S3_WRITE_BUFFER) {
                memcpy(w->buf + w->written - n, buf, n);
                return 0;
        }
        return stream_push(w, buf, n);
}

static int s3_writer_commit(StoreWriter *base) {
        S3Writer *w = (S3Writer *) base;
        S3Store *st = s3_store(base->store);
        _cleanup_free_ char *key = NULL;
        int r;

        if (w->mode == S3_WRITE_UPLOAD)
                return s3_upload_commit(w->upload, &base->etag);
        if (w->written != w->size)
                return err_set(-EIO, EX_SOFTWARE, "%s/%s: %" PRIu64 " bytes of the %" PRIu64 " announced",
                               base->store->location, base->name, w->written, w->size);
        if (w->mode == S3_WRITE_PARTS)
                return s3_part_stream_commit(w->parts, &base->etag);
        if (w->mode == S3_WRITE_BUFFER) {
                key = full_key(st, base->name);
                return s3_put_object(st->client, st->bucket, key, w->buf, (size_t) w->size, &w->opts,
                                     &base->etag);
        }
        if (!w->started) { /* nothing written: an empty object */
                r = stream_push(w, "", 0);
                if (r < 0)
                        return r;
        }
        pthread_mutex_lock(&w->lock);
        w->eof = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        w->started = false;
        return w->error.error < 0 ? err_restore(&w->error) : 0;
}

static void s3_writer_free(StoreWriter *base) {
        S3Writer *w = (S3Writer *) base;

        if (!w)
                return;
        s3_upload_free(w->upload); /* aborts an uncommitted multipart upload */
        s3_part_stream_free(w->parts);
        if (w->started) {
                pthread_mutex_lock(&w->lock);
                w->closing = true; /* the PUT fails at its next pull: nothing becomes visible */
                pthread_cond_broadcast(&w->cond);
                pthread_mutex_unlock(&w->lock);
                pthread_join(w->thread, NULL);
        }
        if (w->mode == S3_WRITE_STREAM) {
                pthread_cond_destroy(&w->cond);
                pthread_mutex_destroy(&w->lock);
        }
        err_saved_done(&w->error);
        store_attrs_done(&w->attrs);
        free(w->ring);
        free(w->buf);
        free(w->base.name);
        free(w);
}

static int s3_writer_open_with(Store *s, const char *name, const StoreWriteOptions *o, StoreWriter **ret) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *key = full_key(st, name);
        S3Writer *w = xcalloc(1, sizeof *w);
        int r;

        w->base = (StoreWriter){ .store = s, .name = xstrdup(name) };
        if (o && o->attrs) {
                store_attrs_copy(&w->attrs, o->attrs);
                w->opts = (S3PutOptions){ .content_type = w->attrs.content_type,
                                          .cache_control = w->attrs.cache_control,
                                          .content_disposition = w->attrs.content_disposition,
                                          .content_encoding = w->attrs.content_encoding,
                                          .content_language = w->attrs.content_language,
                                          .expires = w->attrs.expires,
                                          .metadata = w->attrs.metadata };
        }
        w->size = o ? o->size : STORE_SIZE_UNKNOWN;
        /* Refused here, before anything is sent. */
        r = s3_put_options_check(st->client, st->bucket, key, &w->opts);
        if (r < 0) {
                s3_writer_free(&w->base);
                return r;
        }
        if (w->size != STORE_SIZE_UNKNOWN && w->size > 0 && o && o->multipart && o->part_size > 0) {
                w->mode = S3_WRITE_PARTS;
                r = s3_part_stream_new(st->client, st->bucket, key, &w->opts, w->size, o->part_size, &w->parts);
                if (r < 0) {
                        s3_writer_free(&w->base);
                        return r;
                }
        } else if (w->size == STORE_SIZE_UNKNOWN || (o && o->multipart)) {
                w->mode = S3_WRITE_UPLOAD;
                r = s3_upload_new(st->client, st->bucket, key, &w->opts, &w->upload);
                if (r < 0) {
                        s3_writer_free(&w->base);
                        return r;
                }
                if (o && o->multipart)
                        s3_upload_force_multipart(w->upload);
                /* A copy (known size): its bytes come from one stream, so one part uploads while the
                 * next fills; more part workers would only hold more 8 MiB buffers (bench/RESULTS.md). */
                if (w->size != STORE_SIZE_UNKNOWN && !getenv("SKYFORGE_S3_WORKERS"))
                        s3_upload_set_workers(w->upload, S3_COPY_PART_WORKERS);
        } else if (w->size <= STORE_BUFFER_MAX) {
                w->mode = S3_WRITE_BUFFER;
                w->buf = xmalloc(MAX(w->size, (uint64_t) 1));
        } else {
                w->mode = S3_WRITE_STREAM;
                pthread_mutex_init(&w->lock, NULL);
                pthread_cond_init(&w->cond, NULL);
        }
        *ret = &w->base;
        return 0;
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
        r->ring_size = S3_READ_RING;
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
                if (r->fill == r->ring_size) {
                        pthread_cond_wait(&r->cond, &r->lock);
                        continue;
                }
                size_t tail = (r->head + r->fill) % r->ring_size;
                size_t k = MIN(n, MIN(r->ring_size - r->fill, r->ring_size - tail));
                memcpy(r->ring + tail, p, k);
                r->fill += k;
                p += k;
                n -= k;
                pthread_cond_broadcast(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);
        return ret;
}

static char *strdup_or_null(const char *s) {
        return s ? xstrdup(s) : NULL;
}

static void attrs_from_info(StoreAttrs *a, const S3ObjectInfo *i) {
        *a = (StoreAttrs){
                .size = i->size,
                .mtime_usec = i->mtime_usec,
                .etag = xstrdup(strempty(i->etag)),
                .content_type = strdup_or_null(i->content_type),
                .cache_control = strdup_or_null(i->cache_control),
                .content_disposition = strdup_or_null(i->content_disposition),
                .content_encoding = strdup_or_null(i->content_encoding),
                .content_language = strdup_or_null(i->content_language),
                .expires = strdup_or_null(i->expires),
                .metadata = strv_copy(i->metadata),
        };
}

/* In the reader's thread, before the first body byte reaches the ring. */
static int reader_on_info(const S3ObjectInfo *i, void *userdata) {
        S3Reader *r = userdata;

        pthread_mutex_lock(&r->lock);
        if (!r->has_info) {
                attrs_from_info(&r->info, i);
                r->has_info = true;
                pthread_cond_broadcast(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);
        return 0;
}

static void *reader_main(void *userdata) {
        S3Reader *r = userdata;
        S3Store *st = s3_store(r->base.store);
        RingSink rs = { .sink = { .write = ring_sink_write }, .reader = r };
        int k;

        if (r->with_info)
                k = s3_get_object_with_info(st->client, st->bucket, r->key, r->offset, r->length, NULL, &rs.sink,
                                            reader_on_info, r);
        else
                k = s3_get_object(r->client, st->bucket, r->key, r->offset, r->size - r->offset, r->etag,
                                  &rs.sink);
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

        if (!r->with_info) {
                k = s3_client_clone(st->client, &r->client);
                if (k < 0)
                        return k;
        }
        r->ring = xmalloc(r->ring_size);
        k = thread_start(&r->thread, reader_main, r);
        if (k < 0)
                return err_set(k, EX_OSERR, "cannot start a download thread: %s", strerror(-k));
        r->started = true;
        return 0;
}

static ssize_t s3_reader_read(StoreReader *base, void *buf, size_t n) {
        S3Reader *r = (S3Reader *) base;
        ssize_t ret;

        if ((!r->with_info && r->offset >= r->size) || n == 0)
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
                n = MIN(n, MIN(r->fill, r->ring_size - r->head));
                memcpy(buf, r->ring + r->head, n);
                r->head = (r->head + n) % r->ring_size;
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
        store_attrs_done(&r->info);
        err_saved_done(&r->error);
        free(r);
}

static int s3_reader_open_with(Store *s, const char *name, const StoreReadOptions *o, StoreReader **ret) {
        S3Store *st = s3_store(s);
        S3Reader *r = xcalloc(1, sizeof *r);
        int k;

        r->base = (StoreReader){ .store = s, .name = xstrdup(name) };
        r->with_info = true;
        r->offset = o ? o->offset : 0;
        r->length = o ? o->length : UINT64_MAX;
        r->key = full_key(st, name);
        r->ring_size = S3_COPY_RING;
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->cond, NULL);
        k = reader_start(r);
        if (k < 0) {
                s3_reader_free(&r->base);
                return k;
        }
        *ret = &r->base;
        return 0;
}

static int s3_reader_attrs(StoreReader *base, const StoreAttrs **ret) {
        S3Reader *r = (S3Reader *) base;
        int k = 0;

        if (!r->with_info)
                return -EOPNOTSUPP;
        pthread_mutex_lock(&r->lock);
        while (!r->has_info && !r->done)
                pthread_cond_wait(&r->cond, &r->lock);
        if (r->has_info)
                *ret = &r->info;
        else
                k = r->error.error < 0 ? err_restore(&r->error)
                                       : err_set(-EIO, EX_SOFTWARE, "GET of %s/%s ended without a reply",
                                                 s3_store(base->store)->bucket, r->key);
        pthread_mutex_unlock(&r->lock);
        return k;
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

typedef struct S3StoreLister {
        StoreLister base;
        S3Lister *lister;
        StoreEntry cur;
} S3StoreLister;

static int s3_lister_open_store(Store *s, const char *prefix, StoreLister **ret) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *p = full_key(st, strempty(prefix));
        S3StoreLister *l = xcalloc(1, sizeof *l);
        int r;

        l->base.store = s;
        r = s3_lister_new(st->client, st->bucket, p, &l->lister);
        if (r < 0) {
                free(l);
                return r;
        }
        *ret = &l->base;
        return 0;
}

static int s3_lister_next_store(StoreLister *base, const StoreEntry **ret) {
        S3StoreLister *l = (S3StoreLister *) base;
        S3Store *st = s3_store(base->store);

        for (;;) {
                const S3Object *o;
                const char *name;
                int r = s3_lister_next(l->lister, &o);

                if (r <= 0)
                        return r;
                name = startswith(o->key, st->prefix);
                if (!name)
                        return err_set(-EBADMSG, EX_PROTOCOL,
                                       "listing of bucket %s returned key %s outside prefix %s", st->bucket, o->key,
                                       st->prefix);
                if (isempty(name))
                        continue; /* a "directory marker" for the prefix itself */
                l->cur = (StoreEntry){ .name = (char *) name, .size = o->size, .mtime_usec = o->mtime_usec,
                                       .etag = (char *) o->etag };
                *ret = &l->cur;
                return 1;
        }
}

static void s3_lister_free_store(StoreLister *base) {
        S3StoreLister *l = (S3StoreLister *) base;

        s3_lister_free(l->lister);
        free(l);
}

static int s3_stat_attrs(Store *s, const char *name, StoreAttrs *ret) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *key = full_key(st, name);
        _cleanup_(s3_object_info_done) S3ObjectInfo info = {};
        int r;

        r = s3_head_object(st->client, st->bucket, key, &info);
        if (r < 0)
                return r;
        attrs_from_info(ret, &info);
        return 0;
}

static int s3_remove_many(Store *s, char *const *names, size_t n) {
        S3Store *st = s3_store(s);
        char **keys = xcalloc(n + 1, sizeof(char *));
        int r;

        for (size_t i = 0; i < n; i++)
                keys[i] = full_key(st, names[i]);
        r = s3_delete_objects(st->client, st->bucket, keys, n);
        strv_free(keys);
        return r;
}

/* S3 takes any bytes as a key, up to 1024 of them. */
static bool s3_name_valid(Store *s, const char *name) {
        return strlen(s3_store(s)->prefix) + strlen(name) <= 1024;
}

static uint64_t s3_retry_time(Store *s) {
        return s3_client_retry_time_usec(s3_store(s)->client);
}

static int s3_clone(Store *s, Store **ret);

static int s3_part_layout(Store *s, const char *name, uint64_t *ret_part_size, unsigned *ret_parts) {
        S3Store *st = s3_store(s);
        _cleanup_free_ char *key = full_key(st, name);

        return s3_head_part_layout(st->client, st->bucket, key, ret_part_size, ret_parts);
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
        StoreLeftoverFilter filter;
        void *userdata;
        unsigned aborted;
        int error;
} CleanupCtx;

static int cleanup_one(const S3UploadInfo *u, void *userdata) {
        CleanupCtx *ctx = userdata;
        int r;

        if (u->initiated_usec > ctx->before_usec)
                return 0; /* may still be in progress in another run */
        if (ctx->filter) {
                /* Listed under the prefix; another writer's upload (the WAL stream's) stays. */
                const char *name = startswith(u->key, ctx->st->prefix);
                if (!name || !ctx->filter(name, ctx->userdata))
                        return 0;
        }
        r = s3_abort_multipart_upload(ctx->st->client, ctx->st->bucket, u->key, u->upload_id);
        if (r < 0) {
                ctx->error = r;
                return 0; /* try the others too */
        }
        log_debug("aborted unfinished multipart upload %s of %s/%s", u->upload_id, ctx->st->bucket, u->key);
        ctx->aborted++;
        return 0;
}

static int s3_cleanup(Store *s, uint64_t min_age_usec, StoreLeftoverFilter filter, void *userdata) {
        S3Store *st = s3_store(s);
        uint64_t now = now_usec(CLOCK_REALTIME);
        CleanupCtx ctx = { .st = st,
                           .before_usec = now > min_age_usec ? now - min_age_usec : 0,
                           .filter = filter,
                           .userdata = userdata };
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
        .writer_open_with = s3_writer_open_with,
        .reader_open_with = s3_reader_open_with,
        .reader_attrs = s3_reader_attrs,
        .lister_open = s3_lister_open_store,
        .lister_next = s3_lister_next_store,
        .lister_free = s3_lister_free_store,
        .stat_attrs = s3_stat_attrs,
        .remove_many = s3_remove_many,
        .name_valid = s3_name_valid,
        .clone = s3_clone,
        .retry_time_usec = s3_retry_time,
        .part_layout = s3_part_layout,
        .etag_of_parts = true,
};

static int s3_clone(Store *s, Store **ret) {
        S3Store *st = s3_store(s), *c;
        S3Client *client;
        int r;

        r = s3_client_clone(st->client, &client);
        if (r < 0)
                return r;
        c = xcalloc(1, sizeof *c);
        c->client = client;
        c->bucket = xstrdup(st->bucket);
        c->prefix = xstrdup(st->prefix);
        *ret = store_new(&s3_store_interface, s->location, c);
        return 0;
}

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

/* ---- every bucket of a remote, or the prefixes under a location ---- */

typedef struct S3Root {
        const RemoteConfig *remote;
        S3Client *client;
        char *bucket; /* NULL: the remote's buckets */
        char *prefix; /* "" or ends with '/' */
} S3Root;

static int s3_root_list(StoreRoot *root, char ***ret) {
        S3Root *sr = root->data;
        _cleanup_strv_free_ char **pre = NULL, **l = NULL;
        int r;

        if (!sr->bucket)
                return s3_list_buckets(sr->client, ret);
        r = s3_list_common_prefixes(sr->client, sr->bucket, sr->prefix, "/", &pre);
        if (r < 0)
                return r;
        l = xcalloc(1, sizeof(char *));
        STRV_FOREACH(x, pre) {
                const char *b = startswith(*x, sr->prefix);
                if (b && !isempty(b))
                        strv_push(&l, xstrndup(b, strlen(b) - 1));
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int s3_root_open(StoreRoot *root, const char *bucket, bool for_write, Store **ret) {
        S3Root *sr = root->data;
        _cleanup_free_ char *prefix = NULL;

        if (!sr->bucket)
                return store_s3_open(sr->remote, bucket, "", for_write, ret);
        prefix = xasprintf("%s%s/", sr->prefix, bucket);
        return store_s3_open(sr->remote, sr->bucket, prefix, for_write, ret);
}

static char *s3_root_describe(StoreRoot *root, const char *bucket) {
        S3Root *sr = root->data;

        if (!sr->bucket)
                return xasprintf("bucket \"%s\" of remote \"%s\"", bucket, sr->remote->name);
        return xasprintf("prefix \"%s%s/\" in %s:%s", sr->prefix, bucket, sr->remote->name, sr->bucket);
}

static void s3_root_done(StoreRoot *root) {
        S3Root *sr = root->data;

        if (!sr)
                return;
        s3_client_free(sr->client);
        free(sr->bucket);
        free(sr->prefix);
        free(sr);
}

static const StoreRootInterface s3_root_interface = {
        .list_buckets = s3_root_list,
        .open_bucket = s3_root_open,
        .describe_bucket = s3_root_describe,
        .done = s3_root_done,
};

int store_s3_root_open(const RemoteConfig *remote, const char *bucket, const char *prefix, StoreRoot **ret) {
        _cleanup_(s3_client_freep) S3Client *c = NULL;
        _cleanup_free_ char *location = NULL, *what = NULL;
        S3Root *sr;
        int r;

        r = s3_client_new(remote, &c);
        if (r < 0)
                return r;
        sr = xcalloc(1, sizeof *sr);
        sr->remote = remote;
        sr->client = TAKE_PTR(c);
        if (bucket) {
                sr->bucket = xstrdup(bucket);
                sr->prefix = isempty(prefix) || endswith(prefix, "/") ? xstrdup(strempty(prefix))
                                                                      : xasprintf("%s/", prefix);
                location = xasprintf("%s:%s/%s", remote->name, bucket, sr->prefix);
        } else
                location = xstrdup(remote->name);
        what = xasprintf("remote \"%s\"", remote->name);
        *ret = store_root_new(&s3_root_interface, location, what, sr);
        (*ret)->remote = true;
        (*ret)->create_bucket = remote->create_bucket;
        return 0;
}
