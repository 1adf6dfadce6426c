/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "shared/util.h"

#define PG_WAL_SEGMENT_DEFAULT (UINT64_C(16) * 1024 * 1024)
/* "00000001000000000000000A": timeline, then segment number in two parts. */
#define PG_WAL_FILE_NAME_LEN 24

/* The WAL file name of the segment holding lsn on timeline tli. */
void pg_wal_file_name(uint32_t tli, uint64_t lsn, uint64_t segment_size,
                      char ret[static PG_WAL_FILE_NAME_LEN + 1]);
/* Parses a WAL file name (24 hex digits) into timeline and the segment's start LSN. */
int pg_wal_file_parse(const char *name, uint64_t segment_size, uint32_t *ret_tli, uint64_t *ret_lsn);
/* "00000002.history" -> 2. */
int pg_history_file_parse(const char *name, uint32_t *ret_tli);
