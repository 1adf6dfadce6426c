/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <stdarg.h>
#include <unistd.h>

#include "bus/backups.h"
#include "log/log.h"
#include "shared/util.h"

/* One ListBackups call in flight: the child that lists, the pipe it answers on, and the request. */
struct BackupsCall {
        BusBackups *owner;
        sd_bus_message *request;
        pid_t pid;
        int fd;
        int err_fd; /* the child's stderr (a memfd): its error message, read once it is gone */
        sd_event_source *io, *child, *timer;
        char *buf;
        size_t len, cap;
        bool eof, replied;
        bool with_node; /* ListBackupsWithNode: the node in every entry */
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
        if (c->err_fd >= 0)
                (void) close(c->err_fd);
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

/* ---- the child: `skyforge-agent -c CONFIG list [JOB] --json`, its stdout into the pipe ---- */

static _noreturn_ void child_main(const BusBackups *b, const char *job, int out_fd, int err_fd) {
        const char *argv[8];
        size_t n = 0;
        sigset_t none;

        argv[n++] = b->agent_path;
        if (b->config_path) {
                argv[n++] = "-c";
                argv[n++] = b->config_path;
        }
        argv[n++] = "list";
        argv[n++] = "--json";
        if (job)
                argv[n++] = job;
        argv[n] = NULL;

        /* Not the daemon's signal handling: die on SIGTERM, and with the daemon. */
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        (void) signal(SIGTERM, SIG_DFL);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
                _exit(EX_SOFTWARE);
        if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
                _exit(EX_OSERR);
        /* The listing is not the service: it must not talk to systemd in the daemon's name. */
        (void) unsetenv("NOTIFY_SOCKET");
        (void) unsetenv("WATCHDOG_USEC");
        (void) unsetenv("WATCHDOG_PID");
        execv(b->agent_path, (char **) argv);
        dprintf(STDERR_FILENO, "cannot run %s: %m\n", b->agent_path);
        _exit(EX_OSERR);
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

/* The array's element type, "(sstttb)" or "(ssstttb)": the signature without its 'a'. */
static const char *entry_type(bool with_node) {
        return (with_node ? BUS_BACKUPS_NODE_SIGNATURE : BUS_BACKUPS_SIGNATURE) + 1;
}

static int reply_empty(sd_bus_message *request, bool with_node) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(request, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', entry_type(with_node));
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        return r < 0 ? r : 1;
}

/* The last line the child wrote to stderr, without our program name: the error `list` reported. */
static char *child_error(BackupsCall *c) {
        char buf[4096], *line, *nl;
        off_t size = lseek(c->err_fd, 0, SEEK_END);
        ssize_t n;

        if (size <= 0)
                return NULL;
        n = pread(c->err_fd, buf, sizeof buf - 1, MAX(size - (off_t) (sizeof buf - 1), (off_t) 0));
        if (n <= 0)
                return NULL;
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                buf[--n] = '\0';
        nl = strrchr(buf, '\n');
        line = nl ? nl + 1 : buf;
        return xstrdup(startswith(line, "skyforge-agent: ") ?: line);
}

static void json_putp(json_object **o) {
        json_object_put(*o);
}

/* The whole text as one JSON value, or NULL. */
static json_object *json_parse_all(const char *text, size_t len) {
        struct json_tokener *tok = json_tokener_new();
        json_object *o;

        if (!tok)
                return NULL;
        o = json_tokener_parse_ex(tok, text, (int) MIN(len, (size_t) INT32_MAX));
        if (o && json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

static bool json_u64(json_object *o, const char *key, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_uint64(v);
        return true;
}

static const char *json_str(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int reply_from_output(BackupsCall *c, int status) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) json_object *list = NULL;
        int r;

        c->replied = true;
        if (status == EX_USAGE)
                /* The daemon passed a job it knows; `list` refusing it means the job keeps no backups (mirror). */
                return reply_empty(c->request, c->with_node);
        if (status != 0) {
                _cleanup_free_ char *why = child_error(c);
                if (why)
                        return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED, "cannot list backups: %s",
                                                          why);
                return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED,
                                                  "cannot list backups: the listing process failed (%s %d)",
                                                  status > 128 ? "signal" : "exit status",
                                                  status > 128 ? status - 128 : status);
        }
        list = json_parse_all(c->buf, c->len);
        if (!list || !json_object_is_type(list, json_type_array))
                return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED,
                                                  "cannot list backups: garbled answer from the listing process");

        r = sd_bus_message_new_method_return(c->request, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', entry_type(c->with_node));
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *m = json_object_array_get_idx(list, i), *enc;
                const char *job = json_str(m, "job"), *id = json_str(m, "id");
                /* volumes backups name their node folder; null (the shared folder) and the other jobs: "" */
                const char *node = json_str(m, "node");
                uint64_t s, f, b;

                if (!job || !id || !json_u64(m, "started_usec", &s) || !json_u64(m, "finished_usec", &f) ||
                    !json_u64(m, "bytes", &b) || !json_object_object_get_ex(m, "encrypted", &enc))
                        return sd_bus_reply_method_errorf(c->request, SD_BUS_ERROR_FAILED,
                                                          "cannot list backups: garbled answer from the "
                                                          "listing process");
                if (c->with_node)
                        r = sd_bus_message_append(reply, "(ssstttb)", job, strempty(node), id, s, f, b,
                                                  json_object_get_boolean(enc));
                else
                        r = sd_bus_message_append(reply, "(sstttb)", job, id, s, f, b,
                                                  json_object_get_boolean(enc));
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


int bus_backups_start(BusBackups *b, sd_bus_message *request, const char *job, bool with_node,
                      sd_bus_error *error) {
        int fds[2];
        BackupsCall *c;
        size_t pending = 0;
        int r;

        /* A daemon started without the agent to list with answers that there is nothing. */
        if (!b->agent_path)
                return reply_empty(request, with_node);
        for (BackupsCall *p = b->calls; p; p = p->next)
                pending++;
        if (pending >= BUS_BACKUPS_MAX_PENDING)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "%zu listings of backups are already running; try again when they end",
                                         pending);
        c = xmalloc(sizeof *c);
        *c = (BackupsCall){ .owner = b, .request = sd_bus_message_ref(request), .fd = -EBADF, .err_fd = -EBADF,
                            .with_node = with_node };
        c->err_fd = memfd_create("skyforge-list-stderr", MFD_CLOEXEC);
        if (c->err_fd < 0 || pipe2(fds, O_CLOEXEC) < 0) {
                r = -errno;
                call_free(c);
                return sd_bus_error_set_errnof(error, -r, "cannot list backups: %m");
        }
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
                child_main(b, job, fds[1], c->err_fd);
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
