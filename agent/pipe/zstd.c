/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <unistd.h>
#include <zstd.h>

#include "log/log.h"
#include "pipe/pipe.h"

/* Multi-threaded zstd keeps one job of input per worker in memory; 2 MiB jobs keep the whole pipe well
 * under 32 MiB while still giving each worker enough to compress well. */
#define ZSTD_JOB_SIZE (2 * 1024 * 1024)

typedef struct ZstdSink {
        Sink sink;
        ZSTD_CCtx *cctx;
        uint8_t *out;
        size_t out_size;
} ZstdSink;

static int zstd_error(size_t code, const char *what) {
        return err_setf(-EIO, "zstd %s failed: %s", what, ZSTD_getErrorName(code));
}

static int zstd_sink_push(ZstdSink *z, const void *buf, size_t n, ZSTD_EndDirective mode) {
        ZSTD_inBuffer in = { buf, n, 0 };

        for (;;) {
                ZSTD_outBuffer out = { z->out, z->out_size, 0 };
                size_t remaining = ZSTD_compressStream2(z->cctx, &out, &in, mode);
                int r;

                if (ZSTD_isError(remaining))
                        return zstd_error(remaining, "compression");
                if (out.pos > 0) {
                        r = sink_write(z->sink.next, z->out, out.pos);
                        if (r < 0)
                                return r;
                }
                if (mode == ZSTD_e_continue ? in.pos == in.size : remaining == 0)
                        return 0;
        }
}

static int zstd_sink_write(Sink *s, const void *buf, size_t n) {
        return zstd_sink_push((ZstdSink *) s, buf, n, ZSTD_e_continue);
}

static int zstd_sink_finish(Sink *s) {
        int r = zstd_sink_push((ZstdSink *) s, NULL, 0, ZSTD_e_end);
        if (r < 0)
                return r;
        return sink_finish(s->next);
}

static void zstd_sink_free(Sink *s) {
        ZstdSink *z = (ZstdSink *) s;
        ZSTD_freeCCtx(z->cctx);
        free(z->out);
        free(z);
}

int zstd_threads_for(unsigned configured, long cpus) {
        if (configured > 0)
                return (int) configured;
        return (int) MAX(MIN(cpus, (long) ZSTD_THREADS_DEFAULT_MAX), 1L);
}

int zstd_threads(unsigned configured) {
        return zstd_threads_for(configured, sysconf(_SC_NPROCESSORS_ONLN));
}

Sink *sink_zstd_new(Sink *next, int level, int threads, int *ret_error) {
        ZstdSink *z = xcalloc(1, sizeof *z);
        size_t e;

        z->sink = (Sink){ .write = zstd_sink_write, .finish = zstd_sink_finish, .free = zstd_sink_free,
                          .next = next };
        z->cctx = ZSTD_createCCtx();
        z->out_size = ZSTD_CStreamOutSize();
        z->out = xmalloc(z->out_size);
        if (!z->cctx)
                abort();
        e = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
        if (!ZSTD_isError(e))
                e = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1);
        if (!ZSTD_isError(e) && threads > 0) {
                /* A libzstd built without threads refuses nbWorkers; compress single-threaded then. */
                if (!ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, threads)))
                        e = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_jobSize, ZSTD_JOB_SIZE);
        }
        if (ZSTD_isError(e)) {
                *ret_error = zstd_error(e, "setup");
                z->sink.next = NULL;
                zstd_sink_free(&z->sink);
                return NULL;
        }
        return &z->sink;
}

typedef struct ZstdSource {
        Source source;
        ZSTD_DCtx *dctx;
        uint8_t *in;
        size_t in_size;
        ZSTD_inBuffer input;
        size_t last; /* last return of ZSTD_decompressStream: 0 at a frame end */
        bool eof;
        bool any;
} ZstdSource;

static ssize_t zstd_source_read(Source *s, void *buf, size_t n) {
        ZstdSource *z = (ZstdSource *) s;
        ZSTD_outBuffer out = { buf, n, 0 };

        while (out.pos == 0) {
                if (z->input.pos == z->input.size && !z->eof) {
                        ssize_t k = source_read(s->upstream, z->in, z->in_size);
                        if (k < 0)
                                return k;
                        if (k == 0)
                                z->eof = true;
                        else
                                z->any = true;
                        z->input = (ZSTD_inBuffer){ z->in, (size_t) k, 0 };
                }
                if (z->eof && z->input.pos == z->input.size) {
                        if (!z->any)
                                return err_setf(-EBADMSG, "compressed stream is empty");
                        if (z->last != 0)
                                return err_setf(-EBADMSG, "compressed stream is truncated");
                        return 0;
                }
                z->last = ZSTD_decompressStream(z->dctx, &out, &z->input);
                if (ZSTD_isError(z->last))
                        return err_setf(-EBADMSG, "compressed stream is corrupt: %s", ZSTD_getErrorName(z->last));
        }
        return (ssize_t) out.pos;
}

static void zstd_source_free(Source *s) {
        ZstdSource *z = (ZstdSource *) s;
        ZSTD_freeDCtx(z->dctx);
        free(z->in);
        free(z);
}

Source *source_zstd_new(Source *upstream) {
        ZstdSource *z = xcalloc(1, sizeof *z);

        z->source = (Source){ .read = zstd_source_read, .free = zstd_source_free, .upstream = upstream };
        z->dctx = ZSTD_createDCtx();
        if (!z->dctx)
                abort();
        z->in_size = ZSTD_DStreamInSize();
        z->in = xmalloc(z->in_size);
        return &z->source;
}
