/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Listings: parsed by expat as the bytes arrive, one page at a time, so memory does not grow with the
 * number of keys. */
#include <stdatomic.h>
#include <sysexits.h>

#include "log/log.h"
#include "s3-internal.h"

/* What one listing page may hold. S3 sends at most 1000 keys (and 1000 uploads) per page, a few hundred
 * KiB of XML; a server that sends far more is broken or hostile, and following it would grow memory and
 * time without bound. */
#define S3_LIST_PAGE_ENTRIES_MAX 10000U
#define S3_LIST_PAGE_BYTES_MAX   (64U * 1024 * 1024)
/* Truncated pages in a row that bring nothing new (no key past the last one, no new prefix): a server
 * whose continuation tokens go round in a circle. Real servers may send a few empty pages. */
#define S3_LIST_STALLED_PAGES_MAX 100U

typedef struct ListState {
        S3Client *c;
        const char *bucket;
        S3Xml *xml;
        S3ObjectFunc f;
        void *userdata;
        int stop; /* > 0: the callback asked to stop */
        char ***prefixes; /* non-NULL: collect CommonPrefixes here (NULL-terminated, grown geometrically) */
        size_t n_prefixes, prefixes_allocated;
        /* The current <Contents> entry. */
        char *key;
        char *etag;
        uint64_t size;
        uint64_t mtime_usec;
        /* Page state. */
        bool truncated;
        char *next_token;
        /* The last key handed out: a page re-read after a dropped connection skips up to here. */
        char *last_key;
        atomic_bool *cancel; /* set: stop the page being read */
        /* The page being read: its entries and bytes so far (capped), and whether it brought anything
         * new. */
        size_t page_entries;
        uint64_t page_bytes;
        bool page_progress;
} ListState;

static void list_state_page_start(ListState *s) {
        s->truncated = false;
        s->next_token = mfree_str(s->next_token);
        s->page_entries = 0;
        s->page_bytes = 0;
        s->page_progress = false;
}

static int list_page_too_many(ListState *s) {
        return err_set(
                -E2BIG, EX_PROTOCOL,
                "S3 server at %s sent a ListObjectsV2 page of bucket %s with more than %u entries (S3 "
                "sends at most 1000 per page); refusing it (a server bug?)",
                s3_client_endpoint(s->c), s->bucket, S3_LIST_PAGE_ENTRIES_MAX);
}

static void list_state_entry_clear(ListState *s) {
        s->key = mfree_str(s->key);
        s->etag = mfree_str(s->etag);
        s->size = s->mtime_usec = 0;
}

static void list_state_done(ListState *s) {
        list_state_entry_clear(s);
        s->next_token = mfree_str(s->next_token);
        s->last_key = mfree_str(s->last_key);
}

static int list_xml(const char *path, const char *text, void *userdata) {
        ListState *s = userdata;
        const char *p = startswith(path, "/ListBucketResult/");

        if (!p || s->stop)
                return 0;
        if (streq(p, "Contents/Key")) {
                free(s->key);
                s->key = xstrdup(text);
        } else if (streq(p, "Contents/Size"))
                (void) parse_uint64(text, &s->size);
        else if (streq(p, "Contents/ETag")) {
                free(s->etag);
                s->etag = s3_strip_quotes(text);
        } else if (streq(p, "Contents/LastModified"))
                (void) s3_parse_iso8601(text, &s->mtime_usec);
        else if (streq(p, "Contents")) {
                if (++s->page_entries > S3_LIST_PAGE_ENTRIES_MAX)
                        return list_page_too_many(s);
                if (s->key && (!s->last_key || strcmp(s->key, s->last_key) > 0)) {
                        s->page_progress = true;
                        S3Object o = { s->key, s->size, s->mtime_usec, s->etag };
                        int r = s->f ? s->f(&o, s->userdata) : 0;
                        if (r < 0)
                                return r;
                        if (r > 0)
                                s->stop = r;
                        free(s->last_key);
                        s->last_key = xstrdup(s->key);
                }
                list_state_entry_clear(s);
        } else if (streq(p, "CommonPrefixes/Prefix")) {
                if (++s->page_entries > S3_LIST_PAGE_ENTRIES_MAX)
                        return list_page_too_many(s);
                /* Prefixes come in ascending order: one already seen is the last one, or out of order
                 * (skipped, as a repeated key is). */
                size_t n = s->n_prefixes;
                if (s->prefixes && (n == 0 || strcmp(text, (*s->prefixes)[n - 1]) > 0)) {
                        if (n + 2 > s->prefixes_allocated) {
                                s->prefixes_allocated = MAX(s->prefixes_allocated * 2, (size_t) 16);
                                *s->prefixes =
                                        xrealloc(*s->prefixes, s->prefixes_allocated * sizeof(char *));
                        }
                        (*s->prefixes)[n] = xstrdup(text);
                        (*s->prefixes)[n + 1] = NULL;
                        s->n_prefixes++;
                        s->page_progress = true;
                }
        } else if (streq(p, "IsTruncated"))
                s->truncated = streq(text, "true");
        else if (streq(p, "NextContinuationToken")) {
                free(s->next_token);
                s->next_token = xstrdup(text);
        }
        return 0;
}

static int list_on_body(const void *p, size_t n, void *userdata) {
        ListState *s = userdata;
        int r;

        if (s->cancel && atomic_load(s->cancel))
                return -ECANCELED;
        s->page_bytes += n;
        if (s->page_bytes > S3_LIST_PAGE_BYTES_MAX)
                return err_set(
                        -E2BIG, EX_PROTOCOL,
                        "S3 server at %s sent a ListObjectsV2 page of bucket %s larger than %u MiB (S3 "
                        "sends a few hundred KiB); refusing it (a server bug?)",
                        s3_client_endpoint(s->c), s->bucket, S3_LIST_PAGE_BYTES_MAX >> 20);
        r = s3_xml_feed(s->xml, p, n, false);
        return s3_reply_malformed(s->c, "ListObjectsV2", s->bucket, NULL, r);
}

static int list_on_retry(void *userdata) {
        ListState *s = userdata;

        /* The page is asked for again; keys already handed out are skipped by last_key. */
        s3_xml_free(s->xml);
        s->xml = s3_xml_new(list_xml, s);
        list_state_entry_clear(s);
        list_state_page_start(s);
        return 0;
}

/* One ListObjectsV2 page; afterwards s->truncated and s->next_token say whether and how to go on. */
static int list_page(S3Client *c, const char *bucket, const char *prefix, const char *delimiter,
                     const char *start_after, const char *token, ListState *s) {
        _cleanup_(s3_response_done) S3Response resp = {};
        const char *max_keys = getenv("SKYFORGE_S3_LIST_MAX_KEYS"); /* tests: many pages from few keys */
        S3Param q[6];
        size_t n = 0;
        int r;

        q[n++] = (S3Param){ "list-type", "2" };
        if (!isempty(max_keys))
                q[n++] = (S3Param){ "max-keys", max_keys };
        if (!isempty(prefix))
                q[n++] = (S3Param){ "prefix", prefix };
        if (!isempty(delimiter))
                q[n++] = (S3Param){ "delimiter", delimiter };
        if (token)
                q[n++] = (S3Param){ "continuation-token", token };
        else if (!isempty(start_after))
                q[n++] = (S3Param){ "start-after", start_after };
        S3Request req = { .method = "GET", .bucket = bucket, .params = q, .n_params = n,
                          .on_body = list_on_body, .on_retry = list_on_retry, .userdata = s };

        s->c = c;
        s->bucket = bucket;
        s->xml = s3_xml_new(list_xml, s);
        list_state_page_start(s);
        r = s3_request(c, &req, &resp);
        if (r >= 0) {
                r = s3_xml_feed(s->xml, "", 0, true);
                r = s3_reply_malformed(c, "ListObjectsV2", bucket, NULL, r);
        }
        s->xml = (s3_xml_free(s->xml), NULL);
        if (r >= 0 && s->truncated && isempty(s->next_token))
                r = err_set(-EBADMSG, EX_PROTOCOL,
                            "ListObjectsV2 reply from %s (bucket %s) is truncated but has no continuation "
                            "token", s3_client_endpoint(c), bucket);
        return r;
}

/* After a truncated page: the next token must differ from the one that fetched it, and the listing must
 * move on within a few pages; otherwise it would never end. *stalled counts pages without progress. */
static int list_check_token(S3Client *c, const char *bucket, const char *token, const char *next,
                            bool progress, unsigned *stalled) {
        if (token && streq(token, next))
                return err_set(
                        -ELOOP, EX_PROTOCOL,
                        "S3 server at %s returned the same continuation token twice while listing bucket "
                        "%s; the listing cannot finish (a server bug?)",
                        s3_client_endpoint(c), bucket);
        *stalled = progress ? 0 : *stalled + 1;
        if (*stalled > S3_LIST_STALLED_PAGES_MAX)
                return err_set(
                        -ELOOP, EX_PROTOCOL,
                        "S3 server at %s sent %u listing pages of bucket %s in a row without a new key; "
                        "the listing cannot finish (a server bug?)",
                        s3_client_endpoint(c), *stalled, bucket);
        return 0;
}

static int list_all(S3Client *c, const char *bucket, const char *prefix, const char *delimiter,
                    const char *start_after, ListState *s) {
        _cleanup_free_ char *token = NULL;
        unsigned stalled = 0;
        int r;

        for (;;) {
                r = list_page(c, bucket, prefix, delimiter, start_after, token, s);
                if (r < 0 || s->stop || !s->truncated)
                        break;
                r = list_check_token(c, bucket, token, s->next_token, s->page_progress, &stalled);
                if (r < 0)
                        break;
                free(token);
                token = TAKE_PTR(s->next_token);
        }
        list_state_done(s);
        return r < 0 ? r : 0;
}

int s3_list_objects(S3Client *c, const char *bucket, const char *prefix, const char *start_after,
                    S3ObjectFunc f, void *userdata) {
        ListState s = { .f = f, .userdata = userdata };

        /* Keys up to start_after are not new. */
        s.last_key = start_after ? xstrdup(start_after) : NULL;

        return list_all(c, bucket, prefix, NULL, start_after, &s);
}

int s3_list_common_prefixes(S3Client *c, const char *bucket, const char *prefix, const char *delimiter,
                            char ***ret) {
        _cleanup_strv_free_ char **l = xcalloc(1, sizeof(char *));
        ListState s = { .prefixes = &l };
        int r;

        r = list_all(c, bucket, prefix, delimiter, NULL, &s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- pull-style listing: the page being read, and the next one fetched meanwhile ---- */

typedef struct ListerItem {
        char *key;
        char *etag;
        uint64_t size;
        uint64_t mtime_usec;
} ListerItem;

typedef struct ListerPage {
        ListerItem *items;
        size_t n_items, n_allocated;
        bool progress; /* a key past the previous page's last one */
        char *token; /* continuation token for the page after this one; NULL: this is the last page */
        ErrSaved error;
} ListerPage;

struct S3Lister {
        S3Client *c;
        S3Client *clone; /* the prefetch thread's: c stays usable by the caller meanwhile */
        char *bucket;
        char *prefix;
        ListerPage cur;
        ListerPage next;
        char *next_token; /* what the thread fetches */
        pthread_t thread;
        bool fetching;
        size_t pos;
        bool started;
        bool done;
        atomic_bool cancel;
        S3Object current;
        char *last_key; /* the last key handed out: a page must go past it */
        unsigned stalled; /* truncated pages in a row without a new key */
};

static void lister_page_clear(ListerPage *pg) {
        for (size_t i = 0; i < pg->n_items; i++) {
                free(pg->items[i].key);
                free(pg->items[i].etag);
        }
        free(pg->items);
        free(pg->token);
        err_saved_done(&pg->error);
        *pg = (ListerPage){};
}

static int lister_collect(const S3Object *o, void *userdata) {
        ListerPage *pg = userdata;

        /* A page holds at most 1000 keys (max-keys), S3_LIST_PAGE_ENTRIES_MAX from a broken server. */
        if (pg->n_items == pg->n_allocated) {
                pg->n_allocated = MAX(pg->n_allocated * 2, (size_t) 64);
                pg->items = xrealloc(pg->items, pg->n_allocated * sizeof *pg->items);
        }
        pg->items[pg->n_items++] = (ListerItem){ xstrdup(o->key), xstrdup(strempty(o->etag)), o->size,
                                                 o->mtime_usec };
        return 0;
}

static int lister_fetch(S3Lister *l, S3Client *c, const char *token, ListerPage *pg) {
        ListState st = { .f = lister_collect, .userdata = pg, .cancel = &l->cancel };
        int r;

        r = list_page(c, l->bucket, l->prefix, NULL, NULL, token, &st);
        if (r >= 0 && st.truncated) {
                if (token && streq(token, st.next_token))
                        r = list_check_token(c, l->bucket, token, st.next_token, true, &(unsigned){ 0 });
                else
                        pg->token = TAKE_PTR(st.next_token);
        }
        list_state_done(&st);
        return r;
}

static void *lister_thread(void *userdata) {
        S3Lister *l = userdata;
        err_save(&l->next.error, lister_fetch(l, l->clone, l->next_token, &l->next));
        return NULL;
}

/* Starts fetching the page after cur, when there is one. */
static void lister_prefetch(S3Lister *l) {
        if (!l->cur.token)
                return;
        free(l->next_token);
        l->next_token = xstrdup(l->cur.token);
        if (!l->clone && s3_client_clone(l->c, &l->clone) < 0)
                return; /* fetched when needed instead */
        l->fetching = thread_start(&l->thread, lister_thread, l) >= 0;
}

int s3_lister_new(S3Client *c, const char *bucket, const char *prefix, S3Lister **ret) {
        S3Lister *l = xcalloc(1, sizeof *l);

        l->c = c;
        l->bucket = xstrdup(bucket);
        l->prefix = xstrdup(strempty(prefix));
        atomic_init(&l->cancel, false);
        /* The first page is on its way at once (a failure shows at the first s3_lister_next()): two
         * listings opened one after the other, like the mirror's source and destination, and whatever the
         * caller sends meanwhile overlap instead of costing a round trip each. */
        if (s3_client_clone(c, &l->clone) >= 0)
                l->fetching = thread_start(&l->thread, lister_thread, l) >= 0;
        *ret = l;
        return 0;
}

/* Makes the page after cur the current one: the prefetched one, or fetched now. */
static int lister_advance(S3Lister *l) {
        ListerPage pg = {};
        int r;

        if (l->fetching) {
                pthread_join(l->thread, NULL);
                l->fetching = false;
                pg = l->next;
                l->next = (ListerPage){};
                if (pg.error.error < 0) {
                        r = err_restore(&pg.error);
                        lister_page_clear(&pg);
                        return r;
                }
        } else {
                r = lister_fetch(l, l->c, l->cur.token, &pg);
                if (r < 0) {
                        lister_page_clear(&pg);
                        return r;
                }
        }
        /* A page that brings no key past the last one handed out (the keys ascend) is no progress. */
        pg.progress =
                pg.n_items > 0 && (!l->last_key || strcmp(pg.items[pg.n_items - 1].key, l->last_key) > 0);
        if (pg.token) {
                r = list_check_token(l->c, l->bucket, NULL, pg.token, pg.progress, &l->stalled);
                if (r < 0) {
                        lister_page_clear(&pg);
                        return r;
                }
        }
        lister_page_clear(&l->cur);
        l->cur = pg;
        l->pos = 0;
        return 0;
}

int s3_lister_next(S3Lister *l, const S3Object **ret) {
        int r;

        for (;;) {
                while (l->pos >= l->cur.n_items) {
                        if (l->done)
                                return 0;
                        if (l->started && !l->cur.token) {
                                l->done = true;
                                return 0;
                        }
                        r = lister_advance(l);
                        if (r < 0)
                                return r;
                        l->started = true;
                        lister_prefetch(l);
                }
                ListerItem *i = &l->cur.items[l->pos++];
                if (l->last_key && strcmp(i->key, l->last_key) <= 0)
                        continue; /* a page repeated what an earlier one handed out */
                free(l->last_key);
                l->last_key = xstrdup(i->key);
                l->current = (S3Object){ i->key, i->size, i->mtime_usec, i->etag };
                *ret = &l->current;
                return 1;
        }
}

void s3_lister_free(S3Lister *l) {
        if (!l)
                return;
        if (l->fetching) {
                atomic_store(&l->cancel, true); /* the page in flight stops at its next bytes */
                pthread_join(l->thread, NULL);
        }
        lister_page_clear(&l->cur);
        lister_page_clear(&l->next);
        s3_client_free(l->clone);
        free(l->next_token);
        free(l->last_key);
        free(l->bucket);
        free(l->prefix);
        free(l);
}

typedef struct BucketsState {
        char **names;
} BucketsState;

static int buckets_xml(const char *path, const char *text, void *userdata) {
        BucketsState *s = userdata;

        if (streq(path, "/ListAllMyBucketsResult/Buckets/Bucket/Name"))
                strv_push(&s->names, xstrdup(text));
        return 0;
}

static int strcmp_ptr(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int s3_list_buckets(S3Client *c, char ***ret) {
        _cleanup_(s3_response_done) S3Response resp = {};
        S3Request req = { .method = "GET" };
        BucketsState s = {};
        int r;

        r = s3_request(c, &req, &resp);
        if (r < 0)
                return r;
        r = s3_xml_parse(resp.body ?: "", resp.body_len, buckets_xml, &s);
        if (r < 0) {
                strv_free(s.names);
                return s3_reply_malformed(c, "ListBuckets", NULL, NULL, r);
        }
        if (s.names)
                qsort(s.names, strv_length(s.names), sizeof(char *), strcmp_ptr);
        *ret = s.names ?: xcalloc(1, sizeof(char *));
        return 0;
}

typedef struct UploadsState {
        char *key, *upload_id, *next_key, *next_upload_id;
        uint64_t initiated_usec;
        bool truncated;
        S3UploadInfo *items;
        size_t n_items, n_allocated;
} UploadsState;

static int uploads_xml(const char *path, const char *text, void *userdata) {
        UploadsState *s = userdata;
        const char *p = startswith(path, "/ListMultipartUploadsResult/");

        if (!p)
                return 0;
        if (streq(p, "Upload/Key")) {
                free(s->key);
                s->key = xstrdup(text);
        } else if (streq(p, "Upload/UploadId")) {
                free(s->upload_id);
                s->upload_id = xstrdup(text);
        } else if (streq(p, "Upload/Initiated"))
                (void) s3_parse_iso8601(text, &s->initiated_usec);
        else if (streq(p, "Upload")) {
                if (s->key && s->upload_id) {
                        if (s->n_items >= S3_LIST_PAGE_ENTRIES_MAX)
                                return -E2BIG;
                        if (s->n_items == s->n_allocated) {
                                s->n_allocated = MAX(s->n_allocated * 2, (size_t) 64);
                                s->items = xrealloc(s->items, s->n_allocated * sizeof *s->items);
                        }
                        s->items[s->n_items++] = (S3UploadInfo){ TAKE_PTR(s->key), TAKE_PTR(s->upload_id),
                                                                 s->initiated_usec };
                }
                s->key = mfree_str(s->key);
                s->upload_id = mfree_str(s->upload_id);
                s->initiated_usec = 0;
        } else if (streq(p, "IsTruncated"))
                s->truncated = streq(text, "true");
        else if (streq(p, "NextKeyMarker")) {
                free(s->next_key);
                s->next_key = xstrdup(text);
        } else if (streq(p, "NextUploadIdMarker")) {
                free(s->next_upload_id);
                s->next_upload_id = xstrdup(text);
        }
        return 0;
}

static void uploads_state_done(UploadsState *s) {
        for (size_t i = 0; i < s->n_items; i++) {
                free((char *) s->items[i].key);
                free((char *) s->items[i].upload_id);
        }
        free(s->items);
        free(s->key);
        free(s->upload_id);
        free(s->next_key);
        free(s->next_upload_id);
        *s = (UploadsState){};
}

int s3_list_multipart_uploads(S3Client *c, const char *bucket, const char *prefix, S3UploadFunc f,
                              void *userdata) {
        _cleanup_free_ char *key_marker = NULL, *id_marker = NULL;

        for (unsigned stalled = 0;;) {
                _cleanup_(s3_response_done) S3Response resp = {};
                _cleanup_(uploads_state_done) UploadsState s = {};
                S3Param q[4];
                size_t n = 0;
                int r;

                q[n++] = (S3Param){ "uploads", "" };
                if (!isempty(prefix))
                        q[n++] = (S3Param){ "prefix", prefix };
                if (key_marker)
                        q[n++] = (S3Param){ "key-marker", key_marker };
                if (id_marker)
                        q[n++] = (S3Param){ "upload-id-marker", id_marker };
                S3Request req = { .method = "GET", .bucket = bucket, .params = q, .n_params = n };

                /* A page is at most 1000 small entries: collected, then handed out, so the callback may
                 * abort uploads while we page. */
                r = s3_request(c, &req, &resp);
                if (r < 0)
                        return r;
                r = s3_xml_parse(resp.body ?: "", resp.body_len, uploads_xml, &s);
                if (r == -E2BIG)
                        return err_set(
                                r, EX_PROTOCOL,
                                "S3 server at %s sent a ListMultipartUploads page of bucket %s with more "
                                "than %u uploads (S3 sends at most 1000 per page); refusing it (a server "
                                "bug?)",
                                s3_client_endpoint(c), bucket, S3_LIST_PAGE_ENTRIES_MAX);
                if (r < 0)
                        return s3_reply_malformed(c, "ListMultipartUploads", bucket, NULL, r);
                for (size_t i = 0; i < s.n_items; i++) {
                        r = f(&s.items[i], userdata);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
                if (!s.truncated || isempty(s.next_key))
                        return 0;
                /* The markers must move on, or the listing never ends. */
                bool same = streq_ptr(key_marker, s.next_key) &&
                            streq(strempty(id_marker), strempty(s.next_upload_id));
                if (same)
                        return err_set(
                                -ELOOP, EX_PROTOCOL,
                                "S3 server at %s returned the same upload markers twice while listing "
                                "multipart uploads of bucket %s; the listing cannot finish (a server "
                                "bug?)",
                                s3_client_endpoint(c), bucket);
                stalled = s.n_items > 0 ? 0 : stalled + 1;
                if (stalled > S3_LIST_STALLED_PAGES_MAX)
                        return err_set(
                                -ELOOP, EX_PROTOCOL,
                                "S3 server at %s sent %u pages of multipart uploads of bucket %s in a row "
                                "without an upload; the listing cannot finish (a server bug?)",
                                s3_client_endpoint(c), stalled, bucket);
                free(key_marker);
                free(id_marker);
                key_marker = TAKE_PTR(s.next_key);
                id_marker = TAKE_PTR(s.next_upload_id);
        }
}

typedef struct DeleteState {
        char *key;
        char *code;
        char *message;
        int error;
        bool result; /* the reply was a <DeleteResult> */
        S3Client *c;
        const char *bucket;
} DeleteState;

static int delete_xml(const char *path, const char *text, void *userdata) {
        DeleteState *s = userdata;

        if (streq(path, "/DeleteResult"))
                s->result = true;
        else if (streq(path, "/DeleteResult/Error/Key")) {
                free(s->key);
                s->key = xstrdup(text);
        } else if (streq(path, "/DeleteResult/Error/Code")) {
                free(s->code);
                s->code = xstrdup(text);
        } else if (streq(path, "/DeleteResult/Error/Message")) {
                free(s->message);
                s->message = xstrdup(text);
        } else if (streq(path, "/DeleteResult/Error") && s->error == 0 && s->code &&
                   !streq(s->code, "NoSuchKey")) {
                S3Request req = { .method = "POST", .bucket = s->bucket, .key = s->key };
                s->error = s3_fail(s->c, &req, 200, s->code, s->message);
        }
        return 0;
}

int s3_delete_objects(S3Client *c, const char *bucket, char *const *keys, size_t n) {
        for (size_t done = 0; done < n;) {
                _cleanup_(s3_response_done) S3Response resp = {};
                size_t batch = MIN(n - done, (size_t) 1000), len = 0;
                _cleanup_free_ char *body = NULL, *md5 = NULL;
                DeleteState s = { .c = c, .bucket = bucket };
                const S3Param q[] = { { "delete", "" } };
                int r;

                body = s3_strbuf_append(NULL, &len, "<Delete xmlns=\"" S3_XMLNS "\"><Quiet>true</Quiet>");
                for (size_t i = done; i < done + batch; i++) {
                        _cleanup_free_ char *k = s3_xml_escape(keys[i]);
                        _cleanup_free_ char *o = xasprintf("<Object><Key>%s</Key></Object>", k);
                        body = s3_strbuf_append(body, &len, o);
                }
                body = s3_strbuf_append(body, &len, "</Delete>");

                /* DeleteObjects requires an integrity header; AWS takes the SigV4 payload hash in place
                 * of Content-MD5 only for some clients, so send the MD5 too. */
                md5 = s3_content_md5(body, len);
                const S3Header h[] = { { "Content-Type", "application/xml" }, { "Content-MD5", md5 } };
                /* A 200 reply may still be an <Error> for the whole request: retried, then reported. */
                S3Request req = { .method = "POST",
                                  .bucket = bucket,
                                  .params = q,
                                  .n_params = 1,
                                  .headers = h,
                                  .n_headers = ELEMENTSOF(h),
                                  .body = body,
                                  .body_len = len,
                                  .error_in_ok = true };
                r = s3_request(c, &req, &resp);
                if (r < 0)
                        return r;
                r = s3_xml_parse(resp.body ?: "", resp.body_len, delete_xml, &s);
                free(s.key);
                free(s.code);
                free(s.message);
                if (s.error < 0)
                        return s.error;
                if (r < 0)
                        return s3_reply_malformed(c, "DeleteObjects", bucket, NULL, r);
                if (!s.result)
                        return err_set(-EBADMSG, EX_PROTOCOL,
                                       "DeleteObjects reply from %s (bucket %s) is not a DeleteResult; the "
                                       "objects may not have been deleted",
                                       s3_client_endpoint(c), bucket);
                done += batch;
        }
        return 0;
}
