/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sysexits.h>

#include "log/log.h"
#include "sys/spool.h"
#include "shared/util.h"

struct Spool {
        FILE *f;
        char *dir;
        char *line;
        size_t cap;
};

int spool_new(const char *dir, Spool **ret) {
        _cleanup_close_ int fd = -EBADF;
        Spool *s;
        FILE *f;

        (void) mkdir_p(dir, 0700);
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                return err_set(-errno, EX_CANTCREAT,
                               "cannot create a scratch file in work_dir %s: %m (set work_dir in [agent])", dir);
        f = fdopen(fd, "w+");
        if (!f)
                return err_set(-ENOMEM, EX_OSERR, "out of memory");
        TAKE_FD(fd);
        s = xcalloc(1, sizeof *s);
        s->f = f;
        s->dir = xstrdup(dir);
        *ret = s;
        return 0;
}

int spool_add(Spool *s, const char *name) {
        size_t n = strlen(name) + 1;

        if (fwrite(name, 1, n, s->f) != n)
                return err_set(-EIO, EX_IOERR, "cannot write to work_dir %s (is it full?)", s->dir);
        return 0;
}

int spool_rewind(Spool *s) {
        if (fflush(s->f) != 0 || fseek(s->f, 0, SEEK_SET) != 0)
                return err_set(-errno, EX_IOERR, "cannot reread the scratch file in work_dir %s: %m", s->dir);
        return 0;
}

int spool_read(Spool *s, size_t max, char ***ret) {
        char **l = xcalloc(1, sizeof(char *));
        size_t n = 0;

        while (n < max && getdelim(&s->line, &s->cap, 0, s->f) > 0) {
                strv_push(&l, xstrdup(s->line));
                n++;
        }
        if (ferror(s->f)) {
                strv_free(l);
                return err_set(-EIO, EX_IOERR, "cannot read the scratch file in work_dir %s", s->dir);
        }
        *ret = l;
        return (int) n;
}

void spool_free(Spool *s) {
        if (!s)
                return;
        fclose(s->f);
        free(s->line);
        free(s->dir);
        free(s);
}
