/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "shared/stream.h"
#include "shared/util.h"
#include "store/store.h"

/* Streaming stages on the Sink and Source of shared/stream.h. Buffers are fixed-size, so memory does not
 * depend on how much flows through. */

/* SHA-256 and byte count of what passes through. */
typedef struct Digest {
        uint64_t bytes;
        uint8_t sha256[32];
        char sha256_hex[65];
        bool done;
} Digest;

/* The digest is filled in when the sink finishes / the source reaches its end. */
Sink *sink_digest_new(Sink *next, Digest *ret);
Source *source_digest_new(Source *upstream, Digest *ret);

/* zstd; threads = 0 means single-threaded. Frames carry a content checksum. */
Sink *sink_zstd_new(Sink *next, int level, int threads, int *ret_error);
/* The workers for compression_threads = configured: configured, or for 0 one per CPU but at most
 * ZSTD_THREADS_DEFAULT_MAX (each worker holds its own buffers: memory must not grow with a big node). */
#define ZSTD_THREADS_DEFAULT_MAX 4
int zstd_threads(unsigned configured);
int zstd_threads_for(unsigned configured, long cpus); /* the same for a node with cpus CPUs */
Source *source_zstd_new(Source *upstream);

/* age v1 (X25519 recipients "age1..."). On failure they return NULL and leave next/upstream to the
 * caller. The sink writes nothing until the first write or finish; the source reads and checks the
 * header (identity, MAC) before it returns, and releases plaintext only chunk by authenticated chunk. */
Sink *sink_age_new(Sink *next, char *const *recipients, int *ret_error);
Source *source_age_new(Source *upstream, const char *identity_file, int *ret_error);

/* Ends of the pipe. The store sink writes to an open writer but does not commit it; the caller commits
 * once everything checked out. */
Sink *sink_store_new(StoreWriter *w);
Sink *sink_fd_new(int fd); /* does not close fd */
Source *source_store_new(StoreReader *r); /* takes ownership of r */
Source *source_fd_new(int fd);            /* does not close fd */

/* Pumps a source into a sink until the end, then finishes the sink. */
int pipe_pump(Source *from, Sink *to);

/* In-memory ends, for small payloads (an encrypted Secrets export, one archive member). The sink
 * appends to a buffer that it wipes and frees with itself unless taken with sink_memory_take(); the
 * source reads from memory it does not own. */
Sink *sink_memory_new(void);
/* The same with room for capacity bytes reserved up front, for a size known in advance: no growth, so no
 * second copy while it grows. */
Sink *sink_memory_new_sized(size_t capacity);
void sink_memory_take(Sink *s, uint8_t **ret_data, size_t *ret_size);
Source *source_memory_new(const void *data, size_t size);

/* Counts what passes through and reports the running total to progress_update(). */
struct Progress;
Sink *sink_progress_new(Sink *next, struct Progress *p);
