/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "sys/fs.h"

/* Runs a test twice in one cmocka group (one TAP plan): with openat2(), and as on a kernel without it (one
 * openat(O_NOFOLLOW) per component). The test file defines setup() and teardown(); FS_MODES_SETUPS defines
 * the two setups that pick the mode and then call setup(). */
#define FS_MODES_SETUPS                                                                                      \
        static int setup_openat2(void **state) {                                                             \
                fs_use_openat2(true);                                                                        \
                return setup(state);                                                                         \
        }                                                                                                    \
        static int setup_walk(void **state) {                                                                \
                fs_use_openat2(false);                                                                       \
                return setup(state);                                                                         \
        }

#define BOTH_WAYS(f)                                                                                         \
        { .name = #f " (openat2)", .test_func = f, .setup_func = setup_openat2, .teardown_func = teardown },  \
        {                                                                                                    \
                .name = #f " (openat walk)", .test_func = f, .setup_func = setup_walk,                       \
                .teardown_func = teardown                                                                    \
        }
