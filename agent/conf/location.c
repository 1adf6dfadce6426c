/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <sysexits.h>

#include "log/log.h"
#include "conf/location.h"

/* Remote names come from "[remote.NAME]" section headers, which iniparser lowercases: a location naming
 * "MinIO" could never match, so only the lowercase form is accepted. */
bool location_remote_name_valid(const char *name) {
        size_t n = strlen(name);

        if (n < 1 || n > 63 || !isalnum((unsigned char) name[0]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!islower((unsigned char) name[i]) && !isdigit((unsigned char) name[i]) &&
                    name[i] != '-' && name[i] != '_')
                        return false;
        return true;
}

/* S3 bucket naming rules: 3..63 characters of lowercase letters, digits, dots and hyphens, starting and
 * ending with a letter or digit, no "..". */
bool location_bucket_name_valid(const char *name) {
        size_t n = strlen(name);

        if (n < 3 || n > 63)
                return false;
        if (!isalnum((unsigned char) name[0]) || !isalnum((unsigned char) name[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!islower((unsigned char) c) && !isdigit((unsigned char) c) && c != '.' && c != '-')
                        return false;
        }
        return !strstr(name, "..");
}

static int prefix_check(const char *location, const char *prefix) {
        const char *p = prefix;

        while (*p) {
                size_t k = strcspn(p, "/");
                if (k == 0)
                        return err_set(-EINVAL, EX_CONFIG,
                                       "location '%s' has an empty path segment ('//' or a leading '/' "
                                       "after the bucket); write REMOTE:bucket/prefix/",
                                       location);
                if ((k == 1 && p[0] == '.') || (k == 2 && p[0] == '.' && p[1] == '.'))
                        return err_set(-EINVAL, EX_CONFIG,
                                       "location '%s' contains a '.' or '..' segment, which S3 keeps "
                                       "literally; write the prefix without it",
                                       location);
                p += k;
                if (*p == '/')
                        p++;
        }
        return 0;
}

static int location_parse_remote(const char *s, const char *colon, Location *ret) {
        _cleanup_free_ char *remote = xstrndup(s, (size_t) (colon - s));
        _cleanup_free_ char *bucket = NULL, *prefix = NULL;
        const char *rest = colon + 1, *slash;
        int r;

        if (!location_remote_name_valid(remote))
                return err_set(-EINVAL, EX_CONFIG,
                               "location '%s': '%s' is not a remote name (lowercase letters, digits, '-' "
                               "and '_', "
                               "as in [remote.NAME]); write REMOTE:bucket/prefix or an absolute path",
                               s, remote);

        slash = strchr(rest, '/');
        bucket = slash ? xstrndup(rest, (size_t) (slash - rest)) : xstrdup(rest);
        if (isempty(bucket))
                return err_set(-EINVAL, EX_CONFIG, "location '%s' names no bucket; write %s:BUCKET/prefix/",
                               s, remote);
        if (!location_bucket_name_valid(bucket))
                return err_set(-EINVAL, EX_CONFIG,
                               "location '%s': '%s' is not a valid bucket name (3..63 characters: lowercase "
                               "letters, digits, '.' and '-', starting and ending with a letter or digit)",
                               s, bucket);

        if (slash && slash[1]) {
                r = prefix_check(s, slash + 1);
                if (r < 0)
                        return r;
                prefix = endswith(slash + 1, "/") ? xstrdup(slash + 1) : xasprintf("%s/", slash + 1);
        } else
                prefix = xstrdup("");

        *ret = (Location) {
                .type = LOCATION_REMOTE,
                .remote = TAKE_PTR(remote),
                .bucket = TAKE_PTR(bucket),
                .prefix = TAKE_PTR(prefix),
        };
        return 0;
}

int location_parse(const char *s, Location *ret) {
        const char *colon;

        if (isempty(s))
                return err_set(-EINVAL, EX_CONFIG,
                               "empty location; write REMOTE:bucket/prefix or an absolute local path");

        if (s[0] == '/') {
                char *path = xstrdup(s);
                size_t n = strlen(path);

                /* "/srv/backups/" and "/srv/backups" are the same directory; keep "/" itself. */
                while (n > 1 && path[n - 1] == '/')
                        path[--n] = 0;
                *ret = (Location) { .type = LOCATION_LOCAL, .path = path };
                return 0;
        }

        if (strstr(s, "://"))
                return err_set(-EINVAL, EX_CONFIG,
                               "location '%s' is a URL; define a [remote.NAME] section with endpoint = ... "
                               "and write NAME:bucket/prefix",
                               s);

        colon = strchr(s, ':');
        if (!colon)
                return err_set(-EINVAL, EX_CONFIG,
                               "location '%s' is neither REMOTE:bucket/prefix nor an absolute path (a local "
                               "directory must start with '/')",
                               s);

        return location_parse_remote(s, colon, ret);
}

void location_done(Location *l) {
        if (!l)
                return;
        free(l->path);
        free(l->remote);
        free(l->bucket);
        free(l->prefix);
        *l = (Location) {};
}
