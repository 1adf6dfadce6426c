/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "shared/util.h"

/* Whether a tar name from BASE_BACKUP is one we store: "base.tar" or "OID.tar". */
bool basebackup_archive_name_valid(const char *name);
