/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/xattr.h>
#include <sysexits.h>

#include "log/log.h"
#include "pipe/tar-volume.h"

#define VOLUME_TAR_BUFFER (256 * 1024)

struct VolumeTar {
        struct archive *archive;
        /* Readers of an entry's metadata, by [may have holes][has extended attributes]: looking for holes
         * costs several lseek()s and most files have none; reading ACLs and extended attributes costs
         * three system calls (libacl's fgetxattr() and fstat(), libarchive's flistxattr()) and most files
         * have none either, which one flistxattr() tells (an ACL is an extended attribute). */
        struct archive *disk[2][2];
        struct archive_entry_linkresolver *links;
        Sink *out;
        int sink_error;
        bool finished, aborted;
        uint64_t data_bytes;
        uint64_t bytes; /* of the archive */
        uint8_t *buffer;
};

static void entry_freep(struct archive_entry **e) {
        if (*e)
                archive_entry_free(*e);
}

static la_ssize_t write_cb(struct archive *a, void *userdata, const void *buf, size_t n) {
        VolumeTar *t = userdata;
        int r = t->aborted ? -ECANCELED : sink_write(t->out, buf, n);

        if (r < 0) {
                t->sink_error = r;
                archive_set_error(a, -r, "%s", strerror(-r));
                return -1;
        }
        t->bytes += n;
        return (la_ssize_t) n;
}

void volume_tar_free(VolumeTar *t) {
        if (!t)
                return;
        if (t->archive) {
                /* An unfinished archive must not look complete downstream (see tar.c). */
                t->aborted = !t->finished;
                archive_write_free(t->archive);
        }
        for (size_t i = 0; i < 4; i++)
                if (t->disk[i / 2][i % 2])
                        archive_read_free(t->disk[i / 2][i % 2]);
        if (t->links)
                archive_entry_linkresolver_free(t->links);
        sink_free(t->out);
        free(t->buffer);
        free(t);
}

int volume_tar_new(Sink *out, VolumeTar **ret) {
        _cleanup_(volume_tar_freep) VolumeTar *t = xcalloc(1, sizeof *t);

        t->out = out;
        t->buffer = xmalloc(VOLUME_TAR_BUFFER);
        t->archive = archive_write_new();
        t->links = archive_entry_linkresolver_new();
        if (!t->archive || !t->links)
                return -ENOMEM;
        for (int sparse = 0; sparse < 2; sparse++)
                for (int xattrs = 0; xattrs < 2; xattrs++) {
                        struct archive *d = archive_read_disk_new();
                        int flags = ARCHIVE_READDISK_NO_FFLAGS |
                                    (sparse ? 0 : ARCHIVE_READDISK_NO_SPARSE) |
                                    (xattrs ? 0 : ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL);

                        if (!d)
                                return -ENOMEM;
                        t->disk[sparse][xattrs] = d;
                        if (archive_read_disk_set_behavior(d, flags) != ARCHIVE_OK)
                                return err_set(-EIO, EX_SOFTWARE, "cannot set up the tar writer: %s",
                                               archive_error_string(d));
                }
        archive_entry_linkresolver_set_strategy(t->links, ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE);
        /* Full pax: nanosecond mtimes on every entry. No user or group names: owners are numeric. No
         * blocking (bytes per block 0): file data goes from our read buffer straight to the sink instead
         * of through a copy into libarchive's block buffer; what follows pads and frames it. */
        if (archive_write_set_format_pax(t->archive) != ARCHIVE_OK ||
            archive_write_add_filter_none(t->archive) != ARCHIVE_OK ||
            archive_write_set_bytes_per_block(t->archive, 0) != ARCHIVE_OK)
                return err_set(-EIO, EX_SOFTWARE, "cannot set up the tar writer: %s",
                               archive_error_string(t->archive));
        if (archive_write_open(t->archive, t, NULL, write_cb, NULL) != ARCHIVE_OK)
                return err_set(t->sink_error ?: -EIO, EX_SOFTWARE, "cannot start the tar archive: %s",
                               archive_error_string(t->archive));
        *ret = TAKE_PTR(t);
        return 0;
}

static int archive_failed(VolumeTar *t, const char *name) {
        if (t->sink_error < 0)
                return err_message() ? t->sink_error
                                     : err_set(t->sink_error, 0, "cannot write the tar archive: %s",
                                               strerror(-t->sink_error));
        return err_set(-EIO, EX_SOFTWARE, "cannot add %s to the tar archive: %s", name,
                       strna(archive_error_string(t->archive)));
}

static int write_data(VolumeTar *t, const char *name, const void *data, size_t n) {
        la_ssize_t k = archive_write_data(t->archive, data, n);

        if (k < 0 || (size_t) k != n)
                return archive_failed(t, name);
        t->data_bytes += n;
        return 0;
}

/* size bytes of fd from offset 0; a file that shrank meanwhile is padded with zeros (and caught as
 * changed by the caller's second stat). */
static int copy_data(VolumeTar *t, int fd, const char *name, const char *path, uint64_t size) {
        uint64_t done = 0;
        bool eof = false;

        while (done < size) {
                size_t want = size - done < VOLUME_TAR_BUFFER ? (size_t) (size - done) : VOLUME_TAR_BUFFER;
                ssize_t k = 0;
                int r;

                if (!eof)
                        k = pread(fd, t->buffer, want, (off_t) done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return err_set(-errno, EX_IOERR, "cannot read %s: %m", path);
                if (k == 0) {
                        eof = true;
                        memset(t->buffer, 0, want);
                        k = (ssize_t) want;
                }
                r = write_data(t, name, t->buffer, (size_t) k);
                if (r < 0)
                        return r;
                done += (uint64_t) k;
        }
        return 0;
}

static bool stat_changed(const struct stat *a, const struct stat *b) {
        return a->st_size != b->st_size || a->st_mtim.tv_sec != b->st_mtim.tv_sec ||
               a->st_mtim.tv_nsec != b->st_mtim.tv_nsec || a->st_ctim.tv_sec != b->st_ctim.tv_sec ||
               a->st_ctim.tv_nsec != b->st_ctim.tv_nsec;
}

/* Whether the entry may carry extended attributes (POSIX ACLs among them); when unsure, yes. */
static bool has_xattrs(int fd, const char *source_path, const struct stat *st) {
        ssize_t k = fd >= 0 && !S_ISLNK(st->st_mode) ? flistxattr(fd, NULL, 0)
                                                     : llistxattr(source_path, NULL, 0);

        return k != 0 && !(k < 0 && (errno == ENOTSUP || errno == ENOSYS));
}

static int entry_new(VolumeTar *t, const char *name, int fd, const char *source_path, const struct stat *st,
                     struct archive_entry **ret) {
        struct archive_entry *e = archive_entry_new();

        if (!e)
                return -ENOMEM;
        /* A file with as many blocks as its size needs has no holes: no need to ask (several lseek()s). */
        bool sparse = S_ISREG(st->st_mode) && (uint64_t) st->st_blocks * 512 < (uint64_t) st->st_size;
        struct archive *disk = t->disk[sparse][has_xattrs(fd, source_path, st)];

        archive_entry_copy_sourcepath(e, source_path);
        if (archive_read_disk_entry_from_file(disk, e, fd, st) < ARCHIVE_WARN) {
                int r = err_set(-EIO, EX_NOINPUT, "cannot read %s: %s", source_path,
                                strna(archive_error_string(disk)));
                archive_entry_free(e);
                return r;
        }
        archive_entry_copy_pathname(e, name);
        /* Times the restore does not set; they would only make every header longer. */
        archive_entry_unset_atime(e);
        archive_entry_unset_ctime(e);
        archive_entry_unset_birthtime(e);
        *ret = e;
        return 0;
}

int volume_tar_add(VolumeTar *t, const char *name, int fd, const char *source_path, const struct stat *st,
                   VolumeTarReadHook hook, void *hook_userdata, VolumeTarResult *ret) {
        struct stat before = *st, after;
        int r;

        if (t->finished)
                return -ESTALE;
        *ret = (VolumeTarResult){ .st = *st };
        for (unsigned attempt = 1;; attempt++) {
                _cleanup_(entry_freep) struct archive_entry *e = NULL;
                struct archive_entry *spare = NULL;

                r = entry_new(t, name, fd, source_path, &before, &e);
                if (r < 0)
                        return r;
                /* Only the first copy goes through the link resolver: a second copy replaces the data
                 * of the name, which later links point to. */
                if (attempt == 1 && S_ISREG(before.st_mode) && before.st_nlink > 1) {
                        archive_entry_linkify(t->links, &e, &spare);
                        if (spare)
                                archive_entry_free(spare);
                }
                if (!e)
                        return 0;
                if (archive_write_header(t->archive, e) < ARCHIVE_WARN)
                        return archive_failed(t, name);
                ret->st = before;
                ret->reads = attempt;
                if (!S_ISREG(before.st_mode) || archive_entry_hardlink(e) || archive_entry_size(e) == 0)
                        return 0;
                r = copy_data(t, fd, name, source_path, (uint64_t) archive_entry_size(e));
                if (r < 0)
                        return r;
                if (hook)
                        hook(source_path, hook_userdata);
                if (fstat(fd, &after) < 0)
                        return err_set(-errno, EX_IOERR, "cannot read %s: %m", source_path);
                if (!stat_changed(&before, &after))
                        return 0;
                if (attempt >= VOLUME_TAR_READS_MAX) {
                        ret->changed = true;
                        return 0;
                }
                log_debug("%s changed while it was read; reading it again.", source_path);
                before = after;
        }
}

int volume_tar_add_fd(VolumeTar *t, const char *name, int fd, uint64_t size) {
        _cleanup_(entry_freep) struct archive_entry *e = archive_entry_new();
        uint64_t now = now_usec(CLOCK_REALTIME);

        if (!e)
                return -ENOMEM;
        archive_entry_copy_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t) size);
        archive_entry_set_mtime(e, (time_t) (now / USEC_PER_SEC), 0);
        if (archive_write_header(t->archive, e) < ARCHIVE_WARN)
                return archive_failed(t, name);
        return copy_data(t, fd, name, name, size);
}

int volume_tar_finish(VolumeTar *t) {
        if (t->finished)
                return -ESTALE;
        if (archive_write_close(t->archive) != ARCHIVE_OK)
                return archive_failed(t, "the end-of-archive marker");
        t->finished = true;
        return sink_finish(t->out);
}

uint64_t volume_tar_data_bytes(const VolumeTar *t) {
        return t->data_bytes;
}

uint64_t volume_tar_bytes(const VolumeTar *t) {
        return t->bytes;
}
