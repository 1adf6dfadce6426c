/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <stdarg.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static int journal_stream = -1;

void log_setup(void) {
        const char *e = getenv("JOURNAL_STREAM");
        struct stat st;
        unsigned long long dev, ino;

        journal_stream = 0;
        if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) >= 0 &&
            (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino)
                journal_stream = 1;
        e = getenv("SKYFORGE_LOG_LEVEL");
        if (e && streq(e, "debug"))
                max_level = LOG_DEBUG;
}

bool log_to_journal(void) {
        if (journal_stream < 0)
                log_setup();
        return journal_stream > 0;
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

static void log_emit(int level, const char *file, int line, const char *func, const char *msg) {
        if (log_to_journal()) {
                char fbuf[256], lbuf[32];
                snprintf(fbuf, sizeof fbuf, "CODE_FILE=%s", file);
                snprintf(lbuf, sizeof lbuf, "CODE_LINE=%d", line);
                sd_journal_send_with_location(fbuf, lbuf, func, "MESSAGE=%s", msg, "PRIORITY=%i", level,
                                              "SYSLOG_IDENTIFIER=skyforge-agent", NULL);
                return;
        }
        if (level <= LOG_ERR)
                fprintf(stderr, "skyforge-agent: %s\n", msg);
        else if (level == LOG_WARNING)
                fprintf(stderr, "skyforge-agent: warning: %s\n", msg);
        else
                fprintf(stderr, "%s\n", msg);
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int saved = errno;

        if (error < 0)
                error = -error;
        if (level > max_level)
                return -error;
        errno = error; /* for %m */
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (msg)
                log_emit(level, file, line, func, msg);
        errno = saved;
        return -error;
}

void log_job_event(int level, const char *message_id, const char *job, const char *backup_id, uint64_t bytes,
                   uint64_t duration_usec, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        struct iovec iov[10];
        _cleanup_free_ char *f[10] = {};
        size_t n = 0;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                return;

        if (!log_to_journal() && level <= max_level)
                log_emit(level, "", 0, "", msg);

        f[n++] = xasprintf("MESSAGE=%s", msg);
        f[n++] = xasprintf("PRIORITY=%d", level);
        f[n++] = xasprintf("MESSAGE_ID=%s", message_id);
        f[n++] = xasprintf("SYSLOG_IDENTIFIER=skyforge-agent");
        if (job)
                f[n++] = xasprintf("SKYFORGE_JOB=%s", job);
        if (backup_id)
                f[n++] = xasprintf("SKYFORGE_BACKUP_ID=%s", backup_id);
        if (bytes != UINT64_MAX)
                f[n++] = xasprintf("SKYFORGE_BYTES=%" PRIu64, bytes);
        if (duration_usec != UINT64_MAX)
                f[n++] = xasprintf("SKYFORGE_DURATION_USEC=%" PRIu64, duration_usec);
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec){ .iov_base = f[i], .iov_len = strlen(f[i]) };
        /* Without a journal (containers, tests) this fails quietly: the line above already went out. */
        (void) sd_journal_sendv(iov, (int) n);
        for (size_t i = 0; i < n; i++)
                free(f[i]);
        memset(f, 0, sizeof f);
}

void log_journal_sync(void) {
        static const char request[] = "{\"method\":\"io.systemd.Journal.Synchronize\",\"parameters\":{}}";
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/io.systemd.journal" };
        _cleanup_close_ int fd = -EBADF;
        char reply[512];

        if (!log_to_journal())
                return;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return;
        /* Varlink: one JSON object, NUL-terminated; the reply comes once journald caught up. */
        if (write_full(fd, request, sizeof request) < 0)
                return;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 2000) > 0) {
                ssize_t k = read(fd, reply, sizeof reply); /* the content does not matter, its arrival does */
                (void) k;
        }
}
