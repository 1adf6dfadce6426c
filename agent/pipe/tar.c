/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "log/log.h"
#include "pipe/tar.h"

#define TAR_READ_BUFFER (64 * 1024)

struct TarWriter {
        struct archive *archive;
        struct archive *disk; /* only to fill entries from stat(), with user and group names */
        Sink *out;
        int sink_error; /* what the sink returned when a write failed; err_set() holds its message */
        char **entries;
        uint64_t data_bytes;
        bool open, finished, aborted;
        uint8_t *buffer;
};

static void archive_entry_freep(struct archive_entry **e) {
        if (*e)
                archive_entry_free(*e);
}

static la_ssize_t write_cb(struct archive *a, void *userdata, const void *buf, size_t n) {
        TarWriter *w = userdata;
        int r = w->aborted ? -ECANCELED : sink_write(w->out, buf, n);

        if (r < 0) {
                w->sink_error = r;
                archive_set_error(a, -r, "%s", strerror(-r));
                return -1;
        }
        return (la_ssize_t) n;
}

void tar_writer_free(TarWriter *w) {
        if (!w)
                return;
        if (w->archive) {
                /* Freeing an open archive writes the end-of-archive marker, but an unfinished archive
                 * must not look complete downstream: the callback drops those writes. (Not
                 * archive_write_fail(): libarchive then leaks its block buffer.) */
                w->aborted = !w->finished;
                archive_write_free(w->archive);
        }
        if (w->disk)
                archive_read_free(w->disk);
        sink_free(w->out);
        strv_free(w->entries);
        free(w->buffer);
        free(w);
}

int tar_writer_new(Sink *out, TarWriter **ret) {
        _cleanup_(tar_writer_freep) TarWriter *w = xcalloc(1, sizeof *w);

        w->out = out;
        w->buffer = xmalloc(TAR_READ_BUFFER);
        w->archive = archive_write_new();
        w->disk = archive_read_disk_new();
        if (!w->archive || !w->disk)
                return -ENOMEM;
        /* pax (restricted): ustar headers, with pax extensions only for long names and large sizes. */
        if (archive_write_set_format_pax_restricted(w->archive) != ARCHIVE_OK ||
            archive_write_add_filter_none(w->archive) != ARCHIVE_OK ||
            archive_read_disk_set_standard_lookup(w->disk) != ARCHIVE_OK ||
            archive_read_disk_set_behavior(w->disk, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
                                                            ARCHIVE_READDISK_NO_FFLAGS) != ARCHIVE_OK)
                return err_set(-EIO, EX_SOFTWARE, "cannot set up the tar writer: %s",
                               archive_error_string(w->archive) ?: archive_error_string(w->disk));
        if (archive_write_open(w->archive, w, NULL, write_cb, NULL) != ARCHIVE_OK)
                return err_set(w->sink_error ?: -EIO, EX_SOFTWARE, "cannot start the tar archive: %s",
                               archive_error_string(w->archive));
        w->open = true;
        *ret = TAKE_PTR(w);
        return 0;
}

static int archive_failed(TarWriter *w, const char *name) {
        /* A sink error was recorded by the sink itself, with the better message. */
        if (w->sink_error < 0)
                return err_message() ? w->sink_error
                                     : err_set(w->sink_error, 0, "cannot write the tar archive: %s",
                                               strerror(-w->sink_error));
        return err_set(-EIO, EX_SOFTWARE, "cannot add %s to the tar archive: %s", name,
                       strna(archive_error_string(w->archive)));
}

static int write_header(TarWriter *w, struct archive_entry *e) {
        /* archive_write_header() may rewrite the pathname (a directory gets its "/"), reallocating the
         * string archive_entry_pathname() returned before: ask again afterwards, never keep the pointer. */
        if (archive_write_header(w->archive, e) < ARCHIVE_WARN)
                return archive_failed(w, archive_entry_pathname(e));
        strv_push(&w->entries, xstrdup(archive_entry_pathname(e)));
        return 0;
}

static int write_data(TarWriter *w, const char *name, const void *data, size_t n) {
        la_ssize_t k = archive_write_data(w->archive, data, n);

        if (k < 0 || (size_t) k != n)
                return archive_failed(w, name);
        w->data_bytes += n;
        return 0;
}

static int add_file_data(TarWriter *w, int fd, const char *path, const char *name, uint64_t size) {
        uint64_t done = 0;

        while (done < size) {
                size_t want = size - done < TAR_READ_BUFFER ? (size_t) (size - done) : TAR_READ_BUFFER;
                ssize_t k = read(fd, w->buffer, want);
                int r;

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return err_set(-errno, EX_IOERR, "cannot read %s: %m", path);
                if (k == 0)
                        /* The header promised size bytes; an archive with a short member is corrupt. */
                        return err_set(-EBUSY, EX_TEMPFAIL, "%s shrank while it was archived: run again",
                                       path);
                r = write_data(w, name, w->buffer, (size_t) k);
                if (r < 0)
                        return r;
                done += (uint64_t) k;
        }
        return 0;
}

static int scandir_filter(const struct dirent *d) {
        return !streq(d->d_name, ".") && !streq(d->d_name, "..");
}

/* Byte order, unlike alphasort(), which follows the locale's collation. */
static int name_cmp(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int add_path(TarWriter *w, const char *path, const char *name, int depth);

static int add_directory_children(TarWriter *w, const char *path, const char *name, int depth) {
        struct dirent **list = NULL;
        int n, r = 0;

        /* Sorted, so the archive lists the same tree the same way every run. */
        n = scandir(path, &list, scandir_filter, name_cmp);
        if (n < 0)
                return err_set(-errno, EX_NOINPUT, "cannot list directory %s: %m", path);
        for (int i = 0; i < n; i++) {
                if (r >= 0) {
                        _cleanup_free_ char *cp = path_join(path, list[i]->d_name);
                        _cleanup_free_ char *cn = xasprintf("%s/%s", name, list[i]->d_name);
                        r = add_path(w, cp, cn, depth + 1);
                }
                free(list[i]);
        }
        free(list);
        return r;
}

static int add_path(TarWriter *w, const char *path, const char *name, int depth) {
        _cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        if (!e)
                return -ENOMEM;
        if (depth > 64)
                return err_set(-ELOOP, EX_DATAERR, "%s is nested more than 64 directories deep", path);
        /* Below the top, symlinks are archived as links, never followed. */
        if ((depth == 0 ? stat(path, &st) : lstat(path, &st)) < 0)
                return err_set(-errno, EX_NOINPUT, "cannot read %s: %m", path);
        if (S_ISREG(st.st_mode)) {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
                if (fd < 0 || fstat(fd, &st) < 0)
                        return err_set(-errno, EX_NOINPUT, "cannot read %s: %m", path);
        } else if (!S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
                log_debug("Skipping %s: not a file, directory or symlink.", path);
                return 0;
        }

        archive_entry_copy_sourcepath(e, path);
        if (archive_read_disk_entry_from_file(w->disk, e, fd, &st) < ARCHIVE_WARN)
                return err_set(-EIO, EX_NOINPUT, "cannot read %s: %s", path, archive_error_string(w->disk));
        archive_entry_copy_pathname(e, name);
        r = write_header(w, e);
        if (r < 0)
                return r;
        if (S_ISREG(st.st_mode))
                return add_file_data(w, fd, path, name, (uint64_t) st.st_size);
        if (S_ISDIR(st.st_mode))
                return add_directory_children(w, path, name, depth);
        return 0;
}

static char *clean_name(const char *s) {
        _cleanup_free_ char *n = xstrdup(s);
        char *p = n;

        while (*p == '/')
                p++;
        for (size_t l = strlen(p); l > 0 && p[l - 1] == '/'; l--)
                p[l - 1] = 0;
        return xstrdup(p);
}

int tar_writer_add_tree(TarWriter *w, const char *dir, const char *prefix) {
        _cleanup_free_ char *name = NULL;
        const char *slash;
        struct stat st;

        if (!w->open || w->finished)
                return -ESTALE;
        if (stat(dir, &st) < 0)
                return err_set(-errno, EX_NOINPUT, "cannot read directory %s: %m", dir);
        if (!S_ISDIR(st.st_mode))
                return err_set(-ENOTDIR, EX_NOINPUT, "%s is not a directory", dir);
        if (!prefix) {
                _cleanup_free_ char *d = clean_name(dir);
                slash = strrchr(d, '/');
                prefix = name = xstrdup(slash ? slash + 1 : d);
        } else
                prefix = name = clean_name(prefix);
        if (isempty(prefix) || streq(prefix, ".") || strstr(prefix, ".."))
                return err_set(-EINVAL, EX_SOFTWARE, "\"%s\" is not a usable name for %s in the archive",
                               prefix, dir);
        return add_path(w, dir, prefix, 0);
}

int tar_writer_add_data(TarWriter *w, const char *name, const void *data, size_t size, mode_t mode) {
        _cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
        uint64_t now = now_usec(CLOCK_REALTIME);
        int r;

        if (!e)
                return -ENOMEM;
        if (!w->open || w->finished)
                return -ESTALE;
        archive_entry_copy_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, mode & 07777);
        archive_entry_set_size(e, (la_int64_t) size);
        archive_entry_set_mtime(e, (time_t) (now / USEC_PER_SEC), 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_copy_uname(e, "root");
        archive_entry_copy_gname(e, "root");
        r = write_header(w, e);
        if (r < 0)
                return r;
        return size > 0 ? write_data(w, name, data, size) : 0;
}

int tar_writer_finish(TarWriter *w) {
        if (!w->open || w->finished)
                return -ESTALE;
        if (archive_write_close(w->archive) != ARCHIVE_OK)
                return archive_failed(w, "the end-of-archive marker");
        w->finished = true;
        return sink_finish(w->out);
}

char *const *tar_writer_entries(const TarWriter *w) {
        return w->entries;
}

uint64_t tar_writer_data_bytes(const TarWriter *w) {
        return w->data_bytes;
}
