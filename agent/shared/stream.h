/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <sys/types.h>

#include "shared/util.h"

/* The two ends every streaming stage speaks (pipe/ builds the stages; the S3 client reads into a Sink and
 * uploads from a Source). A Sink takes bytes and pushes them downstream; a Source pulls bytes from
 * upstream. Stages own their downstream/upstream and free it with themselves. */

typedef struct Sink Sink;
struct Sink {
        int (*write)(Sink *s, const void *buf, size_t n);
        int (*finish)(Sink *s); /* flush all buffered data downstream and finish the downstream too */
        void (*free)(Sink *s);
        Sink *next;
        /* Optional, for a stage that would only copy what write() gets into a buffer of its own: buffer()
         * lends the producer the free space of that buffer (at least one byte), commit() takes the n bytes
         * put there, as write() would. Saves a copy (pipe_pump reads straight into it). */
        int (*buffer)(Sink *s, void **ret_buf, size_t *ret_size);
        int (*commit)(Sink *s, size_t n);
};

int sink_write(Sink *s, const void *buf, size_t n);
int sink_finish(Sink *s);
/* -EOPNOTSUPP unless the stage lends its buffer; use sink_write() then. */
int sink_buffer(Sink *s, void **ret_buf, size_t *ret_size);
int sink_commit(Sink *s, size_t n);
void sink_free(Sink *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Sink *, sink_free);

typedef struct Source Source;
struct Source {
        ssize_t (*read)(Source *s, void *buf, size_t n); /* 0 at end */
        void (*free)(Source *s);
        Source *upstream;
        /* Optional, for a stage that holds the bytes in memory anyway (age's opened round): like read(),
         * but instead of copying up to n bytes it points *ret_buf at them; they stay valid until the next
         * call on the source. Saves a copy (pipe_pump writes straight from it). */
        ssize_t (*lend)(Source *s, const void **ret_buf, size_t n);
};

ssize_t source_read(Source *s, void *buf, size_t n);
/* -EOPNOTSUPP unless the stage lends; use source_read() then. */
ssize_t source_lend(Source *s, const void **ret_buf, size_t n);
void source_free(Source *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Source *, source_free);
