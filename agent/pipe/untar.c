/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <limits.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "log/log.h"
#include "pipe/untar.h"

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

/* Whether a symlink at name with target stays inside the extraction directory, judged by the names
 * alone (nothing on disk is followed). */
static bool link_stays_inside(const char *name, const char *target) {
        int depth = 0;
        const char *p;

        if (isempty(target) || target[0] == '/')
                return false;
        for (p = name; *p; p++) /* the directories above the link */
                if (*p == '/' && p[1] && p[1] != '/')
                        depth++;
        for (p = target; *p;) {
                size_t n = strcspn(p, "/");
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        depth--;
                else if (n > 0 && !(n == 1 && p[0] == '.'))
                        depth++;
                if (depth < 0)
                        return false;
                p += n;
                while (*p == '/')
                        p++;
        }
        return true;
}

static void archive_write_freep(struct archive **a) {
        if (*a)
                archive_write_free(*a);
}

static int copy_data(TarReader *r, struct archive *disk, const char *name) {
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t offset;
                int k = archive_read_data_block(r->archive, &buf, &size, &offset);

                if (k == ARCHIVE_EOF)
                        return 0;
                if (k < ARCHIVE_WARN)
                        return read_failed(r, name);
                if (archive_write_data_block(disk, buf, size, offset) < ARCHIVE_WARN)
                        return err_set(-EIO, EX_CANTCREAT, "cannot write %s: %s", name,
                                       strna(archive_error_string(disk)));
        }
}

int tar_reader_extract(TarReader *r, const char *dir, char ***ret_entries) {
        _cleanup_(archive_write_freep) struct archive *disk = archive_write_disk_new();
        _cleanup_strv_free_ char **entries = NULL;
        char root[PATH_MAX];
        int k;

        if (!disk)
                return -ENOMEM;
        k = mkdir_p(dir, 0700);
        if (k < 0)
                return err_set(k, EX_CANTCREAT, "cannot create %s: %s", dir, strerror(-k));
        /* No symlinks in the prefix, so that libarchive's symlink check only ever sees ours. */
        if (!realpath(dir, root))
                return err_set(-errno, EX_CANTCREAT, "cannot resolve %s: %m", dir);
        archive_write_disk_set_options(disk, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                     ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                     ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                     ARCHIVE_EXTRACT_NO_OVERWRITE);
        archive_write_disk_set_standard_lookup(disk);
        entries = xcalloc(1, sizeof(char *));

        for (;;) {
                struct archive_entry *e;
                _cleanup_free_ char *name = NULL, *path = NULL;
                struct stat st;
                mode_t type;

                k = next_entry(r, &e);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                name = xstrdup(archive_entry_pathname(e));
                type = archive_entry_filetype(e);
                if (!name_is_safe(name))
                        return err_set(-EPERM, EX_DATAERR,
                                       "the archive holds an unsafe name \"%s\" (absolute or with ..); "
                                       "nothing more was extracted", name);
                if (archive_entry_hardlink(e) || (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK))
                        return err_set(-EPERM, EX_DATAERR,
                                       "the archive holds \"%s\", which is not a file, directory or "
                                       "symlink; nothing more was extracted", name);
                if (type == AE_IFLNK && !link_stays_inside(name, archive_entry_symlink(e))) {
                        log_warning("Not restoring symlink %s -> %s: it points outside %s.", name,
                                    archive_entry_symlink(e), dir);
                        continue;
                }
                path = xasprintf("%s/%s", root, name);
                if (type != AE_IFDIR && lstat(path, &st) == 0) {
                        log_warning("Keeping the existing %s: not overwritten.", path);
                        continue;
                }
                archive_entry_copy_pathname(e, path);
                if (archive_write_header(disk, e) < ARCHIVE_WARN)
                        return err_set(-EIO, EX_CANTCREAT, "cannot extract %s into %s: %s", name, dir,
                                       strna(archive_error_string(disk)));
                if (type == AE_IFREG) {
                        k = copy_data(r, disk, name);
                        if (k < 0)
                                return k;
                }
                if (archive_write_finish_entry(disk) < ARCHIVE_WARN)
                        return err_set(-EIO, EX_CANTCREAT, "cannot extract %s into %s: %s", name, dir,
                                       strna(archive_error_string(disk)));
                strv_push(&entries, TAKE_PTR(name));
        }
        if (archive_write_close(disk) != ARCHIVE_OK)
                return err_set(-EIO, EX_CANTCREAT, "cannot finish extracting into %s: %s", dir,
                               strna(archive_error_string(disk)));
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
