/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stddef.h>

/* Working memory of a streaming stage that is megabytes large and touched for the whole stream (age's
 * rounds). It comes straight from the kernel, starts on a 2 MiB boundary and is marked for transparent
 * huge pages: then each whole 2 MiB of it costs one page fault instead of 512, and on a virtual machine
 * a fault can cost 20 us (age encrypting 1 GiB spent 15 ms faulting in 3 MiB of buffers). Where huge
 * pages are off or unavailable it is ordinary memory. Aborts when out of memory, like xmalloc(). */
#define BIGBUF_ALIGN ((size_t) 2 * 1024 * 1024)

void *bigbuf_alloc(size_t size);
/* Wipes the first used bytes (secrets) and returns the memory to the kernel; p may be NULL. */
void bigbuf_free(void *p, size_t size, size_t used);
