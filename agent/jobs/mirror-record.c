/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror's records of copies whose ETag differs from their source's (jobs/mirror-record.h): a hash
 * table of fixed-size entries, keyed by a SHA-256 that is already uniformly spread. About 170 bytes per
 * recorded object; objects are only recorded when their source is multipart and below multipart_threshold
 * (at least 5 MiB each), so this is under 40 bytes per MiB mirrored. */
#include <openssl/evp.h>
#include <pthread.h>
#include <sysexits.h>

#include "jobs/mirror-record.h"
#include "log/log.h"

#define RECORDS_HEADER "skyforge-mirror-records 1"
#define TAG_SIZE 8
#define RECORD_VALUE_MAX 63
/* Beyond this many, objects are not recorded (they are compared by a HEAD, as without records). */
#define RECORDS_MAX (4U * 1024 * 1024)
/* A line: the id and the bucket's tag in hex, two values and their separators. */
#define RECORD_LINE_MAX (64 + 1 + 2 * TAG_SIZE + 2 * (RECORD_VALUE_MAX + 1) + 1)

typedef struct Record {
        uint8_t id[32];          /* of (destination, bucket, key) */
        uint8_t tag[TAG_SIZE];   /* of (destination, bucket) */
        char version[RECORD_VALUE_MAX + 1]; /* "" for a free slot */
        char etag[RECORD_VALUE_MAX + 1];
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

/* ETags and versions as they come from servers: only short words of a safe alphabet are recorded. */
static bool value_valid(const char *v) {
        size_t n = v ? strlen(v) : 0;

        if (n == 0 || n > RECORD_VALUE_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                      strchr("-_.:", v[i])))
                        return false;
        return true;
}

/* SHA-256 of (destination, bucket[, key]); the NULs keep ("a", "b/c") and ("a/b", "c") apart: none of the
 * three can hold one. */
static void digest(const MirrorRecords *r, const char *bucket, const char *key, uint8_t ret[static 32]) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned len = 0;

        if (!ctx)
                abort();
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        EVP_DigestUpdate(ctx, r->destination, strlen(r->destination) + 1);
        EVP_DigestUpdate(ctx, bucket, strlen(bucket) + 1);
        if (key)
                EVP_DigestUpdate(ctx, key, strlen(key));
        EVP_DigestFinal_ex(ctx, ret, &len);
        EVP_MD_CTX_free(ctx);
}

static void bucket_tag(const MirrorRecords *r, const char *bucket, uint8_t ret[static TAG_SIZE]) {
        uint8_t md[32];

        digest(r, bucket, NULL, md);
        memcpy(ret, md, TAG_SIZE);
}

static size_t slot_of(const MirrorRecords *r, const uint8_t id[static 32]) {
        uint64_t h;

        memcpy(&h, id, sizeof h);
        for (size_t i = (size_t) h & (r->n_slots - 1);; i = (i + 1) & (r->n_slots - 1))
                if (!r->slots[i].version[0] || memcmp(r->slots[i].id, id, 32) == 0)
                        return i;
}

static void grow(MirrorRecords *r) {
        Record *old = r->slots;
        size_t n_old = r->n_slots;

        r->n_slots = n_old ? 2 * n_old : 1024;
        r->slots = xcalloc(r->n_slots, sizeof(Record));
        for (size_t i = 0; i < n_old; i++)
                if (old[i].version[0])
                        r->slots[slot_of(r, old[i].id)] = old[i];
        free(old);
}

/* Under the lock. */
static void put(MirrorRecords *r, const uint8_t id[static 32], const uint8_t tag[static TAG_SIZE],
                const char *version, const char *etag, bool keep) {
        Record *e;

        if (r->n_used >= RECORDS_MAX)
                return;
        if (2 * (r->n_used + 1) > r->n_slots)
                grow(r);
        e = &r->slots[slot_of(r, id)];
        if (!e->version[0])
                r->n_used++;
        memcpy(e->id, id, 32);
        memcpy(e->tag, tag, TAG_SIZE);
        strcpy(e->version, version);
        strcpy(e->etag, etag);
        e->keep = keep;
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

/* One line "<id: 64 hex> <tag: 16 hex> <version> <etag>" (its newline removed); false: damaged. */
static bool parse_line(MirrorRecords *r, char *line) {
        char *version, *etag;
        uint8_t id[32], tag[TAG_SIZE];

        if (strlen(line) < 64 + 1 + 2 * TAG_SIZE + 4 || line[64] != ' ' || line[65 + 2 * TAG_SIZE] != ' ' ||
            unhex(line, 32, id) < 0 || unhex(line + 65, TAG_SIZE, tag) < 0)
                return false;
        version = line + 66 + 2 * TAG_SIZE;
        etag = strchr(version, ' ');
        if (!etag)
                return false;
        *etag++ = '\0';
        if (!value_valid(version) || !value_valid(etag))
                return false;
        put(r, id, tag, version, etag, false);
        return true;
}

MirrorRecords *mirror_records_load(const char *path, const char *destination) {
        MirrorRecords *r = xcalloc(1, sizeof *r);
        _cleanup_fclose_ FILE *f = NULL;
        char line[RECORD_LINE_MAX + 2];
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

                if (len == 0 || line[len - 1] != '\n') {
                        /* Too long (its rest is skipped) or cut short at the end of the file. */
                        int c;
                        while (len == sizeof line - 1 && (c = fgetc(f)) != EOF && c != '\n')
                                ;
                        damaged++;
                        continue;
                }
                line[len - 1] = '\0';
                if (parse_line(r, line))
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
        uint8_t id[32];
        bool match;
        Record *e;

        if (!r || !value_valid(version) || !value_valid(dst_etag))
                return false;
        digest(r, bucket, key, id);
        pthread_mutex_lock(&r->lock);
        e = &r->slots[slot_of(r, id)];
        match = e->version[0] && streq(e->version, version) && streq(e->etag, dst_etag);
        if (match)
                e->keep = true;
        pthread_mutex_unlock(&r->lock);
        return match;
}

void mirror_records_note(MirrorRecords *r, const char *bucket, const char *key, const char *version,
                         const char *dst_etag) {
        uint8_t id[32], tag[TAG_SIZE];

        if (!r || !value_valid(version) || !value_valid(dst_etag) || streq(version, dst_etag))
                return;
        digest(r, bucket, key, id);
        bucket_tag(r, bucket, tag);
        pthread_mutex_lock(&r->lock);
        put(r, id, tag, version, dst_etag, true);
        pthread_mutex_unlock(&r->lock);
}

void mirror_records_listed(MirrorRecords *r, const char *bucket) {
        if (!r)
                return;
        pthread_mutex_lock(&r->lock);
        r->listed = xrealloc(r->listed, (r->n_listed + 1) * TAG_SIZE);
        bucket_tag(r, bucket, r->listed[r->n_listed++]);
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
                if (!e->version[0] || !worth_saving(r, e))
                        continue;
                for (unsigned j = 0; j < 32; j++)
                        fprintf(f, "%02x", e->id[j]);
                fputc(' ', f);
                for (unsigned j = 0; j < TAG_SIZE; j++)
                        fprintf(f, "%02x", e->tag[j]);
                fprintf(f, " %s %s\n", e->version, e->etag);
        }
        pthread_mutex_unlock(&r->lock);
        if (fclose(f) != 0)
                return err_set(-ENOMEM, EX_OSERR, "out of memory");
        k = write_file_atomic(r->path, buf, size, 0600);
        if (k < 0)
                return err_set(k, EX_CANTCREAT, "cannot write the mirror's records %s: %s", r->path, strerror(-k));
        return 0;
}
