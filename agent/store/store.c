/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <sysexits.h>

#include "conf/conf.h"
#include "log/log.h"
#include "store/store.h"

void store_entry_done(StoreEntry *e) {
        free(e->name);
        free(e->etag);
        *e = (StoreEntry){};
}

Store *store_new(const StoreInterface *iface, const char *location, void *data) {
        Store *s = xcalloc(1, sizeof *s);
        s->iface = iface;
        s->location = xstrdup(location);
        s->data = data;
        return s;
}

/* The destructors keep the error slot: freeing on the way out of a failure (an uncommitted writer aborts its
 * upload, a reader cuts off its GET) must not replace the failure the caller is returning. */
void store_free(Store *s) {
        ERR_KEEP_SCOPE();

        if (!s)
                return;
        if (s->iface->done)
                s->iface->done(s);
        free(s->location);
        free(s);
}

const char *store_content_type(const char *name) {
        static const struct {
                const char *suffix, *type;
        } types[] = {
                { ".age", "application/age-encrypted" },
                { ".zst", "application/zstd" },
                { ".tar", "application/x-tar" },
                { ".json", "application/json" },
        };

        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (endswith(name, types[i].suffix))
                        return types[i].type;
        return NULL;
}

int store_writer_open(Store *s, const char *name, StoreWriter **ret) {
        const char *type = store_content_type(name);

        /* The same writer, with the Content-Type kept (S3: sent with the upload; local: user.skyforge.*). */
        if (type && s->iface->writer_open_with)
                return s->iface->writer_open_with(
                        s, name,
                        &(StoreWriteOptions){ .attrs = &(StoreAttrs){ .content_type = (char *) type },
                                              .size = STORE_SIZE_UNKNOWN },
                        ret);
        return s->iface->writer_open(s, name, ret);
}

int store_write(StoreWriter *w, const void *buf, size_t n) {
        return w->store->iface->writer_write(w, buf, n);
}

int store_writer_commit(StoreWriter *w) {
        return w->store->iface->writer_commit(w);
}

void store_writer_free(StoreWriter *w) {
        ERR_KEEP_SCOPE();

        if (!w)
                return;
        free(w->etag);
        w->etag = NULL;
        w->store->iface->writer_free(w);
}

int store_reader_open(Store *s, const char *name, uint64_t offset, StoreReader **ret) {
        return s->iface->reader_open(s, name, offset, ret);
}

ssize_t store_read(StoreReader *r, void *buf, size_t n) {
        return r->store->iface->reader_read(r, buf, n);
}

void store_reader_free(StoreReader *r) {
        ERR_KEEP_SCOPE();

        if (r)
                r->store->iface->reader_free(r);
}

int store_list(Store *s, const char *prefix, StoreListFunc f, void *userdata) {
        return s->iface->list(s, prefix ?: "", f, userdata);
}

int store_stat(Store *s, const char *name, StoreEntry *ret) {
        return s->iface->stat(s, name, ret);
}

int store_remove(Store *s, const char *name) {
        return s->iface->remove(s, name);
}

int store_cleanup(Store *s, uint64_t min_age_usec) {
        return store_cleanup_matching(s, min_age_usec, NULL, NULL);
}

/* Other writers may share a location (the WAL stream writes beside the dumps and base backups): only the
 * leftovers of the objects the filter names are removed. */
int store_cleanup_matching(Store *s, uint64_t min_age_usec, StoreLeftoverFilter filter, void *userdata) {
        if (!s->iface->cleanup)
                return 0;
        return s->iface->cleanup(s, min_age_usec, filter, userdata);
}

int store_put_buffer(Store *s, const char *name, const void *data, size_t n) {
        _cleanup_(store_writer_freep) StoreWriter *w = NULL;
        int r;

        r = store_writer_open(s, name, &w);
        if (r < 0)
                return r;
        r = store_write(w, data, n);
        if (r < 0)
                return r;
        return store_writer_commit(w);
}

int store_get_buffer(Store *s, const char *name, size_t max, char **ret, size_t *ret_len) {
        _cleanup_(store_reader_freep) StoreReader *rd = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        int r;

        r = store_reader_open(s, name, 0, &rd);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t k;
                if (cap - len < 4096) {
                        cap = cap ? cap * 2 : 8192;
                        buf = xrealloc(buf, cap + 1);
                }
                k = store_read(rd, buf + len, cap - len);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len > max)
                        return err_setf(-EFBIG, "%s/%s is larger than %zu bytes", s->location, name, max);
        }
        if (!buf)
                buf = xmalloc(1);
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* Parses location into l; for a remote one also finds its [remote.NAME] (*ret_remote; NULL when local). */
static int location_resolve(const Config *c, const char *location, Location *l, const RemoteConfig **ret_remote) {
        int r;

        r = location_parse(location, l);
        if (r < 0)
                return r;
        *ret_remote = NULL;
        if (l->type == LOCATION_LOCAL)
                return 0;
        *ret_remote = config_find_remote(c, l->remote);
        if (!*ret_remote)
                return err_set(-ENOENT, EX_CONFIG, "location %s names remote \"%s\", but there is no [remote.%s] section",
                               location, l->remote, l->remote);
        return 0;
}

static int open_location(const Config *c, const char *location, bool for_write, Store **ret) {
        _cleanup_(location_done) Location l = {};
        const RemoteConfig *remote;
        int r;

        r = location_resolve(c, location, &l, &remote);
        if (r < 0)
                return r;
        if (!remote)
                return for_write ? store_local_open(l.path, ret) : store_local_open_existing(l.path, ret);
        return store_s3_open(remote, l.bucket, l.prefix, for_write, ret);
}

int store_open_location(const Config *c, const char *location, Store **ret) {
        return open_location(c, location, false, ret);
}

int store_open_location_for_write(const Config *c, const char *location, Store **ret) {
        return open_location(c, location, true, ret);
}

/* ---- copying between stores ---- */

void store_attrs_done(StoreAttrs *a) {
        if (!a)
                return;
        free(a->etag);
        free(a->content_type);
        free(a->cache_control);
        free(a->content_disposition);
        free(a->content_encoding);
        free(a->content_language);
        free(a->expires);
        strv_free(a->metadata);
        *a = (StoreAttrs){};
}

static char *strdup_or_null(const char *s) {
        return s ? xstrdup(s) : NULL;
}

void store_attrs_copy(StoreAttrs *ret, const StoreAttrs *a) {
        *ret = (StoreAttrs){
                .size = a->size,
                .mtime_usec = a->mtime_usec,
                .etag = strdup_or_null(a->etag),
                .content_type = strdup_or_null(a->content_type),
                .cache_control = strdup_or_null(a->cache_control),
                .content_disposition = strdup_or_null(a->content_disposition),
                .content_encoding = strdup_or_null(a->content_encoding),
                .content_language = strdup_or_null(a->content_language),
                .expires = strdup_or_null(a->expires),
                .metadata = strv_copy(a->metadata),
        };
}

size_t store_metadata_size(char *const *metadata) {
        size_t n = 0;

        for (size_t i = 0; metadata && metadata[i] && metadata[i + 1]; i += 2)
                n += strlen(metadata[i]) + strlen(metadata[i + 1]);
        return n;
}

const char *store_metadata_get(char *const *metadata, const char *name) {
        for (size_t i = 0; metadata && metadata[i] && metadata[i + 1]; i += 2)
                if (streq(metadata[i], name))
                        return metadata[i + 1];
        return NULL;
}

static int unsupported(Store *s, const char *what) {
        return err_set(-EOPNOTSUPP, EX_SOFTWARE, "the %s store %s cannot %s", s->iface->type, s->location, what);
}

int store_writer_open_with(Store *s, const char *name, const StoreWriteOptions *o, StoreWriter **ret) {
        if (!s->iface->writer_open_with)
                return unsupported(s, "keep attributes with an object");
        return s->iface->writer_open_with(s, name, o, ret);
}

int store_reader_open_with(Store *s, const char *name, const StoreReadOptions *o, StoreReader **ret) {
        if (!s->iface->reader_open_with)
                return unsupported(s, "read a range with attributes");
        return s->iface->reader_open_with(s, name, o, ret);
}

int store_reader_attrs(StoreReader *r, const StoreAttrs **ret) {
        if (!r->store->iface->reader_attrs)
                return unsupported(r->store, "report attributes");
        return r->store->iface->reader_attrs(r, ret);
}

int store_lister_open(Store *s, const char *prefix, StoreLister **ret) {
        if (!s->iface->lister_open)
                return unsupported(s, "list page by page");
        return s->iface->lister_open(s, prefix ?: "", ret);
}

int store_lister_next(StoreLister *l, const StoreEntry **ret) {
        return l->store->iface->lister_next(l, ret);
}

void store_lister_free(StoreLister *l) {
        if (l)
                l->store->iface->lister_free(l);
}

int store_stat_attrs(Store *s, const char *name, StoreAttrs *ret) {
        if (!s->iface->stat_attrs)
                return unsupported(s, "report attributes");
        return s->iface->stat_attrs(s, name, ret);
}

int store_remove_many(Store *s, char *const *names, size_t n) {
        int r;

        if (s->iface->remove_many)
                return s->iface->remove_many(s, names, n);
        for (size_t i = 0; i < n; i++) {
                r = store_remove(s, names[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

bool store_name_valid(Store *s, const char *name) {
        if (isempty(name))
                return false;
        return !s->iface->name_valid || s->iface->name_valid(s, name);
}

int store_clone(Store *s, Store **ret) {
        if (!s->iface->clone)
                return unsupported(s, "be used from another thread");
        return s->iface->clone(s, ret);
}

uint64_t store_retry_time_usec(Store *s) {
        return s->iface->retry_time_usec ? s->iface->retry_time_usec(s) : 0;
}

int store_part_layout(Store *s, const char *name, uint64_t *ret_part_size, unsigned *ret_parts) {
        if (!s->iface->part_layout)
                return unsupported(s, "tell how an object was uploaded in parts");
        return s->iface->part_layout(s, name, ret_part_size, ret_parts);
}

bool store_etag_of_parts(Store *s) {
        return s->iface->etag_of_parts;
}

/* ---- sets of buckets ---- */

StoreRoot *store_root_new(const StoreRootInterface *iface, const char *location, const char *what, void *data) {
        StoreRoot *r = xcalloc(1, sizeof *r);

        r->iface = iface;
        r->location = xstrdup(location);
        r->what = xstrdup(what);
        r->data = data;
        return r;
}

void store_root_free(StoreRoot *r) {
        if (!r)
                return;
        if (r->iface->done)
                r->iface->done(r);
        free(r->location);
        free(r->what);
        free(r);
}

int store_root_list_buckets(StoreRoot *r, char ***ret) {
        return r->iface->list_buckets(r, ret);
}

int store_root_open_bucket(StoreRoot *r, const char *bucket, bool for_write, Store **ret) {
        return r->iface->open_bucket(r, bucket, for_write, ret);
}

char *store_root_describe_bucket(StoreRoot *r, const char *bucket) {
        return r->iface->describe_bucket(r, bucket);
}

int store_root_open_location(const Config *c, const char *location, StoreRoot **ret) {
        _cleanup_(location_done) Location l = {};
        const RemoteConfig *remote;
        int r;

        r = location_resolve(c, location, &l, &remote);
        if (r < 0)
                return r;
        if (!remote)
                return store_root_local_open(l.path, ret);
        return store_s3_root_open(remote, l.bucket, l.prefix, ret);
}

int store_root_open_source(const Config *c, const char *source, StoreRoot **ret) {
        const RemoteConfig *remote;

        if (source && source[0] == '/')
                return store_root_local_open(source, ret);
        remote = config_find_remote(c, source);
        if (!remote)
                return err_set(-ENOENT, EX_CONFIG, "%s names no remote; add a [remote.%s] section", strna(source),
                               strna(source));
        return store_s3_root_open(remote, NULL, NULL, ret);
}
