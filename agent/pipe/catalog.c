/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <sysexits.h>

#include "log/log.h"
#include "pipe/catalog.h"

#define CATALOG_HEADER "skyforge-catalog 1\n"
#define CATALOG_BUFFER (256 * 1024)

void catalog_entry_done(CatalogEntry *e) {
        free(e->path);
        e->path = NULL;
}

int catalog_entry_from_stat(CatalogEntry *e, const struct stat *st) {
        if (S_ISREG(st->st_mode))
                e->type = 'f';
        else if (S_ISDIR(st->st_mode))
                e->type = 'd';
        else if (S_ISLNK(st->st_mode))
                e->type = 'l';
        else
                return -EINVAL;
        e->mode = st->st_mode & 07777;
        e->uid = st->st_uid;
        e->gid = st->st_gid;
        /* A directory's size says nothing about its contents and changes with them. */
        e->size = S_ISDIR(st->st_mode) ? 0 : (uint64_t) st->st_size;
        e->mtime_ns = (int64_t) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
        e->ctime_ns = (int64_t) st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
        e->ino = st->st_ino;
        e->nlink = st->st_nlink;
        return 0;
}

bool catalog_entry_changed(const CatalogEntry *old, const CatalogEntry *cur) {
        return old->type != cur->type || old->size != cur->size || old->mtime_ns != cur->mtime_ns ||
               old->ctime_ns != cur->ctime_ns || old->ino != cur->ino || old->mode != cur->mode ||
               old->uid != cur->uid || old->gid != cur->gid;
}

static int path_key(unsigned char c) {
        return c == 0 ? 0 : c == '/' ? 1 : c + 1;
}

int catalog_path_cmp(const char *a, const char *b) {
        const unsigned char *x = (const unsigned char *) a, *y = (const unsigned char *) b;

        for (;; x++, y++) {
                int d = path_key(*x) - path_key(*y);
                if (d != 0)
                        return d;
                if (*x == 0)
                        return 0;
        }
}

static bool needs_escape(unsigned char c) {
        return c < 0x20 || c == 0x7f || c == '%';
}

char *catalog_format_line(const CatalogEntry *e) {
        const char *p = isempty(e->path) ? "." : e->path;
        size_t n = 0;
        char *esc, *line;

        for (const char *q = p; *q; q++)
                n += needs_escape((unsigned char) *q) ? 3 : 1;
        esc = xmalloc(n + 1);
        n = 0;
        for (const char *q = p; *q; q++)
                if (needs_escape((unsigned char) *q))
                        n += (size_t) sprintf(esc + n, "%%%02X", (unsigned char) *q);
                else
                        esc[n++] = *q;
        esc[n] = 0;
        line = xasprintf("%c %o %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRId64 " %" PRId64 " %" PRIu64
                         " %" PRIu64 " %s\n",
                         e->type, e->mode, e->uid, e->gid, e->size, e->mtime_ns, e->ctime_ns, e->ino,
                         e->nlink, esc);
        free(esc);
        return line;
}

static bool parse_field(const char **p, const char *end, bool is_signed, int base, uint64_t *ret) {
        const char *s = *p;
        bool neg = false;
        uint64_t v = 0;

        if (is_signed && s < end && *s == '-') {
                neg = true;
                s++;
        }
        if (s >= end || *s == ' ')
                return false;
        for (; s < end && *s != ' '; s++) {
                int d = *s - '0';
                if (d < 0 || d >= base || v > (UINT64_MAX - (uint64_t) d) / (uint64_t) base)
                        return false;
                v = v * (uint64_t) base + (uint64_t) d;
        }
        if (s >= end)
                return false;
        *p = s + 1;
        *ret = neg ? (uint64_t) - (int64_t) v : v;
        return true;
}

int catalog_parse_line(const char *line, size_t n, CatalogEntry *ret) {
        const char *p = line, *end = line + n;
        uint64_t f[8];
        CatalogEntry e = {};
        size_t k = 0;

        if (n < 3 || !strchr("fdl", line[0]) || line[1] != ' ')
                return -EBADMSG;
        e.type = line[0];
        p += 2;
        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                if (!parse_field(&p, end, i == 4 || i == 5, i == 0 ? 8 : 10, &f[i]))
                        return -EBADMSG;
        if (f[0] > 07777 || f[1] > UINT32_MAX || f[2] > UINT32_MAX || p >= end)
                return -EBADMSG;
        e.mode = (uint32_t) f[0];
        e.uid = (uint32_t) f[1];
        e.gid = (uint32_t) f[2];
        e.size = f[3];
        e.mtime_ns = (int64_t) f[4];
        e.ctime_ns = (int64_t) f[5];
        e.ino = f[6];
        e.nlink = f[7];
        e.path = xmalloc((size_t) (end - p) + 1);
        while (p < end) {
                if (*p == '%') {
                        int h, l;
                        if (end - p < 3 || (h = unhexchar(p[1])) < 0 || (l = unhexchar(p[2])) < 0 ||
                            (h == 0 && l == 0)) {
                                free(e.path);
                                return -EBADMSG;
                        }
                        e.path[k++] = (char) (h * 16 + l);
                        p += 3;
                } else if ((unsigned char) *p < 0x20 || *p == 0x7f) {
                        free(e.path);
                        return -EBADMSG;
                } else
                        e.path[k++] = *p++;
        }
        e.path[k] = 0;
        if (streq(e.path, "."))
                e.path[0] = 0;
        *ret = e;
        return 0;
}

/* --- writer --- */

struct CatalogWriter {
        Sink *out;
        char *buf;
        size_t n;
        uint64_t count;
        int error;
};

CatalogWriter *catalog_writer_new(Sink *out) {
        CatalogWriter *w = xcalloc(1, sizeof *w);

        w->out = out;
        w->buf = xmalloc(CATALOG_BUFFER);
        memcpy(w->buf, CATALOG_HEADER, strlen(CATALOG_HEADER));
        w->n = strlen(CATALOG_HEADER);
        return w;
}

static int writer_flush(CatalogWriter *w) {
        int r;

        if (w->error < 0)
                return w->error;
        if (w->n == 0)
                return 0;
        r = sink_write(w->out, w->buf, w->n);
        w->n = 0;
        if (r < 0)
                w->error = r;
        return r;
}

int catalog_writer_add(CatalogWriter *w, const CatalogEntry *e) {
        _cleanup_free_ char *line = catalog_format_line(e);
        size_t n = strlen(line);
        int r;

        if (n > CATALOG_LINE_MAX)
                return err_set(-ENAMETOOLONG, EX_DATAERR, "path %s is too long for the catalog", e->path);
        if (w->n + n > CATALOG_BUFFER) {
                r = writer_flush(w);
                if (r < 0)
                        return r;
        }
        memcpy(w->buf + w->n, line, n);
        w->n += n;
        w->count++;
        return 0;
}

int catalog_writer_finish(CatalogWriter *w) {
        int r = writer_flush(w);
        if (r < 0)
                return r;
        return sink_finish(w->out);
}

void catalog_writer_free(CatalogWriter *w) {
        if (!w)
                return;
        sink_free(w->out);
        free(w->buf);
        free(w);
}

uint64_t catalog_writer_count(const CatalogWriter *w) {
        return w->count;
}

/* --- reader --- */

struct CatalogReader {
        Source *in;
        char *buf; /* CATALOG_BUFFER; [pos, len) not yet consumed */
        size_t pos, len;
        bool eof;
        CatalogEntry cur;
        char *prev;
        uint64_t line;
};

void catalog_reader_free(CatalogReader *r) {
        if (!r)
                return;
        source_free(r->in);
        free(r->buf);
        catalog_entry_done(&r->cur);
        free(r->prev);
        free(r);
}

/* The next line without its '\n' (NULL at the end), valid until the next call. */
static int reader_line(CatalogReader *r, const char **ret, size_t *ret_n) {
        for (;;) {
                char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
                ssize_t k;

                if (nl) {
                        *ret = r->buf + r->pos;
                        *ret_n = (size_t) (nl - (r->buf + r->pos));
                        r->pos = (size_t) (nl - r->buf) + 1;
                        r->line++;
                        return 1;
                }
                if (r->eof) {
                        if (r->pos < r->len)
                                return err_set(-EBADMSG, EX_DATAERR,
                                               "the catalog ends in the middle of a line");
                        return 0;
                }
                if (r->len - r->pos > CATALOG_LINE_MAX)
                        return err_set(-EBADMSG, EX_DATAERR, "the catalog has a line longer than %d bytes",
                                       CATALOG_LINE_MAX);
                memmove(r->buf, r->buf + r->pos, r->len - r->pos);
                r->len -= r->pos;
                r->pos = 0;
                k = source_read(r->in, r->buf + r->len, CATALOG_BUFFER - r->len);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        r->eof = true;
                r->len += (size_t) k;
        }
}

int catalog_reader_new(Source *in, CatalogReader **ret) {
        _cleanup_(catalog_reader_freep) CatalogReader *r = xcalloc(1, sizeof *r);
        const char *line;
        size_t n;
        int k;

        r->in = in;
        r->buf = xmalloc(CATALOG_BUFFER);
        k = reader_line(r, &line, &n);
        if (k < 0)
                return k;
        if (k == 0 || n != strlen(CATALOG_HEADER) - 1 || memcmp(line, CATALOG_HEADER, n) != 0)
                return err_set(-EBADMSG, EX_DATAERR, "not a skyforge catalog (version 1)");
        *ret = TAKE_PTR(r);
        return 0;
}

int catalog_reader_next(CatalogReader *r, const CatalogEntry **ret) {
        const char *line;
        size_t n;
        int k;

        k = reader_line(r, &line, &n);
        if (k <= 0)
                return k;
        free(r->prev);
        r->prev = TAKE_PTR(r->cur.path);
        if (catalog_parse_line(line, n, &r->cur) < 0)
                return err_set(-EBADMSG, EX_DATAERR, "line %" PRIu64 " of the catalog cannot be parsed",
                               r->line);
        if (r->prev && catalog_path_cmp(r->prev, r->cur.path) >= 0)
                return err_set(-EBADMSG, EX_DATAERR, "line %" PRIu64 " of the catalog is out of order",
                               r->line);
        *ret = &r->cur;
        return 1;
}
