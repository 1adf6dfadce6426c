/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "shared/stream.h"

/* A sink whose downstream runs on a thread of its own, behind a bounded queue of n_buffers buffers of
 * buffer_size bytes: the producer (walking, reading and tarring files) and the consumer (compressing,
 * encrypting, hashing, storing) overlap, as `tar | zstd` does in two processes. Memory is fixed:
 * n_buffers * buffer_size. Writes copy into the current buffer and block only when all are full.
 *
 * The downstream is only ever used by that thread, finish included. A failure downstream comes back (with
 * its message) from the next write or from finish. Freeing an unfinished sink stops the thread and frees
 * the downstream without finishing it, so an aborted stream never looks complete. Returns NULL (and leaves
 * next to the caller) when the thread cannot start. */
Sink *sink_thread_new(Sink *next, size_t buffer_size, unsigned n_buffers, int *ret_error);
