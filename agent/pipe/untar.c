/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sysexits.h>

#include "log/log.h"
#include "pipe/untar.h"
#include "sys/fs.h"
#include "sys/walk.h"

#define TAR_READ_BUFFER (64 * 1024)

struct TarReader {
        struct archive *archive;
        Source *in;
        int source_error;
        uint8_t *buffer;
};

static la_ssize_t read_cb(struct archive *a, void *userdata, const void **buf) {
        TarReader *r = userdata;
        ssize_t k = source_read(r->in, r->buffer, TAR_READ_BUFFER);

        if (k < 0) {
                r->source_error = (int) k;
                archive_set_error(a, (int) -k, "%s", strerror((int) -k));
                return -1;
        }
        *buf = r->buffer;
        return (la_ssize_t) k;
}

void tar_reader_free(TarReader *r) {
        if (!r)
                return;
        if (r->archive)
                archive_read_free(r->archive);
        source_free(r->in);
        free(r->buffer);
        free(r);
}

int tar_reader_new(Source *in, TarReader **ret) {
        _cleanup_(tar_reader_freep) TarReader *r = xcalloc(1, sizeof *r);

        r->in = in;
        r->buffer = xmalloc(TAR_READ_BUFFER);
        r->archive = archive_read_new();
        if (!r->archive)
                return -ENOMEM;
        if (archive_read_support_format_tar(r->archive) != ARCHIVE_OK ||
            archive_read_open(r->archive, r, NULL, read_cb, NULL) != ARCHIVE_OK)
                return err_set(r->source_error ?: -EIO, EX_DATAERR, "cannot read the tar archive: %s",
                               strna(archive_error_string(r->archive)));
        *ret = TAKE_PTR(r);
        return 0;
}

static int read_failed(TarReader *r, const char *what) {
        /* The source recorded the better message (a checksum or decompression error). */
        if (r->source_error < 0 && err_message())
                return r->source_error;
        return err_set(r->source_error ?: -EBADMSG, EX_DATAERR, "cannot read %s from the tar archive: %s",
                       what, strna(archive_error_string(r->archive)));
}

/* 1 and the entry, 0 at the end. */
static int next_entry(TarReader *r, struct archive_entry **ret) {
        int k = archive_read_next_header(r->archive, ret);

        if (k == ARCHIVE_EOF)
                return 0;
        if (k < ARCHIVE_WARN)
                return read_failed(r, "the next member");
        return 1;
}

/* A relative name without "." or ".." components or empty ones in the middle. */
static bool name_is_safe(const char *name) {
        const char *p = name;

        if (isempty(name) || name[0] == '/')
                return false;
        while (*p) {
                size_t n = strcspn(p, "/");
                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p += n;
                while (*p == '/')
                        p++;
        }
        return true;
}

#define LINK_HOPS_MAX 40 /* as the kernel's MAXSYMLINKS */

/* Whether a symlink in directory dir (relative to root, "" for root) with contents target leads to a
 * place below root. Resolved as the kernel would, following the symlinks already extracted below root;
 * components that do not exist (yet) count as plain names. The resolved prefix never holds a symlink,
 * so fstatat() below only ever meets one at its last component. */
static bool link_stays_inside(int root, const char *dir, const char *target) {
        _cleanup_free_ char *resolved = xstrdup(dir), *rest = NULL;
        unsigned hops = 0;
        size_t i = 0;

        if (isempty(target) || target[0] == '/')
                return false;
        rest = xstrdup(target);
        for (;;) {
                _cleanup_free_ char *name = NULL, *candidate = NULL;
                struct stat st;
                size_t n;

                while (rest[i] == '/')
                        i++;
                if (!rest[i])
                        return true;
                n = strcspn(rest + i, "/");
                name = xstrndup(rest + i, n);
                i += n;
                if (streq(name, "."))
                        continue;
                if (streq(name, "..")) {
                        char *slash = strrchr(resolved, '/');
                        if (isempty(resolved))
                                return false; /* above root */
                        if (slash)
                                *slash = 0;
                        else
                                resolved[0] = 0;
                        continue;
                }
                candidate = isempty(resolved) ? xstrdup(name) : xasprintf("%s/%s", resolved, name);
                if (fstatat(root, candidate, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
                        char link[PATH_MAX];
                        ssize_t k;

                        if (++hops > LINK_HOPS_MAX)
                                return false;
                        k = readlinkat(root, candidate, link, sizeof link);
                        if (k <= 0 || (size_t) k >= sizeof link)
                                return false;
                        link[k] = 0;
                        if (link[0] == '/')
                                return false;
                        /* The link's contents replace its name; the rest follows them. */
                        char *next = xasprintf("%s/%s", link, rest + i);
                        free(rest);
                        rest = next;
                        i = 0;
                        continue;
                }
                free(resolved);
                resolved = TAKE_PTR(candidate);
        }
}

/* The directory part of name ("" at the top), without trailing slashes. */
static char *name_dir(const char *name) {
        size_t n = strlen(name);

        while (n > 0 && name[n - 1] == '/')
                n--;
        while (n > 0 && name[n - 1] != '/')
                n--;
        while (n > 0 && name[n - 1] == '/')
                n--;
        return xstrndup(name, n);
}

/* What a restored file or directory may be: no setuid, setgid or sticky bit, nothing writable by group or
 * others, whatever the archive says. */
static mode_t safe_perm(mode_t perm) {
        return perm & 0755;
}

static int extract_failed(const char *name, const char *dir, int r) {
        if (r == -ELOOP || r == -EXDEV)
                return err_set(-ELOOP, EX_CANTCREAT,
                               "cannot extract %s into %s: a symlink is in its way, and nothing is ever "
                               "written through a symlink (remove it from %s, or restore into an empty "
                               "directory); nothing more was extracted",
                               name, dir, dir);
        return err_set(r, EX_CANTCREAT, "cannot extract %s into %s: %s; nothing more was extracted", name,
                       dir, strerror(-r));
}

static int write_at(int fd, const void *buf, size_t size, off_t offset) {
        const uint8_t *p = buf;

        while (size > 0) {
                ssize_t k = pwrite(fd, p, size, offset);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                size -= (size_t) k;
                offset += k;
        }
        return 0;
}

static int copy_data(TarReader *r, int fd, const char *name, const char *dir) {
        la_int64_t end = 0;

        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t offset;
                int k = archive_read_data_block(r->archive, &buf, &size, &offset);

                if (k == ARCHIVE_EOF)
                        break;
                if (k < ARCHIVE_WARN)
                        return read_failed(r, name);
                k = write_at(fd, buf, size, (off_t) offset);
                if (k < 0)
                        return extract_failed(name, dir, k);
                end = MAX(end, offset + (la_int64_t) size);
        }
        /* A sparse file may end in a hole. */
        if (ftruncate(fd, MAX(end, 0)) < 0)
                return extract_failed(name, dir, -errno);
        return 0;
}

static void set_times(int fd, struct archive_entry *e) {
        struct timespec ts[2];

        if (!archive_entry_mtime_is_set(e))
                return;
        ts[1] = (struct timespec){ .tv_sec = archive_entry_mtime(e),
                                   .tv_nsec = archive_entry_mtime_nsec(e) };
        ts[0] = ts[1];
        (void) futimens(fd, ts);
}

/* 1 when it was extracted, 0 when something already there was kept. */
static int extract_file(TarReader *r, int root, struct archive_entry *e, const char *name, const char *dir) {
        _cleanup_close_ int parent = -EBADF, fd = -EBADF;
        const char *base;
        int k;

        parent = open_parent_beneath(root, name, 0700, &base);
        if (parent < 0)
                return extract_failed(name, dir, parent);
        fd = openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST) {
                log_warning("Keeping the existing %s/%s: not overwritten.", dir, name);
                return 0;
        }
        if (fd < 0)
                return extract_failed(name, dir, -errno);
        k = copy_data(r, fd, name, dir);
        if (k < 0) {
                (void) unlinkat(parent, base, 0);
                return k;
        }
        if (fchmod(fd, safe_perm(archive_entry_perm(e))) < 0)
                return extract_failed(name, dir, -errno);
        set_times(fd, e);
        return 1;
}

static int extract_directory(int root, const char *name, const char *dir) {
        _cleanup_close_ int parent = -EBADF;
        const char *base;
        struct stat st;

        parent = open_parent_beneath(root, name, 0700, &base);
        if (parent < 0)
                return extract_failed(name, dir, parent);
        /* Owner-writable while extracting; the archive's mode comes at the end. */
        if (mkdirat(parent, base, 0700) < 0) {
                if (errno != EEXIST)
                        return extract_failed(name, dir, -errno);
                if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return extract_failed(name, dir, -errno);
                if (S_ISLNK(st.st_mode))
                        return extract_failed(name, dir, -ELOOP);
                if (!S_ISDIR(st.st_mode))
                        return extract_failed(name, dir, -ENOTDIR);
        }
        return 1;
}

/* 1 when it was created, 0 when it was skipped. */
static int extract_symlink(int root, const char *name, const char *target, const char *dir) {
        _cleanup_close_ int parent = -EBADF;
        _cleanup_free_ char *link_dir = name_dir(name);
        const char *base;

        if (!link_stays_inside(root, link_dir, target)) {
                log_warning("Not restoring symlink %s -> %s: it points outside %s.", name, target, dir);
                return 0;
        }
        parent = open_parent_beneath(root, name, 0700, &base);
        if (parent < 0)
                return extract_failed(name, dir, parent);
        if (symlinkat(target, parent, base) < 0) {
                if (errno == EEXIST) {
                        log_warning("Keeping the existing %s/%s: not overwritten.", dir, name);
                        return 0;
                }
                return extract_failed(name, dir, -errno);
        }
        return 1;
}

/* A link can be judged inside when it is made and lead outside once the links after it exist (b ->
 * a/l/.. before a/l -> ..): every link is judged again against the whole tree, and goes if it escapes. */
static void recheck_symlinks(int root, char **links, char **entries, const char *dir) {
        STRV_FOREACH(l, links) {
                _cleanup_free_ char *link_dir = name_dir(*l);
                _cleanup_close_ int parent = -EBADF;
                char target[PATH_MAX];
                const char *base;
                ssize_t k;

                parent = open_parent_beneath(root, *l, 0, &base);
                if (parent < 0)
                        continue;
                k = readlinkat(parent, base, target, sizeof target);
                if (k < 0)
                        continue;
                /* A target too long to read whole is judged as leaving. */
                target[MIN((size_t) k, sizeof target - 1)] = 0;
                if ((size_t) k < sizeof target && link_stays_inside(root, link_dir, target))
                        continue;
                log_warning("Not restoring symlink %s -> %s: through the symlinks extracted with it, it "
                            "points outside %s.",
                            *l, target, dir);
                (void) unlinkat(parent, base, 0);
                for (char **e = entries; *e; e++)
                        if (streq(*e, *l)) {
                                free(*e);
                                memmove(e, e + 1, (strv_length(e + 1) + 1) * sizeof(char *));
                                break;
                        }
        }
}

typedef struct DirFixup {
        char *name;
        mode_t perm;
        struct archive_entry *entry; /* for the times */
} DirFixup;

/* Directories get their mode and times last: extracting into them needed them writable, and every
 * file written changed their mtime. */
static void apply_dir_fixups(int root, DirFixup *f, size_t n) {
        for (size_t i = n; i > 0; i--) {
                _cleanup_close_ int fd = open_beneath(root, f[i - 1].name, O_RDONLY | O_DIRECTORY, 0);
                if (fd < 0)
                        continue;
                (void) fchmod(fd, f[i - 1].perm);
                set_times(fd, f[i - 1].entry);
        }
}

static void dir_fixups_free(DirFixup *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(f[i].name);
                archive_entry_free(f[i].entry);
        }
        free(f);
}

int tar_reader_extract(TarReader *r, const char *dir, char ***ret_entries) {
        _cleanup_strv_free_ char **entries = NULL, **links = NULL;
        _cleanup_close_ int root = -EBADF;
        DirFixup *fixups = NULL;
        size_t n_fixups = 0, cap_fixups = 0;
        int k;

        k = mkdir_p(dir, 0700);
        if (k < 0)
                return err_set(k, EX_CANTCREAT, "cannot create %s: %s", dir, strerror(-k));
        /* dir itself may be reached through a symlink (the operator named it); below it, nothing is. */
        root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return err_set(-errno, EX_CANTCREAT, "cannot open %s: %m", dir);
        entries = xcalloc(1, sizeof(char *));
        links = xcalloc(1, sizeof(char *));

        for (;;) {
                struct archive_entry *e;
                _cleanup_free_ char *name = NULL, *path = NULL;
                mode_t type;
                size_t len;

                k = next_entry(r, &e);
                if (k <= 0)
                        break;
                name = xstrdup(archive_entry_pathname(e));
                /* "./x" is x: PostgreSQL's BASE_BACKUP writes "./pg_wal/archive_status/". */
                while (name[0] == '.' && name[1] == '/')
                        memmove(name, name + 2, strlen(name + 2) + 1);
                type = archive_entry_filetype(e);
                if (!name_is_safe(name)) {
                        k = err_set(-EPERM, EX_DATAERR,
                                    "the archive holds an unsafe name \"%s\" (absolute or with ..); "
                                    "nothing more was extracted",
                                    name);
                        break;
                }
                if (archive_entry_hardlink(e) ||
                    (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)) {
                        k = err_set(-EPERM, EX_DATAERR,
                                    "the archive holds \"%s\", which is not a file, directory or "
                                    "symlink; nothing more was extracted",
                                    name);
                        break;
                }
                /* Directories come as "a/"; the entry in the tree is "a". */
                len = strlen(name);
                while (len > 1 && name[len - 1] == '/')
                        len--;
                path = xstrndup(name, len);
                if (type == AE_IFREG)
                        k = extract_file(r, root, e, path, dir);
                else if (type == AE_IFLNK)
                        k = extract_symlink(root, path, strempty(archive_entry_symlink(e)), dir);
                else {
                        k = extract_directory(root, path, dir);
                        if (k > 0) {
                                if (n_fixups == cap_fixups) {
                                        cap_fixups = cap_fixups ? cap_fixups * 2 : 16;
                                        fixups = xrealloc(fixups, cap_fixups * sizeof *fixups);
                                }
                                fixups[n_fixups++] = (DirFixup){ .name = xstrdup(path),
                                                                 .perm = safe_perm(archive_entry_perm(e)),
                                                                 .entry = archive_entry_clone(e) };
                        }
                }
                if (k < 0)
                        break;
                if (k == 0)
                        continue;
                if (type == AE_IFLNK)
                        strv_push(&links, xstrdup(path));
                strv_push(&entries, TAKE_PTR(name));
        }
        /* Also after a failure: what was extracted stays, and must not lead outside either. */
        recheck_symlinks(root, links, entries, dir);
        apply_dir_fixups(root, fixups, n_fixups);
        dir_fixups_free(fixups, n_fixups);
        if (k < 0)
                return k;
        if (ret_entries)
                *ret_entries = TAKE_PTR(entries);
        return 0;
}

int tar_reader_read_member(TarReader *r, const char *name, size_t max, uint8_t **ret_data,
                           size_t *ret_size) {
        for (;;) {
                _cleanup_(sink_freep) Sink *mem = NULL;
                struct archive_entry *e;
                la_int64_t size;
                int k = next_entry(r, &e);

                if (k < 0)
                        return k;
                if (k == 0)
                        return -ENOENT;
                if (!streq(archive_entry_pathname(e), name) || archive_entry_filetype(e) != AE_IFREG)
                        continue;
                size = archive_entry_size(e);
                if (size < 0 || (uint64_t) size > max)
                        return err_set(-EFBIG, EX_DATAERR, "%s in the archive is larger than %zu bytes",
                                       name, max);
                mem = sink_memory_new();
                for (;;) {
                        uint8_t buf[16384];
                        la_ssize_t n = archive_read_data(r->archive, buf, sizeof buf);
                        if (n < 0)
                                return read_failed(r, name);
                        if (n == 0)
                                break;
                        (void) sink_write(mem, buf, (size_t) n);
                }
                sink_memory_take(mem, ret_data, ret_size);
                return 0;
        }
}

/* ---- applying a layer of a volume chain ---- */

/* The kernel's POSIX ACL xattr: a version, then (tag, perm, id) entries sorted by tag and id. */
#define ACL_XATTR_VERSION 2
typedef struct AclXattrEntry {
        uint16_t tag;
        uint16_t perm;
        uint32_t id;
} AclXattrEntry;

static int acl_entry_cmp(const void *a, const void *b) {
        const AclXattrEntry *x = a, *y = b;
        if (x->tag != y->tag)
                return x->tag < y->tag ? -1 : 1;
        return x->id < y->id ? -1 : x->id > y->id;
}

static int apply_acl(int fd, struct archive_entry *e, int type, const char *xattr_name) {
        AclXattrEntry items[512];
        size_t n = 0;
        int etype, permset, tag, qual;
        const char *qname;
        uint8_t buf[4 + sizeof items];

        /* None in the archive: none on the file either, not one inherited from a default ACL of the
         * directory it was created in. */
        if (archive_entry_acl_reset(e, type) <= 0) {
                if (fremovexattr(fd, xattr_name) < 0 && errno != ENODATA && errno != ENOTSUP)
                        return -errno;
                return 0;
        }
        while (n < ELEMENTSOF(items) &&
               archive_entry_acl_next(e, type, &etype, &permset, &tag, &qual, &qname) == ARCHIVE_OK) {
                uint16_t t;
                switch (tag) {
                case ARCHIVE_ENTRY_ACL_USER_OBJ:
                        t = 0x01;
                        break;
                case ARCHIVE_ENTRY_ACL_USER:
                        t = 0x02;
                        break;
                case ARCHIVE_ENTRY_ACL_GROUP_OBJ:
                        t = 0x04;
                        break;
                case ARCHIVE_ENTRY_ACL_GROUP:
                        t = 0x08;
                        break;
                case ARCHIVE_ENTRY_ACL_MASK:
                        t = 0x10;
                        break;
                case ARCHIVE_ENTRY_ACL_OTHER:
                        t = 0x20;
                        break;
                default:
                        continue;
                }
                items[n++] = (AclXattrEntry){
                        .tag = t,
                        .perm = (uint16_t) (permset & 7),
                        .id = (t == 0x02 || t == 0x08) ? (uint32_t) qual : UINT32_MAX,
                };
        }
        if (n == 0)
                return fremovexattr(fd, xattr_name) < 0 && errno != ENODATA && errno != ENOTSUP ? -errno : 0;
        qsort(items, n, sizeof *items, acl_entry_cmp);
        buf[0] = ACL_XATTR_VERSION;
        buf[1] = buf[2] = buf[3] = 0;
        for (size_t i = 0; i < n; i++) {
                uint8_t *p = buf + 4 + 8 * i;
                p[0] = (uint8_t) items[i].tag;
                p[1] = (uint8_t) (items[i].tag >> 8);
                p[2] = (uint8_t) items[i].perm;
                p[3] = (uint8_t) (items[i].perm >> 8);
                for (int b = 0; b < 4; b++)
                        p[4 + b] = (uint8_t) (items[i].id >> (8 * b));
        }
        if (fsetxattr(fd, xattr_name, buf, 4 + 8 * n, 0) < 0)
                return -errno;
        return 0;
}

/* Owner, mode, ACLs, xattrs and mtime of a regular file or directory from its entry. Mode and owner of a
 * directory come later (the caller's final pass). */
static void apply_metadata(int fd, struct archive_entry *e, const char *name, bool is_dir) {
        const char *xname;
        const void *value;
        size_t size;

        if (!is_dir && geteuid() == 0 &&
            fchown(fd, (uid_t) archive_entry_uid(e), (gid_t) archive_entry_gid(e)) < 0)
                log_warning("Cannot set the owner of %s: %m", name);
        /* After the owner (chown() clears setuid and setgid), before the ACL: with an ACL the group bits
         * are its mask, and libarchive's mode holds the owning group's bits instead. */
        if (!is_dir && fchmod(fd, archive_entry_perm(e) & 07777) < 0)
                log_warning("Cannot set the mode of %s: %m", name);
        if (apply_acl(fd, e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, "system.posix_acl_access") < 0)
                log_warning("Cannot set the ACL of %s: %m", name);
        if (is_dir && apply_acl(fd, e, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, "system.posix_acl_default") < 0)
                log_warning("Cannot set the default ACL of %s: %m", name);
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &xname, &value, &size) == ARCHIVE_OK)
                if (fsetxattr(fd, xname, value, size, 0) < 0)
                        log_warning("Cannot set xattr %s of %s: %m", xname, name);
        if (!is_dir)
                set_times(fd, e);
}

/* Makes room for a new entry at parent/base: whatever is there goes (a directory with its contents, unless
 * the new entry is a directory too). 1 when a directory is there and stays. */
static int make_room(int root, const char *path, int parent, const char *base, bool keep_dir) {
        struct stat st;

        if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode)) {
                if (keep_dir)
                        return 1;
                return remove_tree_beneath(root, path);
        }
        if (unlinkat(parent, base, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static int apply_deleted_list(TarReader *r, int root, const char *dir, TarApplyStats *stats) {
        _cleanup_free_ char *path = xmalloc(PATH_MAX * 4 + 1);
        size_t n = 0;

        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t offset;
                int k = archive_read_data_block(r->archive, &buf, &size, &offset);

                if (k == ARCHIVE_EOF)
                        break;
                if (k < ARCHIVE_WARN)
                        return read_failed(r, "the list of deleted paths");
                for (size_t i = 0; i < size; i++) {
                        char c = ((const char *) buf)[i];
                        if (c != 0) {
                                if (n >= PATH_MAX * 4)
                                        return err_set(-ENAMETOOLONG, EX_DATAERR,
                                                       "the list of deleted paths holds a name longer than "
                                                       "%d bytes",
                                                       PATH_MAX * 4);
                                path[n++] = c;
                                continue;
                        }
                        bool dir_only = n > 1 && path[n - 1] == '/';

                        while (n > 1 && path[n - 1] == '/')
                                n--;
                        path[n] = 0;
                        n = 0;
                        if (!name_is_safe(path))
                                return err_set(-EPERM, EX_DATAERR,
                                               "the list of deleted paths holds an unsafe name \"%s\"; "
                                               "nothing more "
                                               "was restored",
                                               path);
                        if (dir_only) {
                                /* "NAME/": a directory that became something else, which an earlier
                                 * entry of this archive may already have put there. */
                                _cleanup_close_ int d = open_beneath(root, path, O_RDONLY | O_DIRECTORY, 0);
                                if (d < 0)
                                        continue;
                        }
                        k = remove_tree_beneath(root, path);
                        if (k < 0)
                                return err_set(k, EX_CANTCREAT, "cannot remove %s/%s: %s", dir, path,
                                               strerror(-k));
                        stats->deleted++;
                }
        }
        return 0;
}

static int apply_entry(TarReader *r, int root, struct archive_entry *e, const char *path, const char *dir,
                       TarApplyStats *stats) {
        _cleanup_close_ int parent = -EBADF, fd = -EBADF;
        mode_t type = archive_entry_filetype(e);
        const char *hardlink = archive_entry_hardlink(e), *base;
        int k;

        parent = open_parent_beneath(root, path, 0700, &base);
        if (parent < 0)
                return extract_failed(path, dir, parent);

        if (hardlink) {
                _cleanup_free_ char *target = xstrdup(hardlink);
                _cleanup_close_ int tparent = -EBADF;
                const char *tbase;
                size_t len = strlen(target);

                while (len > 1 && target[len - 1] == '/')
                        target[--len] = 0;
                if (!name_is_safe(target))
                        return err_set(-EPERM, EX_DATAERR,
                                       "the archive holds a hard link %s to an unsafe name \"%s\"; nothing "
                                       "more was "
                                       "restored",
                                       path, target);
                tparent = open_parent_beneath(root, target, 0, &tbase);
                if (tparent < 0)
                        return extract_failed(path, dir, tparent);
                k = make_room(root, path, parent, base, false);
                if (k < 0)
                        return extract_failed(path, dir, k);
                /* No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never its target. */
                if (linkat(tparent, tbase, parent, base, 0) < 0)
                        return extract_failed(path, dir, -errno);
                return 1;
        }

        switch (type) {
        case AE_IFREG:
                k = make_room(root, path, parent, base, false);
                if (k < 0)
                        return extract_failed(path, dir, k);
                fd = openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return extract_failed(path, dir, -errno);
                k = copy_data(r, fd, path, dir);
                if (k < 0)
                        return k;
                /* copy_data() truncates to the end of the data; a sparse file may end in a hole. */
                if (archive_entry_size_is_set(e) && ftruncate(fd, (off_t) archive_entry_size(e)) < 0)
                        return extract_failed(path, dir, -errno);
                stats->bytes += (uint64_t) MAX(archive_entry_size(e), 0);
                apply_metadata(fd, e, path, false);
                return 1;
        case AE_IFDIR:
                k = make_room(root, path, parent, base, true);
                if (k < 0)
                        return extract_failed(path, dir, k);
                if (k == 0 && mkdirat(parent, base, 0700) < 0)
                        return extract_failed(path, dir, -errno);
                fd = openat(parent, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return extract_failed(path, dir, -errno);
                apply_metadata(fd, e, path, true);
                return 1;
        case AE_IFLNK: {
                struct timespec ts[2];

                k = make_room(root, path, parent, base, false);
                if (k < 0)
                        return extract_failed(path, dir, k);
                if (symlinkat(strempty(archive_entry_symlink(e)), parent, base) < 0)
                        return extract_failed(path, dir, -errno);
                if (geteuid() == 0)
                        (void) fchownat(parent, base, (uid_t) archive_entry_uid(e),
                                        (gid_t) archive_entry_gid(e), AT_SYMLINK_NOFOLLOW);
                ts[1] = (struct timespec){ .tv_sec = archive_entry_mtime(e),
                                           .tv_nsec = archive_entry_mtime_nsec(e) };
                ts[0] = ts[1];
                (void) utimensat(parent, base, ts, AT_SYMLINK_NOFOLLOW);
                return 1;
        }
        default:
                return err_set(
                        -EPERM, EX_DATAERR,
                        "the archive holds \"%s\", which is not a file, directory, symlink or hard link; "
                        "nothing more was restored",
                        path);
        }
}

int tar_reader_apply(TarReader *r, int root_fd, const char *dir, const char *deleted_member,
                     TarApplyStats *stats) {
        int k;

        for (;;) {
                _cleanup_free_ char *path = NULL;
                struct archive_entry *e;
                const char *name;
                size_t len;

                if (cancel_requested())
                        return err_set(-ECANCELED, EX_TEMPFAIL, "cancelled; nothing more was restored");
                k = next_entry(r, &e);
                if (k <= 0)
                        return k;
                name = archive_entry_pathname(e);
                if (!name)
                        return err_set(-EBADMSG, EX_DATAERR, "the archive holds a member without a name");
                path = xstrdup(name);
                len = strlen(path);
                while (len > 1 && path[len - 1] == '/')
                        path[--len] = 0;
                if (streq(path, ".") || streq(path, "./")) {
                        /* The root: its xattrs and ACLs now, owner, mode and times with the other
                         * directories at the end. */
                        if (archive_entry_filetype(e) != AE_IFDIR)
                                return err_set(-EPERM, EX_DATAERR,
                                               "the archive's root \".\" is not a directory");
                        apply_metadata(root_fd, e, dir, true);
                        continue;
                }
                if (!name_is_safe(path))
                        return err_set(-EPERM, EX_DATAERR,
                                       "the archive holds an unsafe name \"%s\" (absolute or with ..); "
                                       "nothing more "
                                       "was restored",
                                       path);
                if (deleted_member && streq(path, deleted_member) && archive_entry_filetype(e) == AE_IFREG &&
                    !archive_entry_hardlink(e)) {
                        k = apply_deleted_list(r, root_fd, dir, stats);
                        if (k < 0)
                                return k;
                        continue;
                }
                k = apply_entry(r, root_fd, e, path, dir, stats);
                if (k < 0)
                        return k;
                stats->entries++;
        }
}
