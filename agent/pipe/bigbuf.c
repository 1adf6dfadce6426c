/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <openssl/crypto.h>
#include <stdint.h>
#include <sys/mman.h>

#include "pipe/bigbuf.h"
#include "shared/util.h"

static size_t bigbuf_length(size_t size) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        return ((size ?: 1) + page - 1) / page * page;
}

void *bigbuf_alloc(size_t size) {
        size_t len = bigbuf_length(size), head, tail;
        uint8_t *raw, *p;

        /* Over-allocate by one alignment unit and give back the ends, so the block starts on a boundary
         * the kernel can back with a huge page. A tail short of 2 MiB gets ordinary pages. */
        raw = mmap(NULL, len + BIGBUF_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) {
                fputs("skyforge-agent: out of memory\n", stderr);
                abort();
        }
        p = (uint8_t *) (((uintptr_t) raw + BIGBUF_ALIGN - 1) & ~(uintptr_t) (BIGBUF_ALIGN - 1));
        head = (size_t) (p - raw);
        tail = BIGBUF_ALIGN - head;
        if (head > 0)
                (void) munmap(raw, head);
        if (tail > 0)
                (void) munmap(p + len, tail);
        (void) madvise(p, len, MADV_HUGEPAGE); /* advice only: without huge pages it is ordinary memory */
        return p;
}

void bigbuf_free(void *p, size_t size, size_t used) {
        if (!p)
                return;
        if (used > 0)
                OPENSSL_cleanse(p, used);
        (void) munmap(p, bigbuf_length(size));
}
