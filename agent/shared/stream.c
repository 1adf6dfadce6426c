/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>

#include "shared/stream.h"

int sink_write(Sink *s, const void *buf, size_t n) {
        if (n == 0)
                return 0;
        return s->write(s, buf, n);
}

int sink_finish(Sink *s) {
        return s->finish(s);
}

int sink_buffer(Sink *s, void **ret_buf, size_t *ret_size) {
        if (!s->buffer)
                return -EOPNOTSUPP;
        return s->buffer(s, ret_buf, ret_size);
}

int sink_commit(Sink *s, size_t n) {
        if (n == 0)
                return 0;
        return s->commit(s, n);
}

void sink_free(Sink *s) {
        if (!s)
                return;
        Sink *next = s->next;
        s->free(s);
        sink_free(next);
}

ssize_t source_read(Source *s, void *buf, size_t n) {
        return s->read(s, buf, n);
}

ssize_t source_lend(Source *s, const void **ret_buf, size_t n) {
        if (!s->lend)
                return -EOPNOTSUPP;
        return s->lend(s, ret_buf, n);
}

void source_free(Source *s) {
        if (!s)
                return;
        Source *up = s->upstream;
        s->free(s);
        source_free(up);
}
