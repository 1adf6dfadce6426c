/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <sysexits.h>

#include "jobs/context.h"
#include "store/objects.h"
#include "jobs/volumes.h"
#include "log/log.h"
#include "pipe/catalog.h"
#include "pipe/pipe.h"
#include "pipe/untar.h"
#include "sys/fs.h"
#include "sys/walk.h"

static char *volume_dest(const VolumesRestoreOptions *o, const char *name) {
        const char *rel = name;

        if (o->volume)
                return xstrdup(o->to);
        while (*rel == '/')
                rel++;
        return path_join(o->to, isempty(rel) ? "root" : rel);
}

/* Owner, mode and times of every directory, from the target's catalog: after all layers, since creating
 * and deleting entries changed them. Also counts what the catalog lists and the tree lacks. */
static int directories_fix(const Config *c, Store *s, const Manifest *m, const VolumeRecord *rec, int root,
                           const char *dest, FILE *out, bool dry_run) {
        _cleanup_(catalog_reader_freep) CatalogReader *cr = NULL;
        Source *src = NULL;
        const CatalogEntry *e;
        uint64_t missing = 0;
        int r;

        r = volumes_object_open(c, s, m, rec->catalog, &src);
        if (r < 0)
                return r;
        r = catalog_reader_new(src, &cr);
        if (r < 0)
                return r;
        while ((r = catalog_reader_next(cr, &e)) > 0) {
                _cleanup_close_ int fd = -EBADF;
                struct timespec ts[2];

                if (dry_run) {
                        fprintf(out, "%s%s%s\n", dest, isempty(e->path) ? "" : "/", e->path);
                        continue;
                }
                if (e->type != 'd') {
                        struct stat st;
                        _cleanup_close_ int parent = -EBADF;
                        const char *base;

                        parent = open_parent_beneath(root, e->path, 0, &base);
                        if (parent < 0 || fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                missing++;
                        continue;
                }
                fd = isempty(e->path) ? fcntl(root, F_DUPFD_CLOEXEC, 3)
                                      : open_beneath(root, e->path, O_RDONLY | O_DIRECTORY, 0);
                if (fd < 0) {
                        missing++;
                        continue;
                }
                if (geteuid() == 0 && fchown(fd, e->uid, e->gid) < 0)
                        log_warning("Cannot set the owner of %s/%s: %m", dest, e->path);
                if (fchmod(fd, e->mode) < 0)
                        log_warning("Cannot set the mode of %s/%s: %m", dest, e->path);
                ts[1] = (struct timespec){ .tv_sec = e->mtime_ns / 1000000000,
                                           .tv_nsec = e->mtime_ns % 1000000000 };
                ts[0] = ts[1];
                (void) futimens(fd, ts);
        }
        if (r < 0)
                return r;
        if (missing > 0)
                log_warning("%" PRIu64
                            " entries of the catalog of backup %s are not in the restored tree %s (files "
                            "that vanished while the backup ran).",
                            missing, m->id, dest);
        return 0;
}

static void restore_report(const VolumesRestoreOptions *o, const char *name, const char *dest, size_t n,
                           const TarApplyStats *stats) {
        fprintf(o->out,
                "restored volume %s into %s (%zu backup(s): %" PRIu64 " entries, %" PRIu64 " bytes, %" PRIu64
                " deletions applied)\n",
                name, dest, n, stats->entries, stats->bytes, stats->deleted);
}

/* The restored tree tmp takes the place of dest in one step (RENAME_EXCHANGE); the old content, now at
 * tmp, is removed. Where the file system cannot exchange, dest is moved aside first. */
static int volumes_swap_in(int parent, const char *tmp, const char *dest) {
        const char *tbase = strrchr(tmp, '/') + 1;
        _cleanup_free_ char *aside = NULL;

        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_EXCHANGE) >= 0) {
                (void) remove_tree_beneath(parent, tbase);
                return 0;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != ENOENT) {
                int e = errno;
                (void) remove_tree_beneath(parent, tbase);
                return err_set(-e, EX_CANTCREAT,
                               "cannot swap the restored tree into %s: %s; %s was left as it was", dest,
                               strerror(e), dest);
        }
        aside = xasprintf("%s.skyforge-old", tmp);
        if (rename(dest, aside) < 0 && errno != ENOENT) {
                int e = errno;
                (void) remove_tree_beneath(parent, tbase);
                return err_set(-e, EX_CANTCREAT, "cannot move %s aside: %s; it was left as it was", dest,
                               strerror(e));
        }
        if (rename(tmp, dest) < 0) {
                int e = errno;
                (void) rename(aside, dest);
                (void) remove_tree_beneath(parent, tbase);
                return err_set(-e, EX_CANTCREAT, "cannot move the restored tree to %s: %s", dest,
                               strerror(e));
        }
        (void) remove_tree_beneath(parent, strrchr(aside, '/') + 1);
        return 0;
}

static int restore_one(const Config *c, Store *s, const Manifest *const *chain, size_t n, const char *name,
                       const char *dest, const VolumesRestoreOptions *o) {
        _cleanup_free_ char *d1 = xstrdup(dest), *d2 = xstrdup(dest), *tmp = NULL;
        _cleanup_close_ int root = -EBADF, parent = -EBADF;
        const char *pdir = dirname(d1), *base = basename(d2);
        TarApplyStats stats = {};
        VolumeRecord last;
        struct stat st;
        int r;

        r = volumes_record(chain[n - 1], name, &last);
        if (r < 0)
                return r;
        if (o->dry_run) {
                fprintf(o->out, "would restore volume %s into %s from %s (%s", name, dest, chain[0]->id,
                        n > 1 ? "full, then incrementals" : "full");
                for (size_t i = 1; i < n; i++)
                        fprintf(o->out, " %s", chain[i]->id);
                fprintf(o->out, "):\n");
                return directories_fix(c, s, chain[n - 1], &last, -EBADF, dest, o->out, true);
        }
        if (stat(dest, &st) == 0) {
                _cleanup_close_ int fd = -EBADF;
                _cleanup_(dir_list_freep) DirList *l = NULL;
                const char *first;

                if (!S_ISDIR(st.st_mode))
                        return err_set(-EEXIST, EX_CANTCREAT,
                                       "%s exists and is not a directory; restore into a new "
                                       "or empty directory",
                                       dest);
                fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0 || dir_list_open(fd, NULL, 4096, &l) < 0)
                        return err_set(-errno, EX_CANTCREAT, "cannot read %s: %m", dest);
                if (dir_list_next(l, &first) > 0 && !o->replace)
                        return err_set(-ENOTEMPTY, EX_CANTCREAT,
                                       "%s is not empty; restore volume %s into a new or empty directory "
                                       "(nothing was "
                                       "written)",
                                       dest, name);
        } else if (errno != ENOENT)
                return err_set(-errno, EX_CANTCREAT, "cannot read %s: %m", dest);
        r = mkdir_p(pdir, 0755);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot create %s: %s", pdir, strerror(-r));
        parent = open(pdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot open %s: %m", pdir);
        /* Beside the target, so the rename is atomic; a failed restore leaves no half tree behind. */
        tmp = xasprintf("%s/.%s.skyforge-restore-XXXXXX", pdir, base);
        if (!mkdtemp(tmp))
                return err_set(-errno, EX_CANTCREAT, "cannot create a directory beside %s: %m", dest);
        root = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (root < 0)
                r = err_set(-errno, EX_CANTCREAT, "cannot open %s: %m", tmp);
        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_(tar_reader_freep) TarReader *tr = NULL;
                VolumeRecord rec;
                Source *src = NULL;

                r = volumes_record(chain[i], name, &rec);
                if (r >= 0)
                        r = volumes_object_open(c, s, chain[i], rec.archive, &src);
                if (r >= 0)
                        r = tar_reader_new(src, &tr);
                if (r >= 0)
                        r = tar_reader_apply(tr, root, dest, i > 0 ? VOLUMES_DELETED_MEMBER : NULL, &stats);
        }
        if (r >= 0)
                r = directories_fix(c, s, chain[n - 1], &last, root, dest, o->out, false);
        if (r >= 0 && o->replace) {
                r = volumes_swap_in(parent, tmp, dest);
                return r < 0 ? r : (restore_report(o, name, dest, n, &stats), 0);
        }
        if (r >= 0) {
                (void) rmdir(dest); /* an empty target: replaced */
                if (rename(tmp, dest) < 0)
                        r = err_set(-errno, EX_CANTCREAT, "cannot move the restored tree %s to %s: %m", tmp,
                                    dest);
        }
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                int code = err_exit_code(r);
                const char *tbase = strrchr(tmp, '/') + 1;

                (void) remove_tree_beneath(parent, tbase);
                return err_set(r, code, "%s; restore of volume %s failed, %s was left as it was", why, name,
                               dest);
        }
        restore_report(o, name, dest, n, &stats);
        return 0;
}

int volumes_restore(const Config *c, Store *s, const BackupList *l, const Manifest *m,
                    const VolumesRestoreOptions *o) {
        _cleanup_strv_free_ char **names = volumes_names(m), **problems = xcalloc(1, sizeof(char *));
        const Manifest ***chains = NULL;
        size_t *lens = NULL, n = 0;
        int r = 0;

        if (o->volume && !strv_contains(names, o->volume)) {
                _cleanup_free_ char *all = strv_join(names, ", ");
                return err_set(-ENOENT, EX_NOINPUT, "volumes backup %s holds no volume %s (it holds: %s)",
                               m->id, o->volume, strna(all));
        }
        chains = xcalloc(strv_length(names) + 1, sizeof *chains);
        lens = xcalloc(strv_length(names) + 1, sizeof *lens);
        /* Every object of every chain first: a damaged one fails the restore before anything is written. */
        STRV_FOREACH (v, names) {
                if (o->volume && !streq(*v, o->volume))
                        continue;
                r = volumes_chain(l, m, *v, &chains[n], &lens[n]);
                if (r < 0)
                        break;
                for (size_t i = 0; i < lens[n] && r >= 0; i++) {
                        VolumeRecord rec;
                        char *only[3] = {};

                        r = volumes_record(chains[n][i], *v, &rec);
                        if (r < 0)
                                break;
                        only[0] = (char *) rec.archive;
                        only[1] = (char *) rec.catalog;
                        r = backup_check_objects(s, chains[n][i], only, NULL, &problems);
                }
                n++;
                if (r < 0)
                        break;
                if (!strv_isempty(problems)) {
                        r = err_set(-EBADMSG, EX_DATAERR,
                                    "volumes backup %s cannot be restored: %s; nothing was written (pick "
                                    "another "
                                    "backup from `skyforge-agent list volumes`)",
                                    m->id, problems[0]);
                        break;
                }
        }
        for (size_t i = 0, k = 0; r >= 0 && names[i]; i++) {
                _cleanup_free_ char *dest = NULL;

                if (o->volume && !streq(names[i], o->volume))
                        continue;
                dest = volume_dest(o, names[i]);
                r = restore_one(c, s, chains[k], lens[k], names[i], dest, o);
                k++;
        }
        for (size_t i = 0; i < n; i++)
                free(chains[i]);
        free(chains);
        free(lens);
        return r;
}
