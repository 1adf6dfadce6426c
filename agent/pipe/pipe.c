/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "log/log.h"
#include "pipe/pipe.h"

#define PUMP_BUFFER_SIZE (256 * 1024)
#define PIPE_SIZE (1024 * 1024)

/* Reads straight into the buffer the sink lends (e.g. age's plaintext round): no copy, no buffer here. */
static int pipe_pump_direct(Source *from, Sink *to) {
        for (;;) {
                void *buf;
                size_t n;
                ssize_t k;
                int r;

                r = sink_buffer(to, &buf, &n);
                if (r < 0)
                        return r;
                k = source_read(from, buf, n);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        break;
                r = sink_commit(to, (size_t) k);
                if (r < 0)
                        return r;
        }
        return sink_finish(to);
}

/* Writes straight from the memory the source lends (e.g. age's opened round): no copy, no buffer here. */
static int pipe_pump_lent(Source *from, Sink *to) {
        for (;;) {
                const void *buf;
                ssize_t k = source_lend(from, &buf, SIZE_MAX);
                int r;

                if (k < 0)
                        return (int) k;
                if (k == 0)
                        break;
                r = sink_write(to, buf, (size_t) k);
                if (r < 0)
                        return r;
        }
        return sink_finish(to);
}

int pipe_pump(Source *from, Sink *to) {
        _cleanup_free_ uint8_t *buf = NULL;

        if (from->lend)
                return pipe_pump_lent(from, to);
        if (to->buffer)
                return pipe_pump_direct(from, to);
        buf = xmalloc(PUMP_BUFFER_SIZE);
        for (;;) {
                ssize_t k = source_read(from, buf, PUMP_BUFFER_SIZE);
                int r;

                if (k < 0)
                        return (int) k;
                if (k == 0)
                        break;
                r = sink_write(to, buf, (size_t) k);
                if (r < 0)
                        return r;
        }
        return sink_finish(to);
}

/* --- digest --- */

typedef struct DigestStage {
        union {
                Sink sink;
                Source source;
        };
        EVP_MD_CTX *md;
        Digest *out;
} DigestStage;

static void digest_init(DigestStage *d, Digest *out) {
        d->md = EVP_MD_CTX_new();
        if (!d->md || EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1)
                abort();
        d->out = out;
        *out = (Digest){};
}

static void digest_update(DigestStage *d, const void *buf, size_t n) {
        EVP_DigestUpdate(d->md, buf, n);
        d->out->bytes += n;
}

static void digest_final(DigestStage *d) {
        unsigned int len = 0;

        if (d->out->done)
                return;
        EVP_DigestFinal_ex(d->md, d->out->sha256, &len);
        for (unsigned i = 0; i < 32; i++)
                snprintf(d->out->sha256_hex + 2 * i, 3, "%02x", d->out->sha256[i]);
        d->out->done = true;
}

static int digest_sink_write(Sink *s, const void *buf, size_t n) {
        DigestStage *d = (DigestStage *) s;
        digest_update(d, buf, n);
        return sink_write(s->next, buf, n);
}

static int digest_sink_finish(Sink *s) {
        digest_final((DigestStage *) s);
        return sink_finish(s->next);
}

static void digest_stage_free_sink(Sink *s) {
        EVP_MD_CTX_free(((DigestStage *) s)->md);
        free(s);
}

Sink *sink_digest_new(Sink *next, Digest *ret) {
        DigestStage *d = xcalloc(1, sizeof *d);
        digest_init(d, ret);
        d->sink = (Sink){ .write = digest_sink_write, .finish = digest_sink_finish,
                          .free = digest_stage_free_sink, .next = next };
        return &d->sink;
}

static ssize_t digest_source_read(Source *s, void *buf, size_t n) {
        DigestStage *d = (DigestStage *) s;
        ssize_t k = source_read(s->upstream, buf, n);

        if (k > 0)
                digest_update(d, buf, (size_t) k);
        else if (k == 0)
                digest_final(d);
        return k;
}

static void digest_stage_free_source(Source *s) {
        EVP_MD_CTX_free(((DigestStage *) s)->md);
        free(s);
}

Source *source_digest_new(Source *upstream, Digest *ret) {
        DigestStage *d = xcalloc(1, sizeof *d);
        digest_init(d, ret);
        d->source = (Source){ .read = digest_source_read, .free = digest_stage_free_source, .upstream = upstream };
        return &d->source;
}

/* --- fd ends (the store's are in store-ends.c, so a program using only these does not link the store) --- */

typedef struct FdEnd {
        union {
                Sink sink;
                Source source;
        };
        int fd;
} FdEnd;

static int fd_sink_finish(Sink *s) {
        return 0;
}

static void free_plain_sink(Sink *s) {
        free(s);
}

static int fd_sink_write(Sink *s, const void *buf, size_t n) {
        return write_full(((FdEnd *) s)->fd, buf, n);
}

/* A pipe's default 64 KiB means a context switch per 64 KiB between the two processes; 1 MiB lets both
 * sides move large blocks. Best effort: the pipe stays as it is when the user's pipe quota is used up. */
static void fd_grow_pipe(int fd) {
        struct stat st;

        if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))
                return;
        if (fcntl(fd, F_GETPIPE_SZ) < PIPE_SIZE)
                (void) fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE);
}

Sink *sink_fd_new(int fd) {
        FdEnd *e = xcalloc(1, sizeof *e);
        e->sink = (Sink){ .write = fd_sink_write, .finish = fd_sink_finish, .free = free_plain_sink };
        e->fd = fd;
        fd_grow_pipe(fd);
        return &e->sink;
}

static ssize_t fd_source_read(Source *s, void *buf, size_t n) {
        for (;;) {
                ssize_t k = read(((FdEnd *) s)->fd, buf, n);
                if (k >= 0)
                        return k;
                if (errno != EINTR)
                        return -errno;
        }
}

static void free_plain_source(Source *s) {
        free(s);
}

Source *source_fd_new(int fd) {
        FdEnd *e = xcalloc(1, sizeof *e);
        e->source = (Source){ .read = fd_source_read, .free = free_plain_source };
        e->fd = fd;
        fd_grow_pipe(fd);
        return &e->source;
}
