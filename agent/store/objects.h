/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "store/manifest.h"
#include "store/store.h"
#include "sys/progress.h"

/* Re-reads every object of a backup and compares it with the manifest: present, size, SHA-256. Each
 * problem found is appended to *problems (one line naming the object and what is wrong); checking goes on
 * after a damaged object, so one run reports all of them. Returns the number of problems, or a negative
 * errno (err_message() set) when the store itself failed (unreachable, I/O error): that says nothing about
 * the backup. only: the object names to check (NULL: all); p may be NULL. */
int backup_check_objects(Store *s, const Manifest *m, char *const *only, Progress *p, char ***problems);

/* The same for callers that only need yes/no: the first problem becomes the error (EX_DATAERR). */
int backup_verify_objects(Store *s, const Manifest *m, bool show_progress);
