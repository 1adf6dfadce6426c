/* SPDX-License-Identifier: GPL-2.0-or-later */
/* WAL file names: apart from replication.c (libpq) so that restore_command's helper, skyforge-wal-fetch,
 * links against libc alone. */
#include <ctype.h>

#include "pg/wal-name.h"

void pg_wal_file_name(uint32_t tli, uint64_t lsn, uint64_t segment_size,
                      char ret[static PG_WAL_FILE_NAME_LEN + 1]) {
        uint64_t segno = lsn / segment_size, per_id = UINT64_C(0x100000000) / segment_size;

        snprintf(ret, PG_WAL_FILE_NAME_LEN + 1, "%08X%08X%08X", tli, (unsigned) (segno / per_id),
                 (unsigned) (segno % per_id));
}

static int parse_hex8(const char *s, uint32_t *ret) {
        uint32_t v = 0;

        for (size_t i = 0; i < 8; i++) {
                char ch = s[i];
                if (!isxdigit((unsigned char) ch) || islower((unsigned char) ch))
                        return -EINVAL;
                v = v * 16 + (uint32_t) (isdigit((unsigned char) ch) ? ch - '0' : ch - 'A' + 10);
        }
        *ret = v;
        return 0;
}

int pg_wal_file_parse(const char *name, uint64_t segment_size, uint32_t *ret_tli, uint64_t *ret_lsn) {
        uint32_t tli, hi, lo;
        uint64_t per_id = UINT64_C(0x100000000) / segment_size;

        if (strlen(name) != PG_WAL_FILE_NAME_LEN || parse_hex8(name, &tli) < 0 ||
            parse_hex8(name + 8, &hi) < 0 || parse_hex8(name + 16, &lo) < 0 || tli == 0 || lo >= per_id)
                return -EINVAL;
        *ret_tli = tli;
        *ret_lsn = ((uint64_t) hi * per_id + lo) * segment_size;
        return 0;
}

int pg_history_file_parse(const char *name, uint32_t *ret_tli) {
        uint32_t tli;

        if (strlen(name) != 16 || !streq(name + 8, ".history") || parse_hex8(name, &tli) < 0 || tli == 0)
                return -EINVAL;
        *ret_tli = tli;
        return 0;
}
