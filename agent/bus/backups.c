/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <stdarg.h>
#include <unistd.h>

#include "bus/backups.h"
#include "jobs/job.h"
#include "log/log.h"
#include "shared/util.h"

/* One ListBackups call in flight: the child that lists, the pipe it answers on, and the request. */
struct BackupsCall {
        BusBackups *owner;
        sd_bus_message *request;
        pid_t pid;
        int fd;
        sd_event_source *io, *child, *timer;
        char *buf;
        size_t len, cap;
        bool eof, replied;
        BackupsCall *next;
};

static void call_free(BackupsCall *c) {
        if (!c)
                return;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        /* Owned: freeing the source kills (SIGKILL) and reaps a child still running. */
        sd_event_source_disable_unref(c->child);
        if (c->fd >= 0)
                (void) close(c->fd);
        sd_bus_message_unref(c->request);
        free(c->buf);
        free(c);
}

static void call_unlink_free(BackupsCall *c) {
        for (BackupsCall **p = &c->owner->calls; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        call_free(c);
}

/* ---- the child: list and write one line per backup, or one line "E<TAB>message" ---- */

static _noreturn_ void child_main(const Config *c, const char *job, int fd) {
        _cleanup_(backup_list_done) BackupList l = {};
        sigset_t none;
        FILE *f;
        int r;

        /* Not the daemon's signal handling: die on SIGTERM, and with the daemon. */
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        (void) signal(SIGTERM, SIG_DFL);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
                _exit(EX_SOFTWARE);
        f = fdopen(fd, "w");
        if (!f)
                _exit(EX_OSERR);
        r = job_list_backups(c, job, &l);
        if (r < 0) {
                fprintf(f, "E\t%s\n", err_message() ?: strerror(-r));
                (void) fflush(f);
                _exit(EX_UNAVAILABLE);
        }
        for (size_t i = 0; i < l.n; i++) {
                const Manifest *b = l.items[i];

                fprintf(f, "B\t%s\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%d\n", b->job, b->id,
                        b->started_usec, b->finished_usec, b->bytes, b->encrypted ? 1 : 0);
        }
        _exit(fflush(f) == 0 ? EX_OK : EX_IOERR);
}

/* ---- the daemon's side ---- */

static int reply_error(BackupsCall *c, const char *fmt, ...) _printf_(2, 3);
static int reply_error(BackupsCall *c, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        c->replied = true;
        if (r < 0)
                return -ENOMEM;
        return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED, "cannot list backups: %s", msg);
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;

        if (!s || !*s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        *ret = strtoull(s, &end, 10);
        return errno != 0 || *end ? -EINVAL : 0;
}

/* Splits the next tab-separated field off *p (NULL when the line has no more). */
static char *next_field(char **p) {
        char *s = *p, *tab;

        if (!s)
                return NULL;
        tab = strchr(s, '\t');
        if (tab) {
                *tab = '\0';
                *p = tab + 1;
        } else
                *p = NULL;
        return s;
}

static int reply_from_output(BackupsCall *c, int status) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        char *line, *save = NULL;
        int r;

        c->replied = true;
        if (c->len == c->cap)
                c->buf = xrealloc(c->buf, ++c->cap);
        c->buf[c->len] = '\0';
        if (c->len > 0 && c->buf[0] == 'E' && c->buf[1] == '\t') {
                char *nl = strchr(c->buf + 2, '\n');
                if (nl)
                        *nl = '\0';
                return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED, "cannot list backups: %s",
                                                  c->buf + 2);
        }
        if (status != 0)
                return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED,
                                                  "cannot list backups: the listing process failed (%s %d)",
                                                  status > 128 ? "signal" : "exit status",
                                                  status > 128 ? status - 128 : status);

        r = sd_bus_message_new_method_return(c->request, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sstttb)");
        if (r < 0)
                return r;
        for (line = strtok_r(c->buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *p = line, *kind = next_field(&p), *job = next_field(&p), *id = next_field(&p);
                char *started = next_field(&p), *finished = next_field(&p), *bytes = next_field(&p);
                char *enc = next_field(&p);
                uint64_t s, f, b;

                if (!enc || !streq(kind, "B") || parse_u64(started, &s) < 0 || parse_u64(finished, &f) < 0 ||
                    parse_u64(bytes, &b) < 0)
                        return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED,
                                                          "cannot list backups: garbled answer from the "
                                                          "listing process");
                r = sd_bus_message_append(reply, "(sstttb)", job, id, s, f, b, streq(enc, "1"));
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Reads what the pipe has; true at end of file. Over the cap the child is killed and the call answered. */
static bool call_read(BackupsCall *c) {
        for (;;) {
                ssize_t n;

                if (c->cap - c->len < 4096) {
                        c->cap = MAX(c->cap * 2, (size_t) 8192);
                        c->buf = xrealloc(c->buf, c->cap);
                }
                n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
                if (n > 0) {
                        c->len += (size_t) n;
                        if (c->len > BUS_BACKUPS_MAX_REPLY && !c->replied) {
                                (void) kill(c->pid, SIGKILL);
                                (void) reply_error(c, "the listing is larger than %u MiB",
                                                   BUS_BACKUPS_MAX_REPLY >> 20);
                        }
                        if (c->len > BUS_BACKUPS_MAX_REPLY)
                                c->len = 0; /* answered: keep draining, keep nothing */
                        continue;
                }
                if (n == 0)
                        return true;
                if (errno == EINTR)
                        continue;
                return errno != EAGAIN; /* a read error ends the stream too */
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        BackupsCall *c = userdata;

        if (call_read(c)) {
                c->eof = true;
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        }
        return 0;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        BackupsCall *c = userdata;
        int status = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status, r;

        /* The child is gone, its end of the pipe closed: what is left in the pipe is all there is. */
        if (!c->eof)
                (void) call_read(c);
        if (!c->replied) {
                r = reply_from_output(c, status);
                if (r < 0)
                        log_warning_errno(r, "Failed to answer ListBackups: %m, ignoring.");
        }
        /* sd-event reaps the child after this returns; the source must not kill it again. */
        (void) sd_event_source_set_child_process_own(c->child, false);
        call_unlink_free(c);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        BackupsCall *c = userdata;
        int r;

        (void) kill(c->pid, SIGKILL);
        if (!c->replied) {
                r = reply_error(c, "the stores did not answer within %" PRIu64 " s (is the store reachable?)",
                                BUS_BACKUPS_TIMEOUT_USEC / USEC_PER_SEC);
                if (r < 0)
                        log_warning_errno(r, "Failed to answer ListBackups: %m, ignoring.");
        }
        return 0;
}

static int reply_empty(sd_bus_message *request) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(request, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sstttb)");
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        return r < 0 ? r : 1;
}

int bus_backups_start(BusBackups *b, sd_bus_message *request, const char *job, sd_bus_error *error) {
        int fds[2];
        BackupsCall *c;
        size_t pending = 0;
        int r;

        /* Jobs without manifests (mirror) have no backups to list; neither has a daemon without config. */
        if (!b->config || (job && !strv_contains((char **) job_listable, job)))
                return reply_empty(request);
        for (BackupsCall *p = b->calls; p; p = p->next)
                pending++;
        if (pending >= BUS_BACKUPS_MAX_PENDING)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "%zu listings of backups are already running; try again when they end",
                                         pending);
        if (pipe2(fds, O_CLOEXEC) < 0)
                return sd_bus_error_set_errnof(error, errno, "cannot list backups: pipe: %m");

        c = xmalloc(sizeof *c);
        *c = (BackupsCall){ .owner = b, .request = sd_bus_message_ref(request), .fd = -EBADF };
        c->pid = fork();
        if (c->pid < 0) {
                r = -errno;
                (void) close(fds[0]);
                (void) close(fds[1]);
                call_free(c);
                return sd_bus_error_set_errnof(error, -r, "cannot list backups: fork: %m");
        }
        if (c->pid == 0) {
                (void) close(fds[0]);
                child_main(b->config, job, fds[1]);
        }
        c->fd = fds[0];
        (void) close(fds[1]);
        (void) fcntl(c->fd, F_SETFL, O_NONBLOCK);

        r = sd_event_add_child(b->ctx->event, &c->child, c->pid, WEXITED, on_child, c);
        if (r >= 0)
                r = sd_event_source_set_child_process_own(c->child, true);
        if (r >= 0)
                r = sd_event_add_io(b->ctx->event, &c->io, c->fd, EPOLLIN, on_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(b->ctx->event, &c->timer, CLOCK_MONOTONIC, BUS_BACKUPS_TIMEOUT_USEC,
                                               0, on_timeout, c);
        if (r < 0) {
                if (!c->child)
                        (void) kill(c->pid, SIGKILL), (void) waitpid(c->pid, NULL, 0);
                call_free(c);
                return sd_bus_error_set_errnof(error, -r, "cannot list backups: %m");
        }
        c->next = b->calls;
        b->calls = c;
        return 1;
}

void bus_backups_stop_all(BusBackups *b) {
        while (b->calls) {
                BackupsCall *c = b->calls;

                b->calls = c->next;
                call_free(c); /* kills and reaps the child */
        }
}
