/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the mirror copies, decided without copying: the two sides and their buckets (and which bucket names
 * may cross), which keys, which metadata a copy carries, whether a listed object needs a copy, and the
 * summary line. */
#include <fnmatch.h>
#include <inttypes.h>
#include <sysexits.h>

#include "jobs/mirror.h"
#include "log/log.h"
#include "store/store.h"

bool mirror_key_selected(char *const *include, char *const *exclude, const char *bucket, const char *key) {
        _cleanup_free_ char *full = xasprintf("%s/%s", strempty(bucket), key);
        bool in = strv_isempty(include);

        for (char *const *p = include; p && *p && !in; p++)
                in = fnmatch(*p, key, 0) == 0 || fnmatch(*p, full, 0) == 0;
        if (!in)
                return false;
        for (char *const *p = exclude; p && *p; p++)
                if (fnmatch(*p, key, 0) == 0 || fnmatch(*p, full, 0) == 0)
                        return false;
        return true;
}

char **mirror_metadata(char *const *source_metadata, bool bookkeeping, const char *etag,
                       const char *sha256) {
        char **l = xcalloc(1, sizeof(char *));
        size_t size, etag_size, sha_size;

        for (size_t i = 0; source_metadata && source_metadata[i] && source_metadata[i + 1]; i += 2) {
                /* Our own names describe the copy we make now, not an older one. */
                if (startswith(source_metadata[i], META_PREFIX))
                        continue;
                strv_push(&l, xstrdup(source_metadata[i]));
                strv_push(&l, xstrdup(source_metadata[i + 1]));
        }
        if (!bookkeeping)
                return l;
        /* The ETag record is what later runs compare; the SHA-256 is only informative, so it goes
         * first when the two do not both fit in S3's limit. */
        size = store_metadata_size(l);
        etag_size = strlen(META_ETAG) + strlen(strempty(etag));
        sha_size = sha256 ? strlen(META_SHA256) + strlen(sha256) : 0;
        if (size + etag_size > STORE_METADATA_MAX)
                return l;
        strv_push(&l, xstrdup(META_ETAG));
        strv_push(&l, xstrdup(strempty(etag)));
        if (sha256 && size + etag_size + sha_size <= STORE_METADATA_MAX) {
                strv_push(&l, xstrdup(META_SHA256));
                strv_push(&l, xstrdup(sha256));
        }
        return l;
}

char *mirror_version(const char *etag, uint64_t size, uint64_t mtime_usec) {
        if (!isempty(etag))
                return xstrdup(etag);
        return xasprintf("size-%" PRIu64 "-mtime-%" PRIu64, size, mtime_usec);
}

unsigned mirror_etag_parts(const char *etag) {
        const char *dash;
        uint64_t n;

        if (!etag || !(dash = strchr(etag, '-')) || dash - etag != 32)
                return 0;
        for (const char *p = etag; p < dash; p++)
                if (!strchr("0123456789abcdefABCDEF", *p))
                        return 0;
        if (!dash[1] || dash[1] == '0' || strspn(dash + 1, "0123456789") != strlen(dash + 1) ||
            parse_uint64(dash + 1, &n) < 0 || n > 10000)
                return 0;
        return (unsigned) n;
}

bool mirror_part_layout_valid(uint64_t size, uint64_t part_size, unsigned n) {
        const uint64_t min = 5ULL * 1024 * 1024, max = 5ULL * 1024 * 1024 * 1024;

        if (n == 0 || n > 10000 || size == 0 || part_size == 0 || part_size > max)
                return false;
        if (n > 1 && part_size < min)
                return false;
        return (size - 1) / part_size + 1 == n;
}

MirrorDecision mirror_decide(const MirrorEntry *s, const MirrorEntry *d) {
        _cleanup_free_ char *version = NULL;

        if (!d || d->size != s->size)
                return MIRROR_COPY;
        version = mirror_version(s->etag, s->size, s->mtime_usec);
        if (d->etag && streq(version, d->etag))
                return MIRROR_SKIP;
        /* A side without an ETag, compared by time in seconds (S3 gives Last-Modified in seconds). A local
         * copy that could keep no ETag (no extended attributes) carries the source's time: current when
         * the times match. A local source file that carries none: a copy made after the second it last
         * changed is current (rsync's rule); within that second the recorded version decides. */
        if (!d->etag && s->mtime_usec > 0 && d->mtime_usec / USEC_PER_SEC == s->mtime_usec / USEC_PER_SEC)
                return MIRROR_SKIP;
        if (d->etag && !s->etag && d->mtime_usec / USEC_PER_SEC > s->mtime_usec / USEC_PER_SEC)
                return MIRROR_SKIP;
        return MIRROR_CHECK;
}

void mirror_stats_print(const MirrorStats *s, bool dry_run, FILE *f) {
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX], d[FORMAT_BYTES_MAX];

        fprintf(f,
                "%s %" PRIu64 " objects (%s), skipped %" PRIu64 " (%s), %s %" PRIu64 " (%s), failed %" PRIu64
                ", kept %" PRIu64 " extra",
                dry_run ? "would copy" : "copied", s->copied, format_bytes(s->copied_bytes, a, sizeof a),
                s->skipped, format_bytes(s->skipped_bytes, b, sizeof b),
                dry_run ? "would delete" : "deleted", s->deleted,
                format_bytes(s->deleted_bytes, d, sizeof d), s->failed, s->kept);
        if (s->vanished > 0)
                fprintf(f, ", skipped %" PRIu64 " vanished at the source", s->vanished);
        if (s->unrepresentable > 0)
                fprintf(f, ", skipped %" PRIu64 " key(s) the destination cannot hold", s->unrepresentable);
        if (s->refused_buckets > 0)
                fprintf(f, ", refused %" PRIu64 " bucket(s)", s->refused_buckets);
        fputc('\n', f);
}

/* ---- setup ---- */

/* The two sides as sets of buckets: the source (a remote, or a directory whose subdirectories are the
 * buckets) and the destination location, whose prefixes or subdirectories hold one bucket each. */
int mirror_resolve(const Config *c, StoreRoot **ret_source, StoreRoot **ret_offsite) {
        const MirrorConfig *mc = &c->mirror;
        _cleanup_(store_root_freep) StoreRoot *source = NULL, *offsite = NULL;
        _cleanup_(location_done) Location loc = {};
        int r;

        if (mc->source && mc->source[0] == '/')
                r = store_root_local_open(mc->source, &source);
        else if (!config_find_remote(c, mc->source))
                return err_set(-ENOENT, EX_CONFIG,
                               "[mirror] source = %s names no remote; add a [remote.%s] section, or give an "
                               "absolute directory",
                               strna(mc->source), strna(mc->source));
        else
                r = store_s3_root_open(config_find_remote(c, mc->source), NULL, NULL, &source);
        if (r < 0)
                return r;
        r = location_parse(mc->destination, &loc);
        if (r < 0)
                return err_set(r, EX_CONFIG, "[mirror] destination: %s", strna(err_message()));
        if (loc.type == LOCATION_REMOTE && !config_find_remote(c, loc.remote))
                return err_set(-ENOENT, EX_CONFIG, "[mirror] destination %s names no remote; add a [remote.%s] section",
                               mc->destination, loc.remote);
        r = store_root_open_location(c, mc->destination, &offsite);
        if (r < 0)
                return r;
        *ret_source = TAKE_PTR(source);
        *ret_offsite = TAKE_PTR(offsite);
        return 0;
}

/* A bucket name from a listing (or the command line) becomes a bucket, prefix or directory on the other
 * side: only valid S3 bucket names, which are one path segment and no "." or "..", may. */
int mirror_bucket_check(const MirrorOptions *o, StoreRoot *src, StoreRoot *dst, const char *bucket) {
        _cleanup_free_ char *what = NULL;

        if (location_bucket_name_valid(bucket))
                return 0;
        what = store_root_describe_bucket(src, bucket);
        if (o->direction == MIRROR_FORWARD)
                return err_set(-EINVAL, EX_DATAERR,
                               "%s is not a valid S3 bucket name (3..63 lowercase letters, digits, '.' and '-', "
                               "starting and ending with a letter or digit, no \"..\"), so it cannot become a "
                               "prefix under %s; it is not mirrored (rename it, or list the buckets to mirror "
                               "in [mirror] buckets)",
                               what, dst->location);
        return err_set(-EINVAL, EX_DATAERR,
                       "%s is not named like a valid S3 bucket (3..63 lowercase letters, digits, '.' and '-', "
                       "starting and ending with a letter or digit, no \"..\"); it is not restored into %s "
                       "(move or remove it offsite, or restore single buckets with --bucket)",
                       what, dst->what);
}

int mirror_buckets(const Config *c, const MirrorOptions *o, StoreRoot *src, char ***ret) {
        if (o->bucket || c->mirror.buckets) {
                _cleanup_strv_free_ char **l = xcalloc(1, sizeof(char *));
                if (o->bucket)
                        strv_push(&l, xstrdup(o->bucket));
                else
                        STRV_FOREACH(b, c->mirror.buckets)
                                strv_push(&l, xstrdup(*b));
                *ret = TAKE_PTR(l);
                return 0;
        }
        return store_root_list_buckets(src, ret);
}
