/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stddef.h>

/* Names kept for later in an unnamed file (O_TMPFILE) in a scratch directory, so that memory does not grow
 * with their number and nothing is left behind: the mirror's deletes wait here until both listings were
 * read to their end. */
typedef struct Spool Spool;

int spool_new(const char *dir, Spool **ret); /* err_set() naming dir on failure */
int spool_add(Spool *s, const char *name);
/* From the first name again. */
int spool_rewind(Spool *s);
/* Up to max names into *ret (a strv); returns how many, 0 at the end. */
int spool_read(Spool *s, size_t max, char ***ret);
void spool_free(Spool *s);
