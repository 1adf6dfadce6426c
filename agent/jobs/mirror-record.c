/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror's records of copies whose ETag differs from their source's (jobs/mirror-record.h): a hash
 * table of fixed-size entries (digests only, no strings from any server), keyed by a SHA-256 that is
 * already uniformly spread. 58 bytes a slot, at most half of them used: under 120 bytes per recorded
 * object, and objects are only recorded when their source is multipart and below multipart_threshold (at
 * least 5 MiB each), so this is under 24 bytes per MiB mirrored. */
#include <openssl/evp.h>
#include <pthread.h>
#include <sysexits.h>

#include "jobs/mirror-record.h"
#include "log/log.h"

#define RECORDS_HEADER "skyforge-mirror-records 2"
#define ID_SIZE 16  /* of SHA-256(destination, bucket, key) */
#define TAG_SIZE 8  /* of SHA-256(destination, bucket) */
#define HASH_SIZE 16 /* of SHA-256 of an ETag */
/* Beyond this many (at least 5 TB of objects of 5 MiB to multipart_threshold), objects are not recorded:
 * they are compared by a HEAD, as without records. The table is then at most 116 MiB. */
#define RECORDS_MAX (1024U * 1024)
/* A line: the four fields in hex, three spaces and the newline. */
#define RECORD_LINE_LEN (2 * (ID_SIZE + TAG_SIZE + 2 * HASH_SIZE) + 3 + 1)

typedef struct Record {
        uint8_t id[ID_SIZE];
        uint8_t tag[TAG_SIZE];
        uint8_t version[HASH_SIZE]; /* the source's ETag (or size and time) the copy was made from */
        uint8_t etag[HASH_SIZE];    /* the copy's ETag */
        bool used;
        bool keep; /* matched or noted by this run: saved */
} Record;

struct MirrorRecords {
        char *path;
        char *destination;
        pthread_mutex_t lock;
        Record *slots;
        size_t n_slots; /* a power of two, at most half full */
        size_t n_used;
        uint8_t (*listed)[TAG_SIZE]; /* buckets whose listings this run read to their end */
        size_t n_listed;
};

/* The first n bytes of SHA-256 of the strings in l (each with its NUL but the last: the NULs keep
 * ("a", "b/c") and ("a/b", "c") apart, and none of them can hold one). */
static void digest(const char *const *l, size_t n, uint8_t *ret) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned len = 0;

        if (!ctx)
                abort();
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        for (size_t i = 0; l[i]; i++)
                EVP_DigestUpdate(ctx, l[i], strlen(l[i]) + !!l[i + 1]);
        EVP_DigestFinal_ex(ctx, md, &len);
        EVP_MD_CTX_free(ctx);
        memcpy(ret, md, n);
}

static void bucket_tag(const MirrorRecords *r, const char *bucket, uint8_t ret[static TAG_SIZE]) {
        digest((const char *const[]){ r->destination, bucket, "", NULL }, TAG_SIZE, ret);
}

static void record_of(const MirrorRecords *r, const char *bucket, const char *key, const char *version,
                      const char *etag, Record *ret) {
        digest((const char *const[]){ r->destination, bucket, key, NULL }, ID_SIZE, ret->id);
        bucket_tag(r, bucket, ret->tag);
        digest((const char *const[]){ version, NULL }, HASH_SIZE, ret->version);
        digest((const char *const[]){ etag, NULL }, HASH_SIZE, ret->etag);
}

static size_t slot_of(const MirrorRecords *r, const uint8_t id[static ID_SIZE]) {
        uint64_t h;

        memcpy(&h, id, sizeof h);
        for (size_t i = (size_t) h & (r->n_slots - 1);; i = (i + 1) & (r->n_slots - 1))
                if (!r->slots[i].used || memcmp(r->slots[i].id, id, ID_SIZE) == 0)
                        return i;
}

static void grow(MirrorRecords *r) {
        Record *old = r->slots;
        size_t n_old = r->n_slots;

        r->n_slots = n_old ? 2 * n_old : 1024;
        r->slots = xcalloc(r->n_slots, sizeof(Record));
        for (size_t i = 0; i < n_old; i++)
                if (old[i].used)
                        r->slots[slot_of(r, old[i].id)] = old[i];
        free(old);
}

/* Under the lock. */
static void put(MirrorRecords *r, const Record *rec) {
        Record *e;

        if (r->n_used >= RECORDS_MAX)
                return;
        if (2 * (r->n_used + 1) > r->n_slots)
                grow(r);
        e = &r->slots[slot_of(r, rec->id)];
        if (!e->used)
                r->n_used++;
        *e = *rec;
        e->used = true;
}

static int unhex(const char *s, size_t n, uint8_t *ret) {
        for (size_t i = 0; i < n; i++) {
                int hi = unhexchar(s[2 * i]), lo = hi < 0 ? -1 : unhexchar(s[2 * i + 1]);
                if (lo < 0)
                        return -EINVAL;
                ret[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

/* One line "<id> <tag> <version> <etag>", each in hex, with its newline; false: damaged. */
static bool parse_line(MirrorRecords *r, const char *line) {
        const size_t sizes[] = { ID_SIZE, TAG_SIZE, HASH_SIZE, HASH_SIZE };
        Record rec = {};
        uint8_t *fields[] = { rec.id, rec.tag, rec.version, rec.etag };
        const char *p = line;

        if (strlen(line) != RECORD_LINE_LEN)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                char end = i + 1 < ELEMENTSOF(sizes) ? ' ' : '\n';
                if (unhex(p, sizes[i], fields[i]) < 0 || p[2 * sizes[i]] != end)
                        return false;
                p += 2 * sizes[i] + 1;
        }
        put(r, &rec);
        return true;
}

MirrorRecords *mirror_records_load(const char *path, const char *destination) {
        MirrorRecords *r = xcalloc(1, sizeof *r);
        _cleanup_fclose_ FILE *f = NULL;
        char line[RECORD_LINE_LEN + 2];
        unsigned long damaged = 0, n = 0;

        r->path = xstrdup(path);
        r->destination = xstrdup(destination);
        pthread_mutex_init(&r->lock, NULL);
        grow(r);
        f = fopen(path, "re");
        if (!f) {
                if (errno != ENOENT)
                        log_warning("cannot read the mirror's records %s (%m): objects copied in one PUT from a "
                                    "multipart source are compared by one HEAD each this run.",
                                    path);
                return r;
        }
        if (!fgets(line, sizeof line, f) || !streq(line, RECORDS_HEADER "\n")) {
                log_warning("%s is not a file of the mirror's records; it is ignored and written anew.", path);
                return r;
        }
        while (fgets(line, sizeof line, f)) {
                size_t len = strlen(line);

                if (len == sizeof line - 1 && line[len - 1] != '\n') { /* len 0: a line starting with NUL */
                        /* Too long: its rest is skipped. */
                        int c;
                        while ((c = fgetc(f)) != EOF && c != '\n')
                                ;
                }
                if (parse_line(r, line)) /* a line cut short at the end of the file has no newline */
                        n++;
                else
                        damaged++;
        }
        if (damaged > 0)
                log_warning("%s: %lu damaged line(s) ignored; those objects are compared by one HEAD each.",
                            path, damaged);
        log_debug("%s: %lu record(s) of copies into %s", path, n, destination);
        return r;
}

void mirror_records_free(MirrorRecords *r) {
        if (!r)
                return;
        pthread_mutex_destroy(&r->lock);
        free(r->slots);
        free(r->listed);
        free(r->path);
        free(r->destination);
        free(r);
}

bool mirror_records_match(MirrorRecords *r, const char *bucket, const char *key, const char *version,
                          const char *dst_etag) {
        Record rec;
        bool match;
        Record *e;

        if (!r || isempty(version) || isempty(dst_etag))
                return false;
        record_of(r, bucket, key, version, dst_etag, &rec);
        pthread_mutex_lock(&r->lock);
        e = &r->slots[slot_of(r, rec.id)];
        match = e->used && memcmp(e->version, rec.version, HASH_SIZE) == 0 &&
                memcmp(e->etag, rec.etag, HASH_SIZE) == 0;
        if (match)
                e->keep = true;
        pthread_mutex_unlock(&r->lock);
        return match;
}

void mirror_records_note(MirrorRecords *r, const char *bucket, const char *key, const char *version,
                         const char *dst_etag) {
        Record rec;

        if (!r || isempty(version) || isempty(dst_etag) || streq(version, dst_etag))
                return;
        record_of(r, bucket, key, version, dst_etag, &rec);
        rec.keep = true;
        pthread_mutex_lock(&r->lock);
        put(r, &rec);
        pthread_mutex_unlock(&r->lock);
}

void mirror_records_listed(MirrorRecords *r, const char *bucket) {
        uint8_t tag[TAG_SIZE];

        if (!r)
                return;
        bucket_tag(r, bucket, tag);
        pthread_mutex_lock(&r->lock);
        r->listed = xrealloc(r->listed, (r->n_listed + 1) * TAG_SIZE);
        memcpy(r->listed[r->n_listed++], tag, TAG_SIZE);
        pthread_mutex_unlock(&r->lock);
}

/* Under the lock. A record of a bucket whose listings were read to the end is only worth keeping if this
 * run met its object as recorded; of any other bucket it still may be. */
static bool worth_saving(const MirrorRecords *r, const Record *e) {
        if (e->keep)
                return true;
        for (size_t i = 0; i < r->n_listed; i++)
                if (memcmp(r->listed[i], e->tag, TAG_SIZE) == 0)
                        return false;
        return true;
}

static void put_hex(FILE *f, const uint8_t *p, size_t n, char end) {
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%02x", p[i]);
        fputc(end, f);
}

int mirror_records_save(MirrorRecords *r) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int k;

        f = open_memstream(&buf, &size);
        if (!f)
                return err_set(-ENOMEM, EX_OSERR, "out of memory");
        fputs(RECORDS_HEADER "\n", f);
        pthread_mutex_lock(&r->lock);
        for (size_t i = 0; i < r->n_slots; i++) {
                const Record *e = &r->slots[i];
                if (!e->used || !worth_saving(r, e))
                        continue;
                put_hex(f, e->id, ID_SIZE, ' ');
                put_hex(f, e->tag, TAG_SIZE, ' ');
                put_hex(f, e->version, HASH_SIZE, ' ');
                put_hex(f, e->etag, HASH_SIZE, '\n');
        }
        pthread_mutex_unlock(&r->lock);
        if (fclose(f) != 0)
                return err_set(-ENOMEM, EX_OSERR, "out of memory");
        k = write_file_atomic(r->path, buf, size, 0600);
        if (k < 0)
                return err_set(k, EX_CANTCREAT, "cannot write the mirror's records %s: %s", r->path, strerror(-k));
        return 0;
}
