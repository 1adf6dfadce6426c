/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "pipe/child.h"

typedef struct ChildSink {
        Sink sink;
        Child *child;
} ChildSink;

static int child_sink_write(Sink *s, const void *buf, size_t n) {
        return child_write_stdin(((ChildSink *) s)->child, buf, n);
}

static int child_sink_finish(Sink *s) {
        child_close_stdin(((ChildSink *) s)->child);
        return 0;
}

static void child_sink_free(Sink *s) {
        free(s);
}

Sink *sink_child_new(Child *c) {
        ChildSink *s = xcalloc(1, sizeof *s);
        s->sink = (Sink){ .write = child_sink_write, .finish = child_sink_finish, .free = child_sink_free };
        s->child = c;
        return &s->sink;
}
