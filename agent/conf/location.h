/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>

/* A location is "REMOTE:bucket/prefix" or an absolute local path. */
typedef enum LocationType {
        LOCATION_LOCAL,
        LOCATION_REMOTE,
} LocationType;

typedef struct Location {
        LocationType type;
        char *path;   /* LOCATION_LOCAL */
        char *remote; /* LOCATION_REMOTE */
        char *bucket;
        char *prefix; /* "" or ends with '/' */
} Location;

int location_parse(const char *s, Location *ret); /* -EINVAL with err_message() set */
void location_done(Location *l);
bool location_remote_name_valid(const char *name); /* as in [remote.NAME]: [a-z0-9][a-z0-9_-]{0,62} */
bool location_bucket_name_valid(const char *name); /* S3 rules: 3..63 of [a-z0-9.-] */
