/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>

#include "pipe/pipe.h"

#define PUMP_BUFFER_SIZE (128 * 1024)

int sink_write(Sink *s, const void *buf, size_t n) {
        return n == 0 ? 0 : s->write(s, buf, n);
}

int sink_finish(Sink *s) {
        return s->finish(s);
}

void sink_free(Sink *s) {
        if (s)
                s->free(s);
}

ssize_t source_read(Source *s, void *buf, size_t n) {
        return s->read(s, buf, n);
}

void source_free(Source *s) {
        if (s)
                s->free(s);
}

int pipe_pump(Source *from, Sink *to) {
        _cleanup_free_ uint8_t *buf = xmalloc(PUMP_BUFFER_SIZE);

        for (;;) {
                ssize_t n = source_read(from, buf, PUMP_BUFFER_SIZE);
                int r;

                if (n < 0)
                        return (int) n;
                if (n == 0)
                        break;
                r = sink_write(to, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
        return sink_finish(to);
}

typedef struct FdSink {
        Sink base;
        int fd;
} FdSink;

static int fd_sink_write(Sink *s, const void *buf, size_t n) {
        return write_full(((FdSink *) s)->fd, buf, n);
}

static int fd_sink_finish(Sink *s) {
        return 0;
}

static void fd_sink_free(Sink *s) {
        free(s);
}

Sink *sink_fd_new(int fd) {
        FdSink *s = xcalloc(1, sizeof *s);

        s->base = (Sink){ .write = fd_sink_write, .finish = fd_sink_finish, .free = fd_sink_free };
        s->fd = fd;
        return &s->base;
}

typedef struct FdSource {
        Source base;
        int fd;
} FdSource;

static ssize_t fd_source_read(Source *s, void *buf, size_t n) {
        for (;;) {
                ssize_t k = read(((FdSource *) s)->fd, buf, n);
                if (k >= 0 || errno != EINTR)
                        return k < 0 ? -errno : k;
        }
}

static void fd_source_free(Source *s) {
        free(s);
}

Source *source_fd_new(int fd) {
        FdSource *s = xcalloc(1, sizeof *s);

        s->base = (Source){ .read = fd_source_read, .free = fd_source_free };
        s->fd = fd;
        return &s->base;
}
