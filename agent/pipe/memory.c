/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <openssl/crypto.h>

#include "pipe/pipe.h"
#include "sys/progress.h"

typedef struct MemorySink {
        Sink sink;
        uint8_t *data;
        size_t size, allocated;
} MemorySink;

static int memory_sink_write(Sink *s, const void *buf, size_t n) {
        MemorySink *m = (MemorySink *) s;

        if (m->size + n > m->allocated) {
                /* Grow by copying, so no plaintext is left behind in a block realloc() released. */
                size_t a = m->allocated * 2 > m->size + n ? m->allocated * 2 : m->size + n;
                uint8_t *d = xmalloc(a);
                if (m->size > 0)
                        memcpy(d, m->data, m->size);
                if (m->data)
                        OPENSSL_cleanse(m->data, m->allocated);
                free(m->data);
                m->data = d;
                m->allocated = a;
        }
        memcpy(m->data + m->size, buf, n);
        m->size += n;
        return 0;
}

static int memory_sink_finish(Sink *s) {
        return 0;
}

static void memory_sink_free(Sink *s) {
        MemorySink *m = (MemorySink *) s;

        if (m->data)
                OPENSSL_cleanse(m->data, m->allocated);
        free(m->data);
        free(m);
}

Sink *sink_memory_new(void) {
        MemorySink *m = xcalloc(1, sizeof *m);
        m->sink = (Sink){ .write = memory_sink_write, .finish = memory_sink_finish,
                          .free = memory_sink_free };
        return &m->sink;
}

Sink *sink_memory_new_sized(size_t capacity) {
        MemorySink *m = (MemorySink *) sink_memory_new();

        if (capacity > 0) {
                m->data = xmalloc(capacity);
                m->allocated = capacity;
        }
        return &m->sink;
}

void sink_memory_take(Sink *s, uint8_t **ret_data, size_t *ret_size) {
        MemorySink *m = (MemorySink *) s;

        *ret_data = m->data ?: xmalloc(1);
        *ret_size = m->size;
        m->data = NULL;
        m->size = m->allocated = 0;
}

typedef struct MemorySource {
        Source source;
        const uint8_t *data;
        size_t size, pos;
} MemorySource;

static ssize_t memory_source_read(Source *s, void *buf, size_t n) {
        MemorySource *m = (MemorySource *) s;
        size_t k = n < m->size - m->pos ? n : m->size - m->pos;

        memcpy(buf, m->data + m->pos, k);
        m->pos += k;
        return (ssize_t) k;
}

static void memory_source_free(Source *s) {
        free(s);
}

Source *source_memory_new(const void *data, size_t size) {
        MemorySource *m = xcalloc(1, sizeof *m);
        m->source = (Source){ .read = memory_source_read, .free = memory_source_free };
        m->data = data;
        m->size = size;
        return &m->source;
}

typedef struct ProgressSink {
        Sink sink;
        Progress *progress;
} ProgressSink;

static int progress_sink_write(Sink *s, const void *buf, size_t n) {
        ProgressSink *p = (ProgressSink *) s;

        progress_update(p->progress, p->progress->done + n);
        return sink_write(s->next, buf, n);
}

static int progress_sink_finish(Sink *s) {
        return sink_finish(s->next);
}

static void progress_sink_free(Sink *s) {
        free(s);
}

Sink *sink_progress_new(Sink *next, Progress *progress) {
        ProgressSink *p = xcalloc(1, sizeof *p);
        p->sink = (Sink){ .write = progress_sink_write, .finish = progress_sink_finish,
                          .free = progress_sink_free, .next = next };
        p->progress = progress;
        return &p->sink;
}
