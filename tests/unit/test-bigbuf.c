/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdint.h>

#include "pipe/bigbuf.h"
#include "shared/util.h"

/* The flags line of the mapping that holds p, from /proc/self/smaps ("" if none). */
static char *vma_flags(const void *p) {
        _cleanup_(fclosep) FILE *f = fopen("/proc/self/smaps", "re");
        char line[512];
        bool in = false;

        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
                uintptr_t start, end;
                /* A mapping's first line: "start-end perms ..." */
                if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &start, &end) == 2) {
                        in = (uintptr_t) p >= start && (uintptr_t) p < end;
                        continue;
                }
                if (in && startswith(line, "VmFlags:"))
                        return xstrdup(line);
        }
        return xstrdup("");
}

static bool thp_mode_is(const char *mode) {
        _cleanup_(fclosep) FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
        char line[128], want[32];

        if (!f || !fgets(line, sizeof line, f))
                return false;
        snprintf(want, sizeof want, "[%s]", mode);
        return strstr(line, want);
}

/* Blocks start on a 2 MiB boundary (so the kernel can back them with huge pages), are marked for huge pages
 * and hold every byte asked for. */
static void bigbuf_is_aligned_and_marked(void **state) {
        static const size_t sizes[] = { 0, 1, 4096, 3 * 1024 * 1024 + 384, 2 * BIGBUF_ALIGN };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                uint8_t *p = bigbuf_alloc(sizes[i]);
                _cleanup_free_ char *flags = NULL;

                assert_non_null(p);
                assert_int_equal((uintptr_t) p % BIGBUF_ALIGN, 0);
                memset(p, 0xa5, sizes[i]);
                if (sizes[i] > 0)
                        assert_int_equal(p[sizes[i] - 1], 0xa5);
                flags = vma_flags(p);
                assert_non_null(strstr(flags, " rd wr"));
                /* "hg": MADV_HUGEPAGE took (the kernel ignores it where huge pages are off). */
                if (!thp_mode_is("never"))
                        assert_non_null(strstr(flags, " hg"));
                bigbuf_free(p, sizes[i], sizes[i]);
        }
        bigbuf_free(NULL, 100, 100);
}

/* Two blocks do not overlap. */
static void bigbuf_blocks_are_separate(void **state) {
        uint8_t *a = bigbuf_alloc(BIGBUF_ALIGN + 1), *b = bigbuf_alloc(BIGBUF_ALIGN + 1);

        assert_true(a + BIGBUF_ALIGN + 1 <= b || b + BIGBUF_ALIGN + 1 <= a);
        memset(a, 1, BIGBUF_ALIGN + 1);
        memset(b, 2, BIGBUF_ALIGN + 1);
        assert_int_equal(a[BIGBUF_ALIGN], 1);
        assert_int_equal(b[0], 2);
        bigbuf_free(a, BIGBUF_ALIGN + 1, BIGBUF_ALIGN + 1);
        bigbuf_free(b, BIGBUF_ALIGN + 1, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(bigbuf_is_aligned_and_marked),
                cmocka_unit_test(bigbuf_blocks_are_separate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
