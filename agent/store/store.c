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

int store_writer_open(Store *s, const char *name, StoreWriter **ret) {
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

        if (w)
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
        if (!s->iface->cleanup)
                return 0;
        return s->iface->cleanup(s, min_age_usec);
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

static int open_location(const Config *c, const char *location, bool for_write, Store **ret) {
        _cleanup_(location_done) Location l = {};
        const RemoteConfig *remote;
        int r;

        r = location_parse(location, &l);
        if (r < 0)
                return r;
        if (l.type == LOCATION_LOCAL)
                return store_local_open(l.path, ret);
        remote = config_find_remote(c, l.remote);
        if (!remote)
                return err_set(-ENOENT, EX_CONFIG, "location %s names remote \"%s\", but there is no [remote.%s] section",
                               location, l.remote, l.remote);
        return store_s3_open(remote, l.bucket, l.prefix, for_write, ret);
}

int store_open_location(const Config *c, const char *location, Store **ret) {
        return open_location(c, location, false, ret);
}

int store_open_location_for_write(const Config *c, const char *location, Store **ret) {
        return open_location(c, location, true, ret);
}
