/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The error slot (err_set() and friends) and Failure values: apart from log.c so that a program that only
 * reports errors (skyforge-wal-fetch) links against libc alone, without libsystemd. */
#include <stdarg.h>
#include <sysexits.h>

#include "log.h"

static _Thread_local char err_buf[2048];
static _Thread_local int err_code;
static _Thread_local int err_error;

int err_set(int error, int exit_code, const char *fmt, ...) {
        char buf[sizeof err_buf];
        va_list ap;
        int saved = errno;

        if (error > 0)
                error = -error;
        errno = -error;
        /* Format aside first: callers often wrap the previous detail, err_set(r, "...: %s", err_message()). */
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        memcpy(err_buf, buf, sizeof buf);
        errno = saved;
        err_code = exit_code;
        err_error = error;
        return error;
}

const char *err_message(void) {
        return err_buf[0] ? err_buf : NULL;
}

void err_clear(void) {
        err_buf[0] = 0;
        err_code = 0;
        err_error = 0;
}

void failure_capture(Failure *f, int error) {
        if (error >= 0 || f->error < 0)
                return;
        f->error = error;
        f->exit_code = err_exit_code(error);
        f->message = xstrdup(err_message() ?: strerror(-error));
}

int failure_raise(const Failure *f) {
        if (f->error >= 0)
                return 0;
        return err_set(f->error, f->exit_code, "%s", strempty(f->message));
}

void failure_done(Failure *f) {
        free(f->message);
        *f = (Failure){};
}

Failure failure_take(int error) {
        Failure f = {};

        failure_capture(&f, error);
        err_clear();
        return f;
}

void err_save(ErrSaved *s, int error) {
        failure_capture(s, error);
}

int err_restore(const ErrSaved *s) {
        return err_set(s->error, s->exit_code, "%s", strempty(s->message));
}

void err_saved_done(ErrSaved *s) {
        failure_done(s);
}

ErrKeep err_keep_begin(void) {
        return (ErrKeep){ .error = err_error,
                          .exit_code = err_code,
                          .message = err_buf[0] ? xstrdup(err_buf) : NULL };
}

void err_keep_end(ErrKeep *k) {
        if (k->message) {
                snprintf(err_buf, sizeof err_buf, "%s", k->message);
                free(k->message);
                k->message = NULL;
        } else
                err_buf[0] = 0;
        err_code = k->exit_code;
        err_error = k->error;
}

int err_exit_code(int error) {
        if (error == 0)
                return EX_OK;
        if (err_code > 0 && err_buf[0])
                return err_code;
        switch (error < 0 ? -error : error) {
        case ECONNREFUSED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ETIMEDOUT:
        case ECONNRESET:
        case EHOSTDOWN:
        case ECONNABORTED:
                return EX_UNAVAILABLE;
        case EACCES:
        case EPERM:
                return EX_NOPERM;
        case EBADMSG:
        case EPROTO:
        case EILSEQ:
                return EX_DATAERR;
        case ENOENT:
        case ENOMEDIUM:
                return EX_NOINPUT;
        case ENOSPC:
        case EROFS:
                return EX_CANTCREAT;
        case EIO:
        case EPIPE:
                return EX_IOERR;
        case EINTR:
        case ECANCELED:
                return EX_TEMPFAIL;
        default:
                return EX_SOFTWARE;
        }
}
