/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The store's ends of the pipe, apart from pipe.c, so that a program that only pumps between its own ends
 * (tests/helpers/age-tool) does not link the store, and with it every library of the agent. */
#include "pipe/pipe.h"

typedef struct StoreSink {
        Sink sink;
        StoreWriter *w;
} StoreSink;

static int store_sink_write(Sink *s, const void *buf, size_t n) {
        return store_write(((StoreSink *) s)->w, buf, n);
}

static int store_sink_finish(Sink *s) {
        return 0;
}

static void store_sink_free(Sink *s) {
        free(s);
}

Sink *sink_store_new(StoreWriter *w) {
        StoreSink *s = xcalloc(1, sizeof *s);
        s->sink = (Sink){ .write = store_sink_write, .finish = store_sink_finish, .free = store_sink_free };
        s->w = w;
        return &s->sink;
}

typedef struct StoreSource {
        Source source;
        StoreReader *r;
} StoreSource;

static ssize_t store_source_read(Source *s, void *buf, size_t n) {
        return store_read(((StoreSource *) s)->r, buf, n);
}

static void store_source_free(Source *s) {
        store_reader_free(((StoreSource *) s)->r);
        free(s);
}

Source *source_store_new(StoreReader *r) {
        StoreSource *s = xcalloc(1, sizeof *s);
        s->source = (Source){ .read = store_source_read, .free = store_source_free };
        s->r = r;
        return &s->source;
}
