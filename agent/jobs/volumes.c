/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <archive.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sysexits.h>

#include "jobs/context.h"
#include "jobs/volumes-chain.h"
#include "jobs/volumes-claims.h"
#include "jobs/volumes.h"
#include "log/log.h"
#include "pipe/catalog.h"
#include "pipe/pipe.h"
#include "pipe/sink-thread.h"
#include "pipe/tar-volume.h"
#include "sys/fs.h"
#include "sys/process.h"
#include "sys/walk.h"

#define FLAGGED_NAMES_MAX 1000
/* The queue between the tar writer and the compressing, storing thread: 8 MiB, enough to go on reading
 * and tarring while the compressing threads wait for a CPU. */
#define VOLUMES_QUEUE_BUFFER (1024 * 1024)
#define VOLUMES_QUEUE_BUFFERS 8
#define VOLUMES_CATALOG_QUEUE_BUFFER (256 * 1024)

/* ---- backup ---- */

static const Manifest *list_find(const BackupList *l, const char *id) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i]->id, id))
                        return l->items[i];
        return NULL;
}

typedef struct VolumeSpec {
        char *name; /* the path, for a path volume */
        char *path;
        char *key; /* object and cache name: a readable slug and a hash of the name */
        char *pv; /* a claim's PersistentVolume; NULL for a path */
} VolumeSpec;

static void volume_spec_done(VolumeSpec *v) {
        free(v->name);
        free(v->path);
        free(v->key);
        free(v->pv);
}

static char *volume_key(const char *name) {
        uint8_t md[32];
        unsigned len = 0;
        char slug[49];
        size_t k = 0;

        EVP_Digest(name, strlen(name), md, &len, EVP_sha256(), NULL);
        for (const char *p = name; *p && k < sizeof slug - 1; p++) {
                char c = *p;
                if (k == 0 && c == '/')
                        continue;
                slug[k++] = (char) (((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                     (c >= '0' && c <= '9') || c == '-' || c == '_')
                                            ? c
                                            : '_');
        }
        slug[k] = 0;
        return xasprintf("%s-%02x%02x%02x%02x%02x%02x", k ? slug : "root", md[0], md[1], md[2], md[3], md[4],
                         md[5]);
}

typedef struct Tee {
        Sink sink;
        Sink *other;
} Tee;

static int tee_write(Sink *s, const void *buf, size_t n) {
        Tee *t = (Tee *) s;
        int r = sink_write(t->other, buf, n);
        return r < 0 ? r : sink_write(s->next, buf, n);
}

static int tee_finish(Sink *s) {
        Tee *t = (Tee *) s;
        int r = sink_finish(t->other);
        return r < 0 ? r : sink_finish(s->next);
}

static void tee_free(Sink *s) {
        sink_free(((Tee *) s)->other);
        free(s);
}

static Sink *sink_tee_new(Sink *next, Sink *other) {
        Tee *t = xcalloc(1, sizeof *t);
        t->sink = (Sink){ .write = tee_write, .finish = tee_finish, .free = tee_free, .next = next };
        t->other = other;
        return &t->sink;
}

/* How a stored stream is built: zstd with zstd_threads workers (0: on the calling thread), then (when
 * copy is set) a copy of the compressed stream to it, then age when there are recipients, then the
 * digest of what is stored, then the writer; and all of that on a thread of its own behind a bounded
 * queue of queue_buffers x queue_buffer bytes, so that it overlaps with walking, reading and tarring the
 * files, as `tar | zstd` does. */
typedef struct ChainShape {
        int zstd_threads;
        size_t queue_buffer;
        unsigned queue_buffers;
        Sink *copy; /* taken */
} ChainShape;

static int stored_chain(const VolumesConfig *vc, StoreWriter *w, ChainShape shape, Digest *stored,
                        Sink **ret) {
        _cleanup_(sink_freep) Sink *chain = sink_digest_new(sink_store_new(w), stored);
        _cleanup_(sink_freep) Sink *copy = shape.copy;
        Sink *next;
        int r;

        if (!strv_isempty(vc->recipients)) {
                next = sink_age_new(chain, vc->recipients, &r);
                if (!next) {
                        _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                        return err_set(r, err_exit_code(r),
                                       "cannot encrypt to the recipients in [volumes]: %s; nothing "
                                       "was stored",
                                       why);
                }
                chain = next;
        }
        if (copy)
                chain = sink_tee_new(chain, TAKE_PTR(copy));
        next = sink_zstd_new(chain, vc->compression_level, shape.zstd_threads, &r);
        if (!next)
                return r;
        chain = next;
        next = sink_thread_new(chain, shape.queue_buffer, shape.queue_buffers, &r);
        if (!next)
                return r;
        chain = NULL;
        *ret = next;
        return 0;
}

static char *cache_dir(const Config *c) {
        return xasprintf("%s/volumes-cache", c->agent.state_dir);
}

static char *cache_path(const Config *c, const char *key, const char *id) {
        _cleanup_free_ char *d = cache_dir(c);
        return xasprintf("%s/%s.%s.catalog.zst", d, key, id);
}

/* SHA-256 of the plaintext that src yields. */
static int source_sha256(Source *src, char ret[static 65]) {
        _cleanup_(source_freep) Source *d = NULL;
        _cleanup_free_ uint8_t *buf = xmalloc(256 * 1024);
        Digest dg = {};
        ssize_t k;

        d = source_digest_new(src, &dg);
        while ((k = source_read(d, buf, 256 * 1024)) > 0)
                ;
        if (k < 0)
                return (int) k;
        memcpy(ret, dg.sha256_hex, 65);
        return 0;
}

static int cache_check(const char *path, const char *sha256) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char got[65];
        int r;

        if (fd < 0)
                return -errno;
        r = source_sha256(source_zstd_new(source_fd_new(fd)), got);
        if (r < 0)
                return r;
        return streq(got, sha256) ? 0 : -EBADMSG;
}

/* The plaintext of one object of backup m: decrypted when m is encrypted, decompressed. */
int volumes_object_open(const Config *c, Store *s, const Manifest *m, const char *name, Source **ret) {
        _cleanup_(source_freep) Source *src = NULL;
        StoreReader *rd = NULL;
        int r;

        r = store_reader_open(s, name, 0, &rd);
        if (r < 0)
                return r;
        src = source_store_new(rd);
        if (m->encrypted) {
                Source *dec;
                r = job_source_decrypt(TAKE_PTR(src), m, c->volumes.identity_file, "volumes", &dec);
                if (r < 0)
                        return r;
                src = dec;
        }
        *ret = source_zstd_new(TAKE_PTR(src));
        return 0;
}

/* Fetches the catalog of volume rec from backup m into the cache file path (checked against its SHA-256).
 * -ENOKEY: encrypted and no identity to read it. */
static int cache_fetch(const Config *c, Store *s, const Manifest *m, const VolumeRecord *rec,
                       const char *path) {
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_(sink_freep) Sink *out = NULL;
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_close_ int fd = -EBADF;
        Digest plain = {};
        ssize_t k;
        int r;

        if (m->encrypted && isempty(c->volumes.identity_file))
                return -ENOKEY;
        r = volumes_object_open(c, s, m, rec->catalog, &src);
        if (r < 0)
                return r;
        src = source_digest_new(TAKE_PTR(src), &plain);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot write %s: %m", tmp);
        out = sink_zstd_new(sink_fd_new(fd), 3, 0, &r);
        if (!out)
                return r;
        buf = xmalloc(256 * 1024);
        while ((k = source_read(src, buf, 256 * 1024)) > 0) {
                r = sink_write(out, buf, (size_t) k);
                if (r < 0)
                        break;
        }
        if (k < 0)
                r = (int) k;
        else if (r >= 0)
                r = sink_finish(out);
        if (r >= 0 && !streq(plain.sha256_hex, rec->catalog_sha256))
                r = err_set(-EBADMSG, EX_DATAERR, "the catalog %s of backup %s does not match its SHA-256",
                            rec->catalog, m->id);
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        return r;
}

/* Removes the cache files of key except those of the ids given. */
static void cache_prune(const Config *c, const char *key, const char *keep1, const char *keep2) {
        _cleanup_free_ char *d = cache_dir(c);
        _cleanup_free_ char *prefix = xasprintf("%s.", key);
        _cleanup_close_ int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_(dir_list_freep) DirList *l = NULL;
        _cleanup_strv_free_ char **gone = xcalloc(1, sizeof(char *));
        const char *name;

        if (fd < 0 || dir_list_open(fd, NULL, 64 * 1024, &l) < 0)
                return;
        while (dir_list_next(l, &name) > 0) {
                const char *rest = startswith(name, prefix);
                if (!rest || (keep1 && startswith(rest, keep1)) || (keep2 && startswith(rest, keep2)))
                        continue;
                strv_push(&gone, xstrdup(name));
        }
        STRV_FOREACH (g, gone)
                (void) unlinkat(fd, *g, 0);
}

typedef struct VolumeRun {
        const Config *config;
        const VolumeSpec *vol;
        int root_fd;
        VolumeTar *tar;
        CatalogWriter *catalog;
        CatalogReader *prev; /* NULL: a full */
        const CatalogEntry *pe; /* the previous catalog's current entry, NULL at its end */
        bool incremental;
        int deleted_fd;
        uint64_t deleted_bytes, n_deleted;
        char *deleted_dir; /* the last deleted directory: what lies below it goes with it */
        uint64_t files, dirs, links, special, in_archive, bytes, n_flagged, vanished;
        json_object *flagged;
        Progress *progress;
        const char *read_hook;
        /* The directories above the current entry; those not yet in the archive go in before the first
         * entry below them that does, so that extracting an incremental with tar restores their mtimes
         * too. As deep as the tree, no more. */
        struct PendingDir {
                char *path;
                bool archived;
        } * pending;
        size_t n_pending;
} VolumeRun;

static void pending_pop_to(VolumeRun *v, const char *path) {
        while (v->n_pending > 0) {
                const char *top = v->pending[v->n_pending - 1].path;
                const char *rest = isempty(top) ? path : startswith(path, top);

                if (rest && (isempty(top) || rest[0] == '/'))
                        return;
                free(v->pending[--v->n_pending].path);
        }
}

static int pending_archive(VolumeRun *v) {
        for (size_t i = 0; i < v->n_pending; i++) {
                _cleanup_close_ int fd = -EBADF;
                _cleanup_free_ char *source = NULL;
                VolumeTarResult res;
                struct stat st;
                int r;

                if (v->pending[i].archived)
                        continue;
                fd = isempty(v->pending[i].path)
                             ? fcntl(v->root_fd, F_DUPFD_CLOEXEC, 3)
                             : open_beneath(v->root_fd, v->pending[i].path, O_RDONLY | O_DIRECTORY, 0);
                if (fd < 0 || fstat(fd, &st) < 0)
                        continue; /* gone meanwhile */
                source = isempty(v->pending[i].path) ? xstrdup(v->vol->path)
                                                     : xasprintf("%s/%s", v->vol->path, v->pending[i].path);
                r = volume_tar_add(v->tar, isempty(v->pending[i].path) ? "." : v->pending[i].path, fd,
                                   source, &st, NULL, NULL, &res);
                if (r < 0)
                        return r;
                v->pending[i].archived = true;
        }
        return 0;
}

static void pending_push(VolumeRun *v, const char *path, bool archived) {
        v->pending = xrealloc(v->pending, (v->n_pending + 1) * sizeof *v->pending);
        v->pending[v->n_pending++] = (struct PendingDir){ .path = xstrdup(path), .archived = archived };
}

static int deleted_write(VolumeRun *v, const char *path, bool dir_only) {
        _cleanup_free_ char *item = xasprintf("%s%s", path, dir_only ? "/" : "");
        int r;

        r = write_full(v->deleted_fd, item, strlen(item) + 1);
        if (r < 0)
                return err_set(r, EX_IOERR, "cannot write the list of deleted paths in work_dir: %s",
                               strerror(-r));
        v->deleted_bytes += strlen(item) + 1;
        v->n_deleted++;
        return 0;
}

static int deleted_add(VolumeRun *v, const CatalogEntry *e) {
        const char *below = v->deleted_dir ? startswith(e->path, v->deleted_dir) : NULL;
        int r;

        if (below && below[0] == '/')
                return 0;
        r = deleted_write(v, e->path, false);
        if (r < 0)
                return r;
        free(v->deleted_dir);
        v->deleted_dir = e->type == 'd' ? xstrdup(e->path) : NULL;
        return 0;
}

/* Moves the previous catalog up to path: what it holds before path is gone from the tree. */
static int prev_advance_to(VolumeRun *v, const char *path) {
        int r;

        while (v->pe && (!path || catalog_path_cmp(v->pe->path, path) < 0)) {
                r = deleted_add(v, v->pe);
                if (r < 0)
                        return r;
                r = catalog_reader_next(v->prev, &v->pe);
                if (r < 0)
                        return r;
                if (r == 0)
                        v->pe = NULL;
        }
        return 0;
}

static void read_hook_run(const char *source_path, void *userdata) {
        VolumeRun *v = userdata;
        char *argv[] = { (char *) "/bin/sh", (char *) "-c",        (char *) v->read_hook,
                         (char *) "hook",    (char *) source_path, NULL };
        _cleanup_(child_donep) Child c = {};

        if (child_spawn(argv, NULL, 0, &c) >= 0)
                (void) child_wait(&c);
}

/* A file listed by the walk and gone before it was read: not in this backup (nor, if it was in the last
 * one, any longer in the tree it restores); the next run sees whatever is there then. */
static void vanished_note(VolumeRun *v, const char *path) {
        v->vanished++;
        log_warning("%s/%s vanished between the walk and its read; it is not in this backup.", v->vol->path,
                    path);
}

static int volume_visit(const WalkEntry *e, void *userdata) {
        VolumeRun *v = userdata;
        CatalogEntry cur = { .path = (char *) e->path };
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *source = NULL;
        VolumeTarResult res = {};
        bool changed = true, in_prev = false;
        struct stat st;
        int r;

        if (e->vanished) {
                vanished_note(v, e->path);
                return 1;
        }
        if (streq(e->path, VOLUMES_DELETED_MEMBER)) {
                log_warning("Skipping %s/%s: the name is reserved for the list of deleted paths.",
                            v->vol->path, e->path);
                return 1;
        }
        if (catalog_entry_from_stat(&cur, &e->st) < 0) {
                v->special++;
                log_debug("Skipping %s/%s: not a file, directory or symlink.", v->vol->path, e->path);
                return 1;
        }
        if (v->prev) {
                r = prev_advance_to(v, e->path);
                if (r < 0)
                        return r;
                if (v->pe && streq(v->pe->path, e->path)) {
                        in_prev = true;
                        changed = catalog_entry_changed(v->pe, &cur);
                        /* A directory that became something else: it goes with what was below it,
                         * listed as "NAME/" (remove when it is a directory), so removing the listed
                         * paths before extracting makes room for the new entry and removing them after
                         * leaves it be. */
                        if (v->pe->type == 'd' && cur.type != 'd') {
                                r = deleted_write(v, e->path, true);
                                if (r < 0)
                                        return r;
                                free(v->deleted_dir);
                                v->deleted_dir = xstrdup(e->path);
                        }
                        r = catalog_reader_next(v->prev, &v->pe);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                v->pe = NULL;
                }
        }

        pending_pop_to(v, e->path);
        if (changed) {
                r = pending_archive(v);
                if (r < 0)
                        return r;
                st = e->st;
                if (S_ISREG(e->st.st_mode)) {
                        fd = openat(e->parent_fd, e->name,
                                    O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NOATIME);
                        if (fd < 0 && errno == EPERM)
                                fd = openat(e->parent_fd, e->name,
                                            O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
                } else if (S_ISDIR(e->st.st_mode))
                        fd = isempty(e->path) ? fcntl(v->root_fd, F_DUPFD_CLOEXEC, 3)
                                              : openat(e->parent_fd, e->name,
                                                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 && !S_ISLNK(e->st.st_mode)) {
                        /* Gone or replaced meanwhile: gone for this backup, the next run sees what is
                         * there now. */
                        if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) {
                                if (errno == ENOENT)
                                        vanished_note(v, e->path);
                                return in_prev ? (deleted_write(v, e->path, false) ?: 1) : 1;
                        }
                        return err_set(-errno, EX_NOINPUT, "cannot open %s/%s: %m", v->vol->path, e->path);
                }
                if (fd >= 0 && fstat(fd, &st) < 0)
                        return err_set(-errno, EX_NOINPUT, "cannot read %s/%s: %m", v->vol->path, e->path);
                if ((st.st_mode & S_IFMT) != (e->st.st_mode & S_IFMT))
                        return in_prev ? (deleted_write(v, e->path, false) ?: 1) : 1;
                source =
                        isempty(e->path) ? xstrdup(v->vol->path) : xasprintf("%s/%s", v->vol->path, e->path);
                r = volume_tar_add(v->tar, isempty(e->path) ? "." : e->path, fd, source, &st,
                                   v->read_hook ? read_hook_run : NULL, v, &res);
                if (r < 0)
                        return r;
                (void) catalog_entry_from_stat(&cur, &res.st);
                v->in_archive++;
                if (res.changed) {
                        log_warning("%s changed while it was read, %u times; stored as last read, flagged "
                                    "in the "
                                    "manifest of this backup (pause its writer with pre_command = to get a "
                                    "consistent copy).",
                                    source, res.reads);
                        if (v->n_flagged++ < FLAGGED_NAMES_MAX)
                                json_object_array_add(v->flagged, json_object_new_string(e->path));
                }
                if (v->progress)
                        progress_update(v->progress, volume_tar_data_bytes(v->tar));
        }
        if (cur.type == 'd')
                pending_push(v, e->path, changed);
        if (cur.type == 'f') {
                v->files++;
                v->bytes += cur.size;
        } else if (cur.type == 'd')
                v->dirs++;
        else
                v->links++;
        return catalog_writer_add(v->catalog, &cur);
}

static int command_run(const Config *c, const char *what, const char *cmd, const VolumeSpec *vol) {
        _cleanup_free_ char *e1 = xasprintf("VOLUME=%s", vol->name),
                            *e2 = xasprintf("VOLUME_PATH=%s", vol->path);
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) cmd, NULL };
        char *env[] = { e1, e2, NULL };
        _cleanup_(child_donep) Child ch = {};
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + c->volumes.command_timeout_usec;
        bool timed_out = false;
        int r;

        r = child_spawn(argv, env, 0, &ch);
        if (r < 0)
                return err_set(r, EX_OSERR, "cannot run %s for volume %s: %s", what, vol->name,
                               err_message() ?: strerror(-r));
        free(ch.name);
        ch.name = xstrdup(what);
        while (ch.pidfd >= 0) {
                struct pollfd p[2] = { { .fd = ch.pidfd, .events = POLLIN },
                                       { .fd = ch.stderr_fd, .events = POLLIN } };
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                if (now >= deadline) {
                        timed_out = true;
                        child_kill(&ch);
                        break;
                }
                if (cancel_requested()) {
                        child_kill(&ch);
                        break;
                }
                r = poll(p, ch.stderr_fd >= 0 ? 2 : 1, (int) MIN((deadline - now) / 1000 + 1, 200));
                if (r > 0 && p[1].revents)
                        child_drain_stderr(&ch);
                if (r > 0 && (p[0].revents & POLLIN))
                        break;
        }
        r = child_wait(&ch);
        if (timed_out)
                return err_set(-ETIME, EX_TEMPFAIL,
                               "%s for volume %s did not finish within %" PRIu64 " s and was stopped (raise "
                               "command_timeout in [volumes])",
                               what, vol->name, c->volumes.command_timeout_usec / USEC_PER_SEC);
        if (r != 0) {
                _cleanup_free_ char *why = child_stderr_summary(&ch);
                return err_set(-EIO, EX_SOFTWARE, "%s for volume %s failed with status %d%s%s", what,
                               vol->name, r, isempty(why) ? "" : ": ", strempty(why));
        }
        return 0;
}

typedef struct Previous {
        const Manifest *m;
        VolumeRecord rec;
        uint64_t full_usec;
} Previous;

/* The newest backup holding the volume, if its chain is usable for another incremental. */
static bool previous_find(const BackupList *l, const char *name, Previous *ret) {
        for (size_t i = 0; i < l->n; i++) {
                VolumeRecord rec;
                const Manifest *full;

                if (volumes_record(l->items[i], name, &rec) < 0)
                        continue;
                full = list_find(l, rec.full);
                if (!full)
                        return false;
                *ret = (Previous){ .m = l->items[i], .rec = rec, .full_usec = full->started_usec };
                return true;
        }
        return false;
}

static int volume_backup(JobContext *ctx, Manifest *m, const BackupList *l, const VolumeSpec *vol,
                         json_object *records) {
        const Config *c = ctx->config;
        const VolumesConfig *vc = &c->volumes;
        _cleanup_(store_writer_freep) StoreWriter *aw = NULL, *cw = NULL;
        /* Closed after the catalog's writer thread is gone (cleanups run in reverse order). */
        _cleanup_close_ int new_cache_fd = -EBADF;
        _cleanup_(volume_tar_freep) VolumeTar *tar = NULL;
        _cleanup_(catalog_writer_freep) CatalogWriter *cat = NULL;
        _cleanup_(catalog_reader_freep) CatalogReader *prev = NULL;
        _cleanup_close_ int root = -EBADF, deleted_fd = -EBADF, cache_fd = -EBADF;
        _cleanup_free_ char *archive = NULL, *catalog = NULL, *new_cache = NULL, *prev_cache = NULL;
        _cleanup_free_ char *dir = NULL;
        Digest a_stored = {}, c_stored = {}, c_raw = {};
        Previous p = {};
        bool have_prev, incremental = false;
        const char *why_full = "no earlier backup of it";
        Sink *chain;
        json_object *rec;
        int r;

        root = open(vol->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return err_set(-errno, EX_NOINPUT, "cannot open volume %s (%s): %m%s", vol->name, vol->path,
                               vol->pv ? "" : " (fix paths = in [volumes])");

        have_prev = previous_find(l, vol->name, &p);
        if (have_prev) {
                uint64_t age = now_usec(CLOCK_REALTIME) - MIN(p.full_usec, now_usec(CLOCK_REALTIME));
                if (vc->full_every_days == 0)
                        why_full = "full_every_days = 0";
                else if (age >= (uint64_t) vc->full_every_days * 86400 * USEC_PER_SEC)
                        why_full = "its last full is full_every_days old";
                else
                        incremental = true;
        }
        dir = cache_dir(c);
        r = mkdir_p(dir, 0700);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot create %s: %s", dir, strerror(-r));
        if (incremental) {
                prev_cache = cache_path(c, vol->key, p.m->id);
                r = cache_check(prev_cache, p.rec.catalog_sha256);
                if (r < 0) {
                        r = cache_fetch(c, ctx->store, p.m, &p.rec, prev_cache);
                        if (r == -ENOKEY) {
                                incremental = false;
                                why_full = "the catalog of the last backup is encrypted, not cached in "
                                           "state_dir, "
                                           "and identity_file is not set";
                        } else if (r < 0) {
                                log_warning("Cannot read the catalog of volume %s in backup %s: %s; making "
                                            "a full "
                                            "backup.",
                                            vol->name, p.m->id, err_message() ?: strerror(-r));
                                incremental = false;
                                why_full = "the last catalog is unreadable";
                        }
                }
        }
        if (incremental) {
                _cleanup_close_ int fd = open(prev_cache, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0)
                        return err_set(-errno, EX_IOERR, "cannot open %s: %m", prev_cache);
                r = catalog_reader_new(source_zstd_new(source_fd_new(fd)), &prev);
                if (r < 0)
                        return r;
                /* The reader reads through the fd: keep it open as long as the reader lives. */
                cache_fd = TAKE_FD(fd);
        }
        log_info("Volume %s: %s backup%s%s%s.", vol->name, incremental ? "incremental" : "full",
                 incremental ? " on top of " : " (", incremental ? p.m->id : why_full,
                 incremental ? "" : ")");

        archive =
                xasprintf("%s/%s.tar.zst%s", ctx->id, vol->key, strv_isempty(vc->recipients) ? "" : ".age");
        catalog = xasprintf("%s/%s.catalog.zst%s", ctx->id, vol->key,
                            strv_isempty(vc->recipients) ? "" : ".age");
        r = store_writer_open(ctx->store, archive, &aw);
        if (r >= 0)
                r = store_writer_open(ctx->store, catalog, &cw);
        if (r < 0)
                return r;
        r = stored_chain(vc, aw,
                         (ChainShape){ .zstd_threads = zstd_threads(vc->compression_threads),
                                       .queue_buffer = VOLUMES_QUEUE_BUFFER,
                                       .queue_buffers = VOLUMES_QUEUE_BUFFERS },
                         &a_stored, &chain);
        if (r < 0)
                return r;
        r = volume_tar_new(chain, &tar);
        if (r < 0)
                return r;
        new_cache = cache_path(c, vol->key, ctx->id);
        new_cache_fd = open(new_cache, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (new_cache_fd < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot write %s: %m", new_cache);
        /* The catalog is a hundredth of the archive: one zstd without workers, on a thread of its own, and
         * its compressed stream is also the cache's (compressed once, not twice). */
        r = stored_chain(vc, cw,
                         (ChainShape){ .queue_buffer = VOLUMES_CATALOG_QUEUE_BUFFER,
                                       .queue_buffers = 2,
                                       .copy = sink_fd_new(new_cache_fd) },
                         &c_stored, &chain);
        if (r < 0)
                return r;
        cat = catalog_writer_new(sink_digest_new(chain, &c_raw));
        (void) mkdir_p(c->agent.work_dir, 0700);

        if (incremental) {
                deleted_fd = open(c->agent.work_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (deleted_fd < 0)
                        return err_set(-errno, EX_CANTCREAT,
                                       "cannot create a temporary file in work_dir %s: %m",
                                       c->agent.work_dir);
        }

        VolumeRun v = {
                .config = c,
                .vol = vol,
                .root_fd = root,
                .tar = tar,
                .catalog = cat,
                .prev = prev,
                .incremental = incremental,
                .deleted_fd = deleted_fd,
                .flagged = json_object_new_array(),
                .progress = &ctx->progress,
                .read_hook = getenv("SKYFORGE_TEST_READ_HOOK"),
        };
        if (prev) {
                r = catalog_reader_next(prev, &v.pe);
                if (r == 0)
                        v.pe = NULL;
        }
        progress_init(&ctx->progress, "archiving", 0, c->agent.state_dir, ctx->state);
        if (r >= 0)
                r = walk_tree(root, vol->path, c->agent.work_dir, volume_visit, &v);
        if (r >= 0 && prev)
                r = prev_advance_to(&v, NULL);
        progress_done(&ctx->progress);
        free(v.deleted_dir);
        while (v.n_pending > 0)
                free(v.pending[--v.n_pending].path);
        free(v.pending);
        if (r >= 0 && incremental)
                r = volume_tar_add_fd(tar, VOLUMES_DELETED_MEMBER, deleted_fd, v.deleted_bytes);
        if (r >= 0 && job_cancel_requested)
                r = err_set(-ECANCELED, EX_TEMPFAIL, "job volumes was cancelled; no backup was written");
        if (r >= 0)
                r = volume_tar_finish(tar);
        if (r >= 0)
                r = catalog_writer_finish(cat);
        if (r >= 0)
                r = store_writer_commit(aw);
        if (r >= 0)
                r = store_writer_commit(cw);
        if (r < 0) {
                json_object_put(v.flagged);
                (void) unlink(new_cache);
                return r;
        }
        cache_prune(c, vol->key, ctx->id, have_prev ? p.m->id : NULL);

        manifest_add_object(m, archive, a_stored.bytes, a_stored.sha256_hex);
        manifest_add_object(m, catalog, c_stored.bytes, c_stored.sha256_hex);
        m->raw_bytes += volume_tar_bytes(tar) + c_raw.bytes;
        rec = json_object_new_object();
        json_object_object_add(rec, "name", json_object_new_string(vol->name));
        json_object_object_add(rec, "path", json_object_new_string(vol->path));
        if (vol->pv)
                json_object_object_add(rec, "pv", json_object_new_string(vol->pv));
        json_object_object_add(rec, "kind", json_object_new_string(incremental ? "incremental" : "full"));
        json_object_object_add(rec, "parent", incremental ? json_object_new_string(p.m->id) : NULL);
        json_object_object_add(rec, "full", json_object_new_string(incremental ? p.rec.full : ctx->id));
        json_object_object_add(rec, "archive", json_object_new_string(archive));
        json_object_object_add(rec, "catalog", json_object_new_string(catalog));
        json_object_object_add(rec, "catalog_sha256", json_object_new_string(c_raw.sha256_hex));
        json_object_object_add(rec, "files", json_object_new_uint64(v.files));
        json_object_object_add(rec, "directories", json_object_new_uint64(v.dirs));
        json_object_object_add(rec, "symlinks", json_object_new_uint64(v.links));
        json_object_object_add(rec, "bytes", json_object_new_uint64(v.bytes));
        json_object_object_add(rec, "archived_entries", json_object_new_uint64(v.in_archive));
        json_object_object_add(rec, "archived_bytes", json_object_new_uint64(volume_tar_data_bytes(tar)));
        json_object_object_add(rec, "deleted", json_object_new_uint64(v.n_deleted));
        json_object_object_add(rec, "skipped_special", json_object_new_uint64(v.special));
        json_object_object_add(rec, "vanished", json_object_new_uint64(v.vanished));
        json_object_object_add(rec, "flagged_count", json_object_new_uint64(v.n_flagged));
        json_object_object_add(rec, "flagged", v.flagged);
        json_object_array_add(records, rec);
        if (v.special > 0)
                log_notice("Volume %s: skipped %" PRIu64 " sockets, FIFOs and devices.", vol->name,
                           v.special);
        if (v.vanished > 0)
                log_warning("Volume %s: %" PRIu64 " files vanished while it was backed up; they are not in "
                            "this backup (the warnings above name them).",
                            vol->name, v.vanished);
        log_info("Volume %s: %" PRIu64 " files, %" PRIu64 " entries archived, %" PRIu64 " deleted.",
                 vol->name, v.files, v.in_archive, v.n_deleted);
        return 0;
}

static int volumes_list_specs(const VolumesConfig *vc, VolumeSpec **ret, size_t *ret_n) {
        VolumeSpec *v = NULL;
        size_t n = 0;

        STRV_FOREACH (p, vc->paths) {
                _cleanup_free_ char *clean = xstrdup(*p);
                size_t k = strlen(clean);

                while (k > 1 && clean[k - 1] == '/')
                        clean[--k] = 0;
                for (size_t i = 0; i < n; i++)
                        if (streq(v[i].name, clean)) {
                                for (size_t j = 0; j < n; j++)
                                        volume_spec_done(&v[j]);
                                free(v);
                                return err_set(-EEXIST, EX_CONFIG, "paths = in [volumes] names %s twice",
                                               clean);
                        }
                v = xrealloc(v, (n + 1) * sizeof *v);
                v[n] = (VolumeSpec){ .name = xstrdup(clean),
                                     .path = xstrdup(clean),
                                     .key = volume_key(clean) };
                n++;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Appends the claims of this node (volumes-claims.c); a claim whose directory is a path volume already is
 * backed up once, as the path. */
static int volumes_add_claims(const Config *c, VolumeSpec **specs, size_t *n) {
        _cleanup_(volume_claims_done) VolumeClaims l = {};
        int r;

        r = volumes_claims_for_backup(c, &l);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l.n; i++) {
                bool dup = false;

                for (size_t j = 0; j < *n && !dup; j++)
                        dup = streq((*specs)[j].path, l.items[i].path);
                if (dup) {
                        log_warning("Claim %s: its directory %s is in paths = of [volumes] already; "
                                    "backed up once, as that path.",
                                    l.items[i].name, l.items[i].path);
                        continue;
                }
                log_info("Claim %s: PersistentVolume %s in %s.", l.items[i].name, l.items[i].pv,
                         l.items[i].path);
                *specs = xrealloc(*specs, (*n + 1) * sizeof **specs);
                (*specs)[(*n)++] = (VolumeSpec){ .name = TAKE_PTR(l.items[i].name),
                                                 .path = TAKE_PTR(l.items[i].path),
                                                 .key = NULL,
                                                 .pv = TAKE_PTR(l.items[i].pv) };
                (*specs)[*n - 1].key = volume_key((*specs)[*n - 1].name);
        }
        return 0;
}

static int volumes_backup(JobContext *ctx, Manifest *m) {
        const VolumesConfig *vc = &ctx->config->volumes;
        _cleanup_(backup_list_done) BackupList l = {};
        char node[256];
        VolumeSpec *specs = NULL;
        size_t n = 0;
        json_object *records;
        int r;

        r = volumes_list_specs(vc, &specs, &n);
        if (r < 0)
                return r;
        r = volumes_add_claims(ctx->config, &specs, &n);
        if (r >= 0 && n == 0)
                r = err_set(-ENOENT, EX_CONFIG,
                            "[volumes] has nothing to back up: no paths =, and no bound claim whose "
                            "PersistentVolume is a directory on this node matches claims = (see the journal "
                            "for the claims passed over); nothing was stored");
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        volume_spec_done(&specs[i]);
                free(specs);
                return r;
        }
        r = backup_list_load(ctx->store, "volumes", &l);
        records = json_object_new_array();
        for (size_t i = 0; i < n && r >= 0; i++) {
                int post;

                if (vc->pre_command) {
                        r = command_run(ctx->config, "pre_command", vc->pre_command, &specs[i]);
                        if (r < 0) {
                                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                                int code = err_exit_code(r);
                                /* post_command always runs, also after a failed pre_command. */
                                if (vc->post_command)
                                        (void) command_run(ctx->config, "post_command", vc->post_command,
                                                           &specs[i]);
                                r = err_set(r, code, "%s; nothing was stored", why);
                                break;
                        }
                }
                r = volume_backup(ctx, m, &l, &specs[i], records);
                if (vc->post_command) {
                        _cleanup_free_ char *why = r < 0 ? xstrdup(err_message() ?: strerror(-r)) : NULL;
                        int code = r < 0 ? err_exit_code(r) : 0;

                        post = command_run(ctx->config, "post_command", vc->post_command, &specs[i]);
                        if (r < 0)
                                r = err_set(r, code, "%s", why);
                        else if (post < 0)
                                r = post;
                }
        }
        for (size_t i = 0; i < n; i++)
                volume_spec_done(&specs[i]);
        free(specs);
        if (r < 0) {
                json_object_put(records);
                return r;
        }
        m->compression = xstrdup("zstd");
        m->compression_level = vc->compression_level;
        m->encrypted = !strv_isempty(vc->recipients);
        m->recipients = strv_copy(vc->recipients);
        m->tool = xstrdup("libarchive");
        m->tool_version = xstrdup(archive_version_string());
        m->extra = json_object_new_object();
        json_object_object_add(m->extra, "volumes", records);
        json_object_object_add(m->extra, "full_every_days", json_object_new_uint64(vc->full_every_days));
        /* The node whose folder holds it (DEST/NODE/, volumes-nodes.h; the runner checked the name), for
         * whoever finds a copy. */
        json_object_object_add(m->extra, "node",
                               json_object_new_string(volumes_node_name(ctx->config, node, sizeof node)));
        return 0;
}

const JobDefinition job_volumes = {
        .name = "volumes",
        .has_retention = true,
        .object_suffixes = (const char *const[]){ "/", NULL },
        .backup = volumes_backup,
};
