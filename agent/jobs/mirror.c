/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror job: bucket by bucket, the source and destination listings are pulled page by page and
 * merged in key order; the main thread decides per key (copy, check, delete, skip) and hands copies to
 * `transfers` worker threads through a small bounded queue. Nothing here grows with the number of
 * objects: a listing page per side, the queue, one buffer per small transfer, and pipes for large ones.
 *
 * Content identity: every offsite copy records the source's ETag (and the SHA-256 where the object was
 * read before it was written) in destination metadata, so a multipart object, whose destination ETag
 * never equals the source's, compares by one HEAD, and same-size edits are caught because the source
 * ETag changes with the content. Equal ETags need no request at all, so a no-op resync only lists.
 * Where that bookkeeping would push an object past S3's 2 KB of user metadata it is left out, and the
 * object compares by size and ETag alone. `restore mirror` writes none into the source: the offsite
 * copy's record is compared with the source's ETag instead.
 *
 * Keys and bucket names come from the less trusted side: a key is opaque bytes and is written as the
 * same key (the S3 client sends "." and ".." segments literally), and a bucket name that is not a valid
 * S3 bucket name is refused before it becomes a destination bucket or prefix. */
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/job.h"
#include "jobs/mirror.h"
#include "log/log.h"
#include "pipe/pipe.h"
#include "store/s3/s3.h"
#include "store/s3/sign.h"

#define META_PREFIX "skyforge-"
#define META_ETAG META_PREFIX "etag"
#define META_SHA256 META_PREFIX "sha256"
/* Objects up to this size are read into memory (one GET, hashed, one signed PUT); larger ones stream
 * through a pipe. transfers * SMALL_MAX bounds the buffers. */
#define SMALL_MAX (1024U * 1024)
#define PART_SIZE_MIN (8U * 1024 * 1024)
#define PARTS_MAX 10000U
#define COPY_ATTEMPTS 3U
#define DELETE_BATCH 1000U

static int safe_close(int fd) {
        if (fd >= 0)
                close(fd);
        return -EBADF;
}

static void *mfree(void *p) {
        free(p);
        return NULL;
}

typedef struct Side {
        const RemoteConfig *remote;
        char *bucket;
        char *prefix; /* "" or ending in '/' */
} Side;

typedef struct Pair {
        char *name; /* the mirrored bucket, for filters and messages */
        Side src, dst;
} Pair;

typedef enum TaskKind {
        TASK_COPY,
        TASK_CHECK, /* same size, different ETag: compare the stored source ETag first */
} TaskKind;

typedef struct Task {
        TaskKind kind;
        const Pair *pair;
        char *key; /* relative to the pair's prefixes */
        char *etag;
        uint64_t size;
        char *dst_etag; /* TASK_CHECK: the destination's listed ETag */
} Task;

/* A multipart copy in progress: its owner created the upload; any worker may take a part. */
typedef struct BigCopy {
        const Pair *pair;
        const char *src_key, *dst_key, *src_etag, *upload_id;
        uint64_t size, part_size;
        unsigned n_parts, next_part, parts_done;
        char **etags;
        int error;
        char *error_message;
        struct BigCopy *next;
} BigCopy;

typedef struct Mirror {
        const Config *config;
        const MirrorConfig *mc;
        const MirrorOptions *o;
        Progress *progress;

        pthread_mutex_t lock;
        pthread_cond_t work;     /* a task or a part is available, or closing */
        pthread_cond_t space;    /* the queue has room */
        pthread_cond_t progress_cond; /* a task or a part finished */
        Task **queue;
        size_t queue_cap, queue_head, queue_len;
        size_t pending; /* queued or running tasks */
        bool closing;
        BigCopy *bigs;

        MirrorStats stats;
        uint64_t done_bytes; /* for progress: copied, skipped or failed */
        uint64_t seen, seen_bytes; /* source objects selected so far */
        char *first_error;
        int first_errno;
        int first_exit;
} Mirror;

typedef struct Worker {
        Mirror *m;
        pthread_t thread;
        S3Client *src, *dst; /* each thread its own clients */
        S3Client *src_for; /* which remote src belongs to */
} Worker;

/* ---- small pure helpers ---- */

bool mirror_key_selected(char *const *include, char *const *exclude, const char *bucket, const char *key) {
        _cleanup_free_ char *full = xasprintf("%s/%s", strempty(bucket), key);
        bool in = strv_isempty(include);

        for (char *const *p = include; p && *p && !in; p++)
                in = fnmatch(*p, key, 0) == 0 || fnmatch(*p, full, 0) == 0;
        if (!in)
                return false;
        for (char *const *p = exclude; p && *p; p++)
                if (fnmatch(*p, key, 0) == 0 || fnmatch(*p, full, 0) == 0)
                        return false;
        return true;
}

char **mirror_metadata(char *const *source_metadata, bool bookkeeping, const char *etag,
                       const char *sha256) {
        char **l = xcalloc(1, sizeof(char *));
        size_t size, etag_size, sha_size;

        for (size_t i = 0; source_metadata && source_metadata[i] && source_metadata[i + 1]; i += 2) {
                /* Our own names describe the copy we make now, not an older one. */
                if (startswith(source_metadata[i], META_PREFIX))
                        continue;
                strv_push(&l, xstrdup(source_metadata[i]));
                strv_push(&l, xstrdup(source_metadata[i + 1]));
        }
        if (!bookkeeping)
                return l;
        /* The ETag record is what later runs compare; the SHA-256 is only informative, so it goes
         * first when the two do not both fit in S3's limit. */
        size = s3_metadata_size(l);
        etag_size = strlen(META_ETAG) + strlen(strempty(etag));
        sha_size = sha256 ? strlen(META_SHA256) + strlen(sha256) : 0;
        if (size + etag_size > S3_METADATA_MAX)
                return l;
        strv_push(&l, xstrdup(META_ETAG));
        strv_push(&l, xstrdup(strempty(etag)));
        if (sha256 && size + etag_size + sha_size <= S3_METADATA_MAX) {
                strv_push(&l, xstrdup(META_SHA256));
                strv_push(&l, xstrdup(sha256));
        }
        return l;
}

static const char *metadata_get(char *const *md, const char *name) {
        for (size_t i = 0; md && md[i] && md[i + 1]; i += 2)
                if (streq(md[i], name))
                        return md[i + 1];
        return NULL;
}

void mirror_stats_print(const MirrorStats *s, bool dry_run, FILE *f) {
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX], d[FORMAT_BYTES_MAX];

        fprintf(f,
                "%s %" PRIu64 " objects (%s), skipped %" PRIu64 " (%s), %s %" PRIu64 " (%s), failed %" PRIu64
                ", kept %" PRIu64 " extra",
                dry_run ? "would copy" : "copied", s->copied, format_bytes(s->copied_bytes, a, sizeof a),
                s->skipped, format_bytes(s->skipped_bytes, b, sizeof b),
                dry_run ? "would delete" : "deleted", s->deleted,
                format_bytes(s->deleted_bytes, d, sizeof d), s->failed, s->kept);
        if (s->vanished > 0)
                fprintf(f, ", skipped %" PRIu64 " vanished at the source", s->vanished);
        if (s->refused_buckets > 0)
                fprintf(f, ", refused %" PRIu64 " bucket(s)", s->refused_buckets);
        fputc('\n', f);
}

static void pair_done(Pair *p) {
        free(p->name);
        free(p->src.bucket);
        free(p->src.prefix);
        free(p->dst.bucket);
        free(p->dst.prefix);
        *p = (Pair){};
}

static void task_free(Task *t) {
        if (!t)
                return;
        free(t->key);
        free(t->etag);
        free(t->dst_etag);
        free(t);
}

/* Records the first failure for the job's error; every failure is logged where it happens. */
static void mirror_fail(Mirror *m, int r, const char *what) {
        const char *msg = err_message() ?: strerror(-r);

        log_error("%s: %s", what, msg);
        pthread_mutex_lock(&m->lock);
        if (!m->first_error) {
                m->first_error = xasprintf("%s: %s", what, msg);
                m->first_errno = r;
                m->first_exit = err_exit_code(r);
        }
        pthread_mutex_unlock(&m->lock);
}

static void stats_add(Mirror *m, uint64_t *count, uint64_t *bytes, uint64_t n) {
        pthread_mutex_lock(&m->lock);
        (*count)++;
        if (bytes)
                *bytes += n;
        pthread_mutex_unlock(&m->lock);
}

/* ---- streaming one byte range GET -> PUT through a pipe ---- */

/* A GET running in its own thread into a pipe that a PUT reads. With want_info, the headers of its first
 * reply are published (info, under lock) before its first body byte, so the PUT can take its headers from
 * the GET instead of a HEAD before it. */
typedef struct StreamGet {
        S3Client *c;
        const char *bucket, *key, *etag;
        uint64_t offset, length;
        int fd;  /* the write end, owned by the thread */
        int rfd; /* the read end, for the PUT */
        pthread_t thread;
        int error;
        char *message;
        bool cancelled; /* we closed the pipe on purpose: the GET's EPIPE is no cause */

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool want_info, has_info, done;
        S3ObjectInfo info;
} StreamGet;

static int stream_on_info(const S3ObjectInfo *i, void *userdata) {
        StreamGet *g = userdata;

        pthread_mutex_lock(&g->lock);
        g->info = (S3ObjectInfo){
                .size = i->size,
                .mtime_usec = i->mtime_usec,
                .etag = xstrdup(strempty(i->etag)),
                .content_type = i->content_type ? xstrdup(i->content_type) : NULL,
                .cache_control = i->cache_control ? xstrdup(i->cache_control) : NULL,
                .content_disposition = i->content_disposition ? xstrdup(i->content_disposition) : NULL,
                .content_encoding = i->content_encoding ? xstrdup(i->content_encoding) : NULL,
                .content_language = i->content_language ? xstrdup(i->content_language) : NULL,
                .expires = i->expires ? xstrdup(i->expires) : NULL,
                .metadata = strv_copy(i->metadata),
        };
        g->has_info = true;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
        return 0;
}

static void *stream_get_thread(void *userdata) {
        StreamGet *g = userdata;
        _cleanup_(sink_freep) Sink *sink = sink_fd_new(g->fd);
        int r;

        r = s3_get_object_with_info(g->c, g->bucket, g->key, g->offset, g->length, g->etag, sink,
                                    g->want_info ? stream_on_info : NULL, g);
        safe_close(g->fd); /* the reader sees the end */
        g->fd = -EBADF;
        pthread_mutex_lock(&g->lock);
        g->error = r;
        if (r < 0)
                g->message = xstrdup(err_message() ?: strerror(-r));
        g->done = true;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
        return NULL;
}

static int stream_start(Worker *w, StreamGet *g, const char *bucket, const char *key, const char *etag,
                        uint64_t offset, uint64_t length, bool want_info) {
        int fds[2], r;

        *g = (StreamGet){ .c = w->src, .bucket = bucket, .key = key, .etag = etag, .offset = offset,
                          .length = length, .want_info = want_info, .fd = -EBADF, .rfd = -EBADF };
        if (pipe2(fds, O_CLOEXEC) < 0)
                return err_set(-errno, EX_OSERR, "cannot create a pipe: %m");
        g->rfd = fds[0];
        g->fd = fds[1];
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->cond, NULL);
        r = -pthread_create(&g->thread, NULL, stream_get_thread, g);
        if (r < 0) {
                g->rfd = safe_close(g->rfd);
                g->fd = safe_close(g->fd);
                pthread_mutex_destroy(&g->lock);
                pthread_cond_destroy(&g->cond);
                return err_set(r, EX_OSERR, "cannot start a transfer thread: %s", strerror(-r));
        }
        return 0;
}

/* Waits for the headers of the GET's first reply; a GET that failed before them (a 404 for an object
 * deleted since it was listed, a server that kept failing) returns its error here. */
static int stream_wait_info(StreamGet *g) {
        int r = 0;

        pthread_mutex_lock(&g->lock);
        while (!g->has_info && !g->done)
                pthread_cond_wait(&g->cond, &g->lock);
        if (!g->has_info)
                r = g->error < 0 ? err_set(g->error, err_exit_code(g->error), "%s", g->message)
                                 : err_set(-EIO, EX_SOFTWARE, "GET of %s/%s ended without a reply",
                                           g->bucket, g->key);
        pthread_mutex_unlock(&g->lock);
        return r;
}

/* Ends the stream after the PUT returned r: stops a GET that still writes and joins it. */
static int stream_finish(StreamGet *g, int r, char **etag) {
        /* Closing the read end stops a GET that is still writing (EPIPE; SIGPIPE is ignored). */
        g->rfd = safe_close(g->rfd);
        pthread_join(g->thread, NULL);
        if (g->error < 0 && !g->cancelled) {
                /* The GET's cause (a changed object, a server error) explains a short PUT better. */
                if (r >= 0 && etag)
                        *etag = mfree(*etag);
                r = err_set(g->error, err_exit_code(g->error), "%s", g->message);
        }
        free(g->message);
        s3_object_info_done(&g->info);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
        return r;
}

/* Stops a stream whose PUT will not run (with the error r set by the caller). */
static int stream_cancel(StreamGet *g, int r) {
        g->cancelled = true;
        return stream_finish(g, r, NULL);
}

static ssize_t pipe_read(void *buf, size_t n, void *userdata) {
        int fd = *(int *) userdata;

        for (;;) {
                ssize_t k = read(fd, buf, n);
                if (k >= 0)
                        return k;
                if (errno != EINTR)
                        return err_set(-errno, EX_IOERR, "cannot read the copy pipe: %m");
        }
}

/* ---- copies ---- */

/* The destination's headers, from the reply of the source GET that reads the bytes, so they describe
 * exactly what is copied: every standard header and the user metadata, plus our bookkeeping offsite.
 * sha256: of the bytes when we read them whole, else what the source recorded. */
static S3PutOptions put_options(const Mirror *m, const Task *t, const S3ObjectInfo *info, const char *sha256,
                                char ***ret_md) {
        bool bookkeeping = m->o->direction == MIRROR_FORWARD;

        if (!streq(t->etag, strempty(info->etag)))
                log_debug("%s/%s changed since it was listed (ETag %s, now %s): copying it as it is now.",
                          t->pair->name, t->key, t->etag, strempty(info->etag));
        sha256 = sha256 ?: metadata_get(info->metadata, META_SHA256);
        *ret_md = mirror_metadata(info->metadata, bookkeeping, info->etag, sha256);
        if (bookkeeping && !metadata_get(*ret_md, META_ETAG))
                log_debug("%s/%s: its %zu bytes of user metadata leave no room for " META_ETAG " within "
                          "S3's %u; it is copied without, and later runs compare it by size and ETag only.",
                          t->pair->name, t->key, s3_metadata_size(*ret_md), S3_METADATA_MAX);
        else if (bookkeeping && sha256 && !metadata_get(*ret_md, META_SHA256))
                log_debug("%s/%s: its user metadata leaves no room for " META_SHA256 " within S3's %u; "
                          "it is copied without.",
                          t->pair->name, t->key, S3_METADATA_MAX);
        return (S3PutOptions){
                .content_type = info->content_type,
                .cache_control = info->cache_control,
                .content_disposition = info->content_disposition,
                .content_encoding = info->content_encoding,
                .content_language = info->content_language,
                .expires = info->expires,
                .metadata = *ret_md,
        };
}

static int copy_small(Worker *w, const Task *t, const char *src_key, const char *dst_key,
                      uint64_t *ret_bytes) {
        const Pair *p = t->pair;
        _cleanup_(s3_object_info_done) S3ObjectInfo info = {};
        _cleanup_free_ void *data = NULL;
        _cleanup_strv_free_ char **md = NULL;
        char sha[65];
        size_t n;
        int r;

        r = s3_get_object_buffer(w->src, p->src.bucket, src_key, SMALL_MAX, &data, &n, &info);
        if (r < 0)
                return r;
        s3_sha256_hex(data, n, sha);
        S3PutOptions o = put_options(w->m, t, &info, sha, &md);
        r = s3_put_object(w->dst, p->dst.bucket, dst_key, data, n, &o, NULL);
        if (r < 0)
                return r;
        *ret_bytes = n;
        return 0;
}

/* One GET streamed into one PUT that starts once the GET's headers are in: two requests. -ERANGE with
 * *size updated when the object grew past multipart_threshold since it was listed. */
static int copy_streamed(Worker *w, const Task *t, const char *src_key, const char *dst_key,
                         uint64_t *size) {
        const Pair *p = t->pair;
        _cleanup_strv_free_ char **md = NULL;
        _cleanup_free_ char *etag = NULL;
        StreamGet g;
        int r;

        r = stream_start(w, &g, p->src.bucket, src_key, NULL, 0, UINT64_MAX, true);
        if (r < 0)
                return r;
        r = stream_wait_info(&g);
        if (r < 0)
                return stream_cancel(&g, r);
        *size = g.info.size;
        if (g.info.size >= w->m->mc->multipart_threshold)
                return stream_cancel(&g, -ERANGE);
        S3PutOptions o = put_options(w->m, t, &g.info, NULL, &md);
        r = s3_put_object_stream(w->dst, p->dst.bucket, dst_key, g.info.size, pipe_read, &g.rfd, &o, &etag);
        return stream_finish(&g, r, &etag);
}

static bool big_claim(Mirror *m, BigCopy **ret_b, unsigned *ret_part) {
        for (BigCopy *b = m->bigs; b; b = b->next)
                if (b->next_part < b->n_parts && b->error == 0) {
                        *ret_b = b;
                        *ret_part = b->next_part++;
                        return true;
                }
        return false;
}

/* Runs one part; called without the lock. g: the part's GET when already started (the first part's,
 * which brought the headers), else NULL. */
static void big_run_part(Worker *w, BigCopy *b, unsigned part, StreamGet *g) {
        Mirror *m = w->m;
        uint64_t off = (uint64_t) part * b->part_size, len = MIN(b->part_size, b->size - off);
        StreamGet own;
        char *etag = NULL;
        int r = 0;

        if (!g) {
                g = &own;
                r = stream_start(w, g, b->pair->src.bucket, b->src_key, b->src_etag, off, len, false);
        }
        if (r >= 0) {
                r = s3_multipart_put_part_stream(w->dst, b->pair->dst.bucket, b->dst_key, b->upload_id,
                                                 part + 1, len, pipe_read, &g->rfd, &etag);
                r = stream_finish(g, r, &etag);
        }
        pthread_mutex_lock(&m->lock);
        if (r < 0 && b->error == 0) {
                b->error = r;
                b->error_message = xstrdup(err_message() ?: strerror(-r));
        }
        if (r >= 0)
                b->etags[part] = etag;
        b->parts_done++;
        if (r >= 0)
                m->done_bytes += len;
        pthread_cond_broadcast(&m->progress_cond);
        pthread_mutex_unlock(&m->lock);
}

/* The first part's GET brings the headers to create the upload with and the ETag every other part's
 * GET is pinned to (If-Match): no HEAD. -ERANGE with *size updated when the object changed since it was
 * listed to a size that asks for a single PUT or another part size. */
static int copy_multipart(Worker *w, const Task *t, const char *src_key, const char *dst_key,
                          uint64_t *size) {
        Mirror *m = w->m;
        const Pair *p = t->pair;
        _cleanup_free_ char *upload_id = NULL, *etag = NULL, *src_etag = NULL;
        _cleanup_strv_free_ char **md = NULL;
        BigCopy b = { .pair = p, .src_key = src_key, .dst_key = dst_key };
        StreamGet first;
        int r;

        b.part_size = MAX((uint64_t) PART_SIZE_MIN, (*size + PARTS_MAX - 1) / PARTS_MAX);
        r = stream_start(w, &first, p->src.bucket, src_key, NULL, 0, b.part_size, true);
        if (r < 0)
                return r;
        r = stream_wait_info(&first);
        if (r < 0)
                return stream_cancel(&first, r);
        *size = b.size = first.info.size;
        if (b.size < m->mc->multipart_threshold || (b.size + b.part_size - 1) / b.part_size > PARTS_MAX)
                return stream_cancel(&first, -ERANGE);
        b.n_parts = (unsigned) ((b.size + b.part_size - 1) / b.part_size);
        b.src_etag = src_etag = xstrdup(strempty(first.info.etag));
        S3PutOptions o = put_options(m, t, &first.info, NULL, &md);
        r = s3_multipart_create(w->dst, p->dst.bucket, dst_key, &o, &upload_id);
        if (r < 0)
                return stream_cancel(&first, r);
        b.upload_id = upload_id;
        b.etags = xcalloc(b.n_parts + 1, sizeof(char *));

        pthread_mutex_lock(&m->lock);
        b.next_part = 1; /* the first is ours, its GET is running */
        b.next = m->bigs;
        m->bigs = &b;
        pthread_cond_broadcast(&m->work);
        pthread_mutex_unlock(&m->lock);
        big_run_part(w, &b, 0, &first);

        pthread_mutex_lock(&m->lock);
        /* Take parts ourselves; idle workers take the others. Then wait for the stragglers. */
        for (;;) {
                unsigned part;
                if (b.error == 0 && b.next_part < b.n_parts) {
                        part = b.next_part++;
                        pthread_mutex_unlock(&m->lock);
                        big_run_part(w, &b, part, NULL);
                        pthread_mutex_lock(&m->lock);
                        continue;
                }
                if (b.parts_done == b.next_part)
                        break;
                pthread_cond_wait(&m->progress_cond, &m->lock);
        }
        for (BigCopy **i = &m->bigs; *i; i = &(*i)->next)
                if (*i == &b) {
                        *i = b.next;
                        break;
                }
        pthread_mutex_unlock(&m->lock);

        if (b.error == 0)
                r = s3_multipart_complete(w->dst, p->dst.bucket, dst_key, upload_id, b.etags, NULL, b.n_parts,
                                           &etag);
        else
                r = err_set(b.error, err_exit_code(b.error), "%s", b.error_message);
        if (r < 0) {
                _cleanup_free_ char *saved = xstrdup(err_message() ?: strerror(-r));
                int code = err_exit_code(r);
                if (s3_abort_multipart_upload(w->dst, p->dst.bucket, dst_key, upload_id) < 0)
                        log_warning("could not abort multipart upload %s of %s/%s (the next run removes it): %s",
                                    upload_id, p->dst.bucket, dst_key, strna(err_message()));
                r = err_set(r, code, "%s", saved);
        }
        strv_free(b.etags);
        free(b.error_message);
        return r;
}

/* Objects above SMALL_MAX, by their listed size (or a lower bound): one PUT below multipart_threshold,
 * multipart from there on. */
static int copy_large(Worker *w, const Task *t, const char *src_key, const char *dst_key, uint64_t size,
                      uint64_t *ret_bytes) {
        int r = -ERANGE;

        /* An object whose size changed since it was listed may need the other way (one more GET). */
        for (unsigned i = 0; i < 3 && r == -ERANGE; i++)
                r = size >= w->m->mc->multipart_threshold ? copy_multipart(w, t, src_key, dst_key, &size)
                                                          : copy_streamed(w, t, src_key, dst_key, &size);
        if (r == -ERANGE)
                return err_set(-ESTALE, EX_TEMPFAIL, "%s/%s keeps changing its size while being copied",
                               t->pair->name, t->key);
        if (r < 0)
                return r;
        *ret_bytes = size;
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

static int find_exact_key(const S3Object *o, void *userdata) {
        FindKey *f = userdata;

        f->found = streq(o->key, f->key);
        return 1; /* the key itself lists first among the keys it prefixes */
}

/* The source answered 404 for a key its listing just returned. That is a real vanishing only when the
 * object is gone for HEAD and for a new listing as well; a 404 for an object that still exists (a
 * broken or hostile server, or something in between) must not turn into a silent skip. Returns 0 when it
 * vanished, < 0 with the error to count otherwise. */
static int confirm_vanished(Worker *w, const Pair *p, const char *src_key, const char *get_error) {
        _cleanup_(s3_object_info_done) S3ObjectInfo info = {};
        _cleanup_free_ char *why = xstrdup(strempty(get_error));
        FindKey f = { .key = src_key };
        int r;

        r = s3_head_object(w->src, p->src.bucket, src_key, &info);
        if (r >= 0)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the source answered GET with %s, but HEAD finds the object (%" PRIu64
                               " bytes, ETag %s): not counting it as vanished; check the source server "
                               "and anything between it and this node",
                               why, info.size, strempty(info.etag));
        if (r != -ENOENT)
                return r;
        r = s3_list_objects(w->src, p->src.bucket, src_key, NULL, find_exact_key, &f);
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

static void task_copy(Worker *w, const Task *t) {
        const Pair *p = t->pair;
        _cleanup_free_ char *src_key = xasprintf("%s%s", p->src.prefix, t->key);
        _cleanup_free_ char *dst_key = xasprintf("%s%s", p->dst.prefix, t->key);
        uint64_t bytes = 0, failing_since = 0;
        uint64_t budget = MAX(s3_client_retry_time_usec(w->src), s3_client_retry_time_usec(w->dst));
        int r = 0;

        for (unsigned attempt = 1; attempt <= COPY_ATTEMPTS; attempt++) {
                if (job_cancel_requested)
                        break;
                if (t->size <= SMALL_MAX) {
                        r = copy_small(w, t, src_key, dst_key, &bytes);
                        if (r == -EFBIG) /* it grew since it was listed */
                                r = copy_large(w, t, src_key, dst_key, SMALL_MAX + 1, &bytes);
                } else
                        r = copy_large(w, t, src_key, dst_key, t->size, &bytes);
                if (r >= 0 || !copy_retryable(r))
                        break;
                /* Started over only within retry_time of the first failure: a source whose GETs stall
                 * after a little progress does not keep the copy going attempt after attempt. */
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (failing_since == 0)
                        failing_since = now;
                else if (now - failing_since >= budget)
                        break;
                log_debug("copy of %s/%s failed (%s), %s", p->name, t->key, strna(err_message()),
                          attempt < COPY_ATTEMPTS ? "starting over" : "giving up");
        }
        if (r == -ENOENT && startswith(strempty(err_message()), "NoSuchKey")) {
                r = confirm_vanished(w, p, src_key, err_message());
                if (r >= 0) {
                        /* Deleted at the source after it was listed: nothing to copy, not a failure. */
                        log_info("%s/%s vanished at the source after it was listed, skipping it.", p->name,
                                 t->key);
                        pthread_mutex_lock(&w->m->lock);
                        w->m->stats.vanished++;
                        w->m->done_bytes += t->size;
                        pthread_mutex_unlock(&w->m->lock);
                        return;
                }
        }
        if (r < 0) {
                _cleanup_free_ char *what = xasprintf("cannot copy %s/%s", p->name, t->key);
                mirror_fail(w->m, r, what);
                pthread_mutex_lock(&w->m->lock);
                w->m->stats.failed++;
                w->m->stats.failed_bytes += t->size;
                w->m->done_bytes += t->size;
                pthread_mutex_unlock(&w->m->lock);
                return;
        }
        pthread_mutex_lock(&w->m->lock);
        w->m->stats.copied++;
        w->m->stats.copied_bytes += bytes;
        if (bytes < w->m->mc->multipart_threshold)
                w->m->done_bytes += bytes; /* parts count their own */
        pthread_mutex_unlock(&w->m->lock);
}

/* Same size, other ETag. Offsite: copied unless the destination records this source ETag. Restoring
 * (nothing of ours is written into the source remote): copied unless the offsite copy records the ETag
 * the object in the source remote has now, i.e. it was made from that very object. */
static int check_needs_copy(const Mirror *m, S3Client *src, S3Client *dst, const Pair *p, const char *key,
                            const char *src_etag, const char *dst_etag, bool *ret) {
        _cleanup_(s3_object_info_done) S3ObjectInfo info = {};
        bool forward = m->o->direction == MIRROR_FORWARD;
        const Side *offsite = forward ? &p->dst : &p->src;
        _cleanup_free_ char *offsite_key = xasprintf("%s%s", offsite->prefix, key);
        int r;

        r = s3_head_object(forward ? dst : src, offsite->bucket, offsite_key, &info);
        if (r == -ENOENT) {
                *ret = true;
                return 0;
        }
        if (r < 0)
                return r;
        *ret = !streq_ptr(metadata_get(info.metadata, META_ETAG), forward ? src_etag : dst_etag);
        return 0;
}

static void task_run(Worker *w, Task *t) {
        if (t->kind == TASK_CHECK) {
                bool copy;
                int r = check_needs_copy(w->m, w->src, w->dst, t->pair, t->key, t->etag, t->dst_etag, &copy);
                if (r < 0) {
                        _cleanup_free_ char *what = xasprintf("cannot compare %s/%s", t->pair->name, t->key);
                        mirror_fail(w->m, r, what);
                        pthread_mutex_lock(&w->m->lock);
                        w->m->stats.failed++;
                        pthread_mutex_unlock(&w->m->lock);
                        return;
                }
                if (!copy) {
                        pthread_mutex_lock(&w->m->lock);
                        w->m->stats.skipped++;
                        w->m->stats.skipped_bytes += t->size;
                        w->m->done_bytes += t->size;
                        pthread_mutex_unlock(&w->m->lock);
                        return;
                }
        }
        task_copy(w, t);
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        Mirror *m = w->m;

        pthread_mutex_lock(&m->lock);
        for (;;) {
                BigCopy *b;
                unsigned part;

                if (big_claim(m, &b, &part)) {
                        pthread_mutex_unlock(&m->lock);
                        big_run_part(w, b, part, NULL);
                        pthread_mutex_lock(&m->lock);
                        continue;
                }
                if (m->queue_len > 0) {
                        Task *t = m->queue[m->queue_head];
                        m->queue_head = (m->queue_head + 1) % m->queue_cap;
                        m->queue_len--;
                        pthread_cond_signal(&m->space);
                        pthread_mutex_unlock(&m->lock);
                        if (!job_cancel_requested)
                                task_run(w, t);
                        task_free(t);
                        pthread_mutex_lock(&m->lock);
                        m->pending--;
                        pthread_cond_broadcast(&m->progress_cond);
                        continue;
                }
                if (m->closing)
                        break;
                pthread_cond_wait(&m->work, &m->lock);
        }
        pthread_mutex_unlock(&m->lock);
        return NULL;
}

/* ---- the main thread: listings, decisions, queue ---- */

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

static void queue_push(Mirror *m, Task *t) {
        pthread_mutex_lock(&m->lock);
        while (m->queue_len >= m->queue_cap)
                pthread_cond_wait(&m->space, &m->lock);
        m->queue[(m->queue_head + m->queue_len) % m->queue_cap] = t;
        m->queue_len++;
        m->pending++;
        pthread_cond_signal(&m->work);
        pthread_mutex_unlock(&m->lock);
}

static void queue_wait_idle(Mirror *m) {
        pthread_mutex_lock(&m->lock);
        while (m->pending > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&m->progress_cond, &m->lock, &ts);
                pthread_mutex_unlock(&m->lock);
                mirror_show_progress(m);
                pthread_mutex_lock(&m->lock);
        }
        pthread_mutex_unlock(&m->lock);
}

typedef struct PairRun {
        Mirror *m;
        const Pair *p;
        S3Client *src, *dst; /* the main thread's clients */
        FILE *deletes;       /* keys to delete, NUL-separated, applied after complete listings */
        uint64_t n_deletes, delete_bytes;
} PairRun;

static int decide(PairRun *pr, const S3Object *s, const S3Object *d) {
        Mirror *m = pr->m;
        TaskKind kind = TASK_COPY;

        pthread_mutex_lock(&m->lock);
        m->seen++;
        m->seen_bytes += s->size;
        pthread_mutex_unlock(&m->lock);

        if (d && d->size == s->size) {
                if (streq_ptr(d->etag, s->etag)) {
                        pthread_mutex_lock(&m->lock);
                        m->stats.skipped++;
                        m->stats.skipped_bytes += s->size;
                        m->done_bytes += s->size;
                        pthread_mutex_unlock(&m->lock);
                        return 0;
                }
                kind = TASK_CHECK;
        }
        if (m->o->dry_run) {
                bool copy = true;
                if (kind == TASK_CHECK) {
                        int r = check_needs_copy(m, pr->src, pr->dst, pr->p, s->key, s->etag, d->etag,
                                                 &copy);
                        if (r < 0)
                                return r;
                }
                if (copy)
                        stats_add(m, &m->stats.copied, &m->stats.copied_bytes, s->size);
                else
                        stats_add(m, &m->stats.skipped, &m->stats.skipped_bytes, s->size);
                return 0;
        }
        Task *t = xcalloc(1, sizeof *t);
        *t = (Task){
                .kind = kind,
                .pair = pr->p,
                .key = xstrdup(s->key),
                .etag = xstrdup(strempty(s->etag)),
                .size = s->size,
                .dst_etag = kind == TASK_CHECK ? xstrdup(strempty(d->etag)) : NULL,
        };
        queue_push(m, t);
        return 0;
}

static int note_extra(PairRun *pr, const S3Object *d) {
        Mirror *m = pr->m;

        if (!m->mc->delete) {
                stats_add(m, &m->stats.kept, NULL, 0);
                return 0;
        }
        if (!pr->deletes) {
                _cleanup_free_ char *dir = xstrdup(m->config->agent.work_dir);
                int fd;

                (void) mkdir_p(dir, 0700);
                fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (fd < 0)
                        return err_set(-errno, EX_CANTCREAT,
                                       "cannot create a scratch file in work_dir %s: %m (set work_dir in [agent])",
                                       dir);
                pr->deletes = fdopen(fd, "w+");
                if (!pr->deletes) {
                        safe_close(fd);
                        return err_set(-ENOMEM, EX_OSERR, "out of memory");
                }
        }
        if (fwrite(d->key, 1, strlen(d->key) + 1, pr->deletes) != strlen(d->key) + 1)
                return err_set(-EIO, EX_IOERR, "cannot write to work_dir %s", m->config->agent.work_dir);
        pr->n_deletes++;
        pr->delete_bytes += d->size;
        return 0;
}

/* Deletes what only the destination has; runs only after both listings reached their end. */
static int apply_deletes(PairRun *pr) {
        Mirror *m = pr->m;
        _cleanup_free_ char *line = NULL;
        char **batch = xcalloc(DELETE_BATCH + 1, sizeof(char *));
        size_t n = 0, cap = 0;
        int r = 0;

        if (m->o->dry_run || pr->n_deletes == 0) {
                pthread_mutex_lock(&m->lock);
                m->stats.deleted += pr->n_deletes;
                m->stats.deleted_bytes += pr->delete_bytes;
                pthread_mutex_unlock(&m->lock);
                free(batch);
                return 0;
        }
        if (fflush(pr->deletes) != 0 || fseek(pr->deletes, 0, SEEK_SET) != 0)
                r = err_set(-errno, EX_IOERR, "cannot reread the delete list in work_dir: %m");
        while (r >= 0) {
                ssize_t k = getdelim(&line, &cap, 0, pr->deletes);
                if (k > 0)
                        batch[n++] = xasprintf("%s%s", pr->p->dst.prefix, line);
                if (n > 0 && (n == DELETE_BATCH || k < 0)) {
                        r = s3_delete_objects(pr->dst, pr->p->dst.bucket, batch, n);
                        if (r >= 0) {
                                pthread_mutex_lock(&m->lock);
                                m->stats.deleted += n;
                                pthread_mutex_unlock(&m->lock);
                        }
                        for (size_t i = 0; i < n; i++)
                                batch[i] = mfree(batch[i]);
                        n = 0;
                }
                if (k < 0)
                        break;
        }
        for (size_t i = 0; i < n; i++)
                free(batch[i]);
        free(batch);
        if (r >= 0) {
                pthread_mutex_lock(&m->lock);
                m->stats.deleted_bytes += pr->delete_bytes;
                pthread_mutex_unlock(&m->lock);
        }
        return r;
}

static int strip_prefix(const Side *side, const S3Object *o, S3Object *ret) {
        const char *k = startswith(o->key, side->prefix);

        if (!k)
                return err_set(-EBADMSG, EX_PROTOCOL, "listing of bucket %s returned key %s outside prefix %s",
                               side->bucket, o->key, side->prefix);
        *ret = *o;
        ret->key = k;
        return 0;
}

/* Pulls the next selected object of one side; *ret NULL at the end. */
static int side_next(Mirror *m, const Pair *p, const Side *side, S3Lister *l, S3Object *buf,
                     const S3Object **ret) {
        for (;;) {
                const S3Object *o;
                int r = s3_lister_next(l, &o);
                if (r < 0)
                        return r;
                if (r == 0) {
                        *ret = NULL;
                        return 0;
                }
                r = strip_prefix(side, o, buf);
                if (r < 0)
                        return r;
                if (isempty(buf->key)) /* a "directory marker" for the prefix itself */
                        continue;
                if (mirror_key_selected(m->mc->include, m->mc->exclude, p->name, buf->key)) {
                        *ret = buf;
                        return 0;
                }
        }
}

/* Steps one side and keeps its own copy of the current key and ETag: a lister reuses its page. */
static int advance(Mirror *m, const Pair *p, const Side *side, S3Lister *l, S3Object *buf, const S3Object **cur,
                   char **key, char **etag) {
        int r = side_next(m, p, side, l, buf, cur);

        if (r < 0)
                return r;
        free(*key);
        free(*etag);
        *key = *cur ? xstrdup((*cur)->key) : NULL;
        *etag = *cur ? xstrdup(strempty((*cur)->etag)) : NULL;
        if (*cur) {
                buf->key = *key;
                buf->etag = *etag;
        }
        return 0;
}

static void abort_leftover_upload_log(const char *bucket, const S3UploadInfo *u) {
        log_info("Aborting unfinished multipart upload %s of %s/%s from an interrupted run.", u->upload_id,
                 bucket, u->key);
}

typedef struct AbortState {
        S3Client *c;
        const char *bucket;
} AbortState;

static int abort_leftover(const S3UploadInfo *u, void *userdata) {
        AbortState *a = userdata;

        abort_leftover_upload_log(a->bucket, u);
        return s3_abort_multipart_upload(a->c, a->bucket, u->key, u->upload_id);
}

static int mirror_pair(Mirror *m, const Pair *p, S3Client *src, S3Client *dst) {
        _cleanup_(s3_lister_freep) S3Lister *ls = NULL, *ld = NULL;
        PairRun pr = { .m = m, .p = p, .src = src, .dst = dst };
        S3Object sb = {}, db = {};
        const S3Object *s = NULL, *d = NULL;
        _cleanup_free_ char *skey = NULL, *setag = NULL, *dkey = NULL, *detag = NULL;
        int r;

        log_info("%s %s: %s:%s/%s -> %s:%s/%s", m->o->dry_run ? "Planning" : "Mirroring", p->name,
                 p->src.remote->name, p->src.bucket, p->src.prefix, p->dst.remote->name, p->dst.bucket,
                 p->dst.prefix);
        if (!m->o->dry_run) {
                /* Also in reverse (restore mirror, recover): only where create_bucket = yes says so. */
                if (p->dst.remote->create_bucket) {
                        r = s3_ensure_bucket(dst, p->dst.bucket);
                        if (r < 0)
                                return r;
                }
                /* A run killed during a multipart copy leaves its upload behind: nobody else writes
                 * under this prefix (the job lock), so every unfinished upload here is ours. */
                AbortState a = { dst, p->dst.bucket };
                r = s3_list_multipart_uploads(dst, p->dst.bucket, p->dst.prefix, abort_leftover, &a);
                if (r < 0)
                        log_warning("cannot clean up unfinished multipart uploads in %s: %s", p->dst.bucket,
                                    strna(err_message()));
        }

        s3_lister_new(src, p->src.bucket, p->src.prefix, &ls);
        s3_lister_new(dst, p->dst.bucket, p->dst.prefix, &ld);

        /* The merge: both sides ascend in byte order. */
        r = advance(m, p, &p->src, ls, &sb, &s, &skey, &setag);
        if (r >= 0)
                r = advance(m, p, &p->dst, ld, &db, &d, &dkey, &detag);
        if (r == -ENOENT && m->o->dry_run && p->dst.remote->create_bucket) {
                /* A bucket the real run creates (a rebuilt MinIO has none yet): all of it is to copy. */
                log_info("%s: bucket %s does not exist yet.", p->name, p->dst.bucket);
                d = NULL;
                r = 0;
        }
        while (r >= 0 && (s || d)) {
                int cmp = !s ? 1 : !d ? -1 : strcmp(s->key, d->key);

                if (job_cancel_requested) {
                        r = err_set(-ECANCELED, EX_TEMPFAIL, "job mirror was cancelled");
                        break;
                }
                if (cmp < 0) {
                        r = decide(&pr, s, NULL);
                        if (r >= 0)
                                r = advance(m, p, &p->src, ls, &sb, &s, &skey, &setag);
                } else if (cmp > 0) {
                        r = note_extra(&pr, d);
                        if (r >= 0)
                                r = advance(m, p, &p->dst, ld, &db, &d, &dkey, &detag);
                } else {
                        r = decide(&pr, s, d);
                        if (r >= 0)
                                r = advance(m, p, &p->src, ls, &sb, &s, &skey, &setag);
                        if (r >= 0)
                                r = advance(m, p, &p->dst, ld, &db, &d, &dkey, &detag);
                }
                mirror_show_progress(m);
        }
        queue_wait_idle(m);
        if (r < 0) {
                /* A listing that failed or stopped early says nothing about what is missing: no deletes. */
                if (pr.n_deletes > 0)
                        log_warning("%s: not deleting %" PRIu64 " destination objects, the listings did not "
                                    "complete.", p->name, pr.n_deletes);
        } else
                r = apply_deletes(&pr);
        if (pr.deletes)
                fclose(pr.deletes);
        return r;
}

/* ---- setup ---- */

static int mirror_resolve(const Config *c, const MirrorOptions *o, const RemoteConfig **ret_local,
                          const RemoteConfig **ret_offsite, Location *ret_loc) {
        const MirrorConfig *mc = &c->mirror;
        Location loc = {};
        int r;

        *ret_local = config_find_remote(c, mc->source);
        if (!*ret_local)
                return err_set(-ENOENT, EX_CONFIG,
                               "[mirror] source = %s names no remote; add a [remote.%s] section", mc->source,
                               mc->source);
        r = location_parse(mc->destination, &loc);
        if (r < 0)
                return err_set(r, EX_CONFIG, "[mirror] destination: %s", strna(err_message()));
        if (loc.type != LOCATION_REMOTE) {
                location_done(&loc);
                return err_set(-EINVAL, EX_CONFIG,
                               "[mirror] destination %s is not a remote location; write REMOTE:bucket/prefix",
                               mc->destination);
        }
        *ret_offsite = config_find_remote(c, loc.remote);
        if (!*ret_offsite) {
                err_set(-ENOENT, EX_CONFIG, "[mirror] destination %s names no remote; add a [remote.%s] section",
                        mc->destination, loc.remote);
                location_done(&loc);
                return -ENOENT;
        }
        *ret_loc = loc;
        return 0;
}

static int mirror_buckets(const Config *c, const MirrorOptions *o, S3Client *local, S3Client *offsite,
                          const Location *loc, char ***ret) {
        const MirrorConfig *mc = &c->mirror;
        _cleanup_strv_free_ char **l = NULL;
        int r;

        if (o->bucket) {
                l = xcalloc(1, sizeof(char *));
                strv_push(&l, xstrdup(o->bucket));
        } else if (mc->buckets) {
                l = xcalloc(1, sizeof(char *));
                STRV_FOREACH(b, mc->buckets)
                        strv_push(&l, xstrdup(*b));
        } else if (o->direction == MIRROR_FORWARD) {
                r = s3_list_buckets(local, &l);
                if (r < 0)
                        return r;
        } else {
                _cleanup_strv_free_ char **pre = NULL;
                r = s3_list_common_prefixes(offsite, loc->bucket, loc->prefix, "/", &pre);
                if (r < 0)
                        return r;
                l = xcalloc(1, sizeof(char *));
                STRV_FOREACH(x, pre) {
                        const char *b = startswith(*x, loc->prefix);
                        if (b && !isempty(b))
                                strv_push(&l, xstrndup(b, strlen(b) - 1));
                }
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* A bucket name from a listing (or the command line) becomes a bucket on one side and a prefix on the
 * other: only valid S3 bucket names, which are one path segment and no "." or "..", may. */
static int bucket_check(const MirrorOptions *o, const RemoteConfig *local, const Location *loc,
                        const char *bucket) {
        if (location_bucket_name_valid(bucket))
                return 0;
        if (o->direction == MIRROR_FORWARD)
                return err_set(-EINVAL, EX_DATAERR,
                               "bucket \"%s\" of remote \"%s\" is not a valid S3 bucket name (3..63 "
                               "lowercase letters, digits, '.' and '-', starting and ending with a letter "
                               "or digit, no \"..\"), so it cannot become a prefix under %s:%s/%s; it is "
                               "not mirrored (rename it, or list the buckets to mirror in [mirror] buckets)",
                               bucket, local->name, loc->remote, loc->bucket, loc->prefix);
        return err_set(-EINVAL, EX_DATAERR,
                       "prefix \"%s%s/\" in %s:%s is not named like a valid S3 bucket (3..63 lowercase "
                       "letters, digits, '.' and '-', starting and ending with a letter or digit, no "
                       "\"..\"); it is not restored into remote \"%s\" (move or remove it offsite, or "
                       "restore single buckets with --bucket)",
                       loc->prefix, bucket, loc->remote, loc->bucket, local->name);
}

static void pair_make(Pair *p, MirrorDirection dir, const RemoteConfig *local, const RemoteConfig *offsite,
                      const Location *loc, const char *bucket) {
        Side l = { (RemoteConfig *) local, xstrdup(bucket), xstrdup("") };
        Side off = { offsite, xstrdup(loc->bucket), xasprintf("%s%s/", loc->prefix, bucket) };

        p->name = xstrdup(bucket);
        p->src = dir == MIRROR_FORWARD ? l : off;
        p->dst = dir == MIRROR_FORWARD ? off : l;
}

int mirror_run(const Config *c, const MirrorOptions *o, Progress *progress, MirrorStats *ret_stats) {
        const MirrorConfig *mc = &c->mirror;
        const RemoteConfig *local = NULL, *offsite = NULL;
        _cleanup_(location_done) Location loc = {};
        _cleanup_(s3_client_freep) S3Client *lc = NULL, *oc = NULL;
        _cleanup_strv_free_ char **buckets = NULL;
        _cleanup_free_ Worker *workers = NULL;
        unsigned n_workers = o->dry_run ? 0 : MAX(mc->transfers, 1U);
        Mirror m = { .config = c, .mc = mc, .o = o, .progress = progress };
        int r;

        signal(SIGPIPE, SIG_IGN); /* a copy stops its GET by closing the pipe */
        r = mirror_resolve(c, o, &local, &offsite, &loc);
        if (r < 0)
                return r;
        r = s3_client_new(local, &lc);
        if (r >= 0)
                r = s3_client_new(offsite, &oc);
        if (r >= 0)
                r = mirror_buckets(c, o, lc, oc, &loc, &buckets);
        if (r < 0)
                return r;

        pthread_mutex_init(&m.lock, NULL);
        pthread_cond_init(&m.work, NULL);
        pthread_cond_init(&m.space, NULL);
        pthread_cond_init(&m.progress_cond, NULL);
        m.queue_cap = 4 * (size_t) MAX(n_workers, 1U);
        m.queue = xcalloc(m.queue_cap, sizeof(Task *));
        workers = xcalloc(MAX(n_workers, 1U), sizeof(Worker));
        unsigned started = 0;
        for (; started < n_workers; started++) {
                Worker *w = &workers[started];
                const RemoteConfig *from = o->direction == MIRROR_FORWARD ? local : offsite;
                const RemoteConfig *to = o->direction == MIRROR_FORWARD ? offsite : local;
                w->m = &m;
                r = s3_client_new(from, &w->src);
                if (r >= 0)
                        r = s3_client_new(to, &w->dst);
                if (r >= 0)
                        r = -pthread_create(&w->thread, NULL, worker_main, w);
                if (r < 0) {
                        s3_client_free(w->src);
                        s3_client_free(w->dst);
                        break;
                }
        }

        if (r >= 0)
                STRV_FOREACH(b, buckets) {
                        Pair p = {};
                        int k;

                        if (job_cancel_requested)
                                break;
                        k = bucket_check(o, local, &loc, *b);
                        if (k < 0) {
                                mirror_fail(&m, k, "refusing a bucket");
                                m.stats.refused_buckets++;
                                continue;
                        }
                        pair_make(&p, o->direction, local, offsite, &loc, *b);
                        k = mirror_pair(&m, &p, o->direction == MIRROR_FORWARD ? lc : oc,
                                        o->direction == MIRROR_FORWARD ? oc : lc);
                        if (k < 0) {
                                _cleanup_free_ char *what = xasprintf("bucket %s", p.name);
                                mirror_fail(&m, k, what);
                        }
                        pair_done(&p);
                }

        pthread_mutex_lock(&m.lock);
        m.closing = true;
        pthread_cond_broadcast(&m.work);
        pthread_mutex_unlock(&m.lock);
        for (unsigned i = 0; i < started; i++) {
                pthread_join(workers[i].thread, NULL);
                s3_client_free(workers[i].src);
                s3_client_free(workers[i].dst);
        }
        free(m.queue);
        pthread_mutex_destroy(&m.lock);
        pthread_cond_destroy(&m.work);
        pthread_cond_destroy(&m.space);
        pthread_cond_destroy(&m.progress_cond);
        if (progress) {
                progress->objects_done = m.stats.copied + m.stats.skipped + m.stats.failed;
                progress_flush(progress);
        }
        if (ret_stats)
                *ret_stats = m.stats;

        if (r < 0)
                return r;
        if (job_cancel_requested) {
                free(m.first_error);
                return err_set(-ECANCELED, EX_TEMPFAIL, "job mirror was cancelled");
        }
        if (m.first_error) {
                _cleanup_free_ char *msg = m.first_error;
                if (m.stats.failed > 0)
                        return err_set(-EIO, m.first_exit ?: EX_UNAVAILABLE,
                                       "%" PRIu64 " objects could not be mirrored (all others were); first: %s",
                                       m.stats.failed, msg);
                return err_set(m.first_errno, m.first_exit ?: EX_UNAVAILABLE, "%s", msg);
        }
        return 0;
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
