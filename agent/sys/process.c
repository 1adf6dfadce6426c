/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/pidfd.h>
#include <sys/wait.h>

#include "log/log.h"
#include "sys/process.h"

extern char **environ;

volatile sig_atomic_t *child_cancel_flag = NULL;

static void child_tail_append(Child *c, const char *line) {
        size_t l = strlen(line);

        if (l + 2 > sizeof c->tail) {
                line += l - (sizeof c->tail - 2);
                l = sizeof c->tail - 2;
        }
        if (c->tail_len + l + 1 >= sizeof c->tail) {
                /* Keep the newest lines: drop from the front. */
                size_t drop = c->tail_len + l + 1 - (sizeof c->tail - 1);
                memmove(c->tail, c->tail + drop, c->tail_len - drop);
                c->tail_len -= drop;
        }
        memcpy(c->tail + c->tail_len, line, l);
        c->tail_len += l;
        c->tail[c->tail_len++] = '\n';
        c->tail[c->tail_len] = 0;
}

static void child_stderr_line(Child *c, const char *line) {
        if (c->on_stderr_line && c->on_stderr_line(c, line, c->userdata) == 0)
                return; /* consumed: an expected message */
        log_info("%s: %s", c->name, line);
        child_tail_append(c, line);
        if (strstr(line, "ERROR:") || strstr(line, "FATAL:") || strstr(line, "error:"))
                c->error_lines++;
}

static void child_stderr_feed(Child *c, const char *buf, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (buf[i] == '\n' || c->line_len + 1 >= sizeof c->line) {
                        c->line[c->line_len] = 0;
                        if (c->line_len > 0)
                                child_stderr_line(c, c->line);
                        c->line_len = 0;
                        if (buf[i] == '\n')
                                continue;
                }
                c->line[c->line_len++] = buf[i];
        }
}

void child_drain_stderr(Child *c) {
        char buf[4096];

        while (c->stderr_fd >= 0) {
                ssize_t k = read(c->stderr_fd, buf, sizeof buf);
                if (k > 0) {
                        child_stderr_feed(c, buf, (size_t) k);
                        continue;
                }
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                /* EOF or error: stderr is done. */
                if (c->line_len > 0) {
                        c->line[c->line_len] = 0;
                        child_stderr_line(c, c->line);
                        c->line_len = 0;
                }
                close(c->stderr_fd);
                c->stderr_fd = -1;
        }
}

/* Whether l holds an assignment to the variable that entry ("NAME=value") assigns. */
static bool env_find(char *const *l, const char *entry) {
        size_t n = strcspn(entry, "=");

        for (; l && *l; l++)
                if (strncmp(*l, entry, n) == 0 && (*l)[n] == '=')
                        return true;
        return false;
}

int child_spawn(char *const argv[], char *const envp_extra[], ChildFlags flags, Child *ret) {
        int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        _cleanup_strv_free_ char **env = xcalloc(1, sizeof(char *));
        pid_t pid;
        int r;

        if (((flags & CHILD_PIPE_STDIN) && pipe2(in, O_CLOEXEC) < 0) ||
            ((flags & CHILD_PIPE_STDOUT) && pipe2(out, O_CLOEXEC) < 0) || pipe2(err, O_CLOEXEC) < 0)
                return err_setf(-errno, "cannot create pipes for %s: %m", argv[0]);

        /* A larger pipe means fewer wakeups per MiB of dump (the default is 64 KiB); best effort. */
        if (out[0] >= 0)
                (void) fcntl(out[0], F_SETPIPE_SZ, 1024 * 1024);

        /* An extra variable replaces one of the same name: a child reads the first of duplicates, and
         * ours (PGPASSWORD from a conninfo) must win over what we inherited. */
        for (char **e = environ; *e; e++)
                if (!env_find(envp_extra, *e))
                        strv_push(&env, xstrdup(*e));
        STRV_FOREACH(e, (char **) envp_extra)
                if (!env_find(e + 1, *e))
                        strv_push(&env, xstrdup(*e));

        posix_spawn_file_actions_init(&fa);
        if (flags & CHILD_PIPE_STDIN)
                posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
        else
                posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (flags & CHILD_PIPE_STDOUT)
                posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        else
                posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
        /* Its own process group: pg_dumpall runs pg_dump children that share its pipes, and all of them
         * must go when we stop the dump. */
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
        posix_spawnattr_setpgroup(&attr, 0);
        r = posix_spawn(&pid, argv[0], &fa, &attr, argv, env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);

        if (in[0] >= 0)
                close(in[0]);
        if (out[1] >= 0)
                close(out[1]);
        close(err[1]);
        if (r != 0) {
                if (in[1] >= 0)
                        close(in[1]);
                if (out[0] >= 0)
                        close(out[0]);
                close(err[0]);
                return err_setf(-r, "cannot run %s: %s", argv[0], strerror(r));
        }
        (void) fcntl(err[0], F_SETFL, O_NONBLOCK);
        *ret = (Child){ .pid = pid, .stdin_fd = in[1], .stdout_fd = out[0], .stderr_fd = err[0],
                        .pidfd = pidfd_open(pid, 0) };
        ret->name = xstrdup(strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0]);
        return 0;
}

/* The child is gone: whatever it started and left behind (pg_dump under a killed pg_dumpall) would keep
 * our pipes open forever, so its process group goes too. */
static void child_reap_group(Child *c) {
        c->exited = true;
        (void) kill(-c->pid, SIGKILL);
}

/* Waits until fd is ready for `events` (fd < 0: until the child exits), handling the child's stderr and
 * its exit meanwhile. */
static int child_poll(Child *c, int fd, short events) {
        for (;;) {
                struct pollfd p[3];
                int n = 0, i_fd = -1, i_err = -1, i_pid = -1;

                if (fd >= 0) {
                        i_fd = n;
                        p[n++] = (struct pollfd){ .fd = fd, .events = events };
                }
                if (c->stderr_fd >= 0) {
                        i_err = n;
                        p[n++] = (struct pollfd){ .fd = c->stderr_fd, .events = POLLIN };
                }
                if (!c->exited && c->pidfd >= 0) {
                        i_pid = n;
                        p[n++] = (struct pollfd){ .fd = c->pidfd, .events = POLLIN };
                }
                if (n == 0 || (fd < 0 && c->exited))
                        return 0;
                n = poll(p, (nfds_t) n, -1);
                if (child_cancel_flag && *child_cancel_flag)
                        return -ECANCELED;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (i_err >= 0 && p[i_err].revents)
                        child_drain_stderr(c);
                if (i_pid >= 0 && p[i_pid].revents)
                        child_reap_group(c);
                if (i_fd >= 0 && p[i_fd].revents)
                        return 0;
        }
}

ssize_t child_read_stdout(Child *c, void *buf, size_t n) {
        for (;;) {
                int r = child_poll(c, c->stdout_fd, POLLIN);
                if (r < 0)
                        return r;
                ssize_t k = read(c->stdout_fd, buf, n);
                if (k >= 0)
                        return k;
                if (errno != EINTR && errno != EAGAIN)
                        return -errno;
        }
}

int child_write_stdin(Child *c, const void *buf, size_t n) {
        const uint8_t *p = buf;

        while (n > 0) {
                int r = child_poll(c, c->stdin_fd, POLLOUT);
                if (r < 0)
                        return r;
                ssize_t k = write(c->stdin_fd, p, n);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

void child_close_stdin(Child *c) {
        if (c->stdin_fd >= 0) {
                close(c->stdin_fd);
                c->stdin_fd = -1;
        }
}

int child_wait(Child *c) {
        int status;

        child_close_stdin(c);
        if (c->pid <= 0)
                return -ECHILD;
        /* Keep reading stderr while waiting, so a chatty child never blocks on a full pipe. */
        if (c->pidfd >= 0)
                while (!c->exited)
                        if (child_poll(c, -1, 0) < 0) {
                                /* Cancelled while waiting: stop it, then wait for real. */
                                child_kill(c);
                                break;
                        }
        while (waitpid(c->pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        (void) kill(-c->pid, SIGKILL);
        c->exited = true;
        if (c->stderr_fd >= 0) {
                (void) fcntl(c->stderr_fd, F_SETFL, 0); /* blocking: read to EOF, all writers are gone */
                child_drain_stderr(c);
        }
        c->pid = 0;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

void child_kill(Child *c) {
        if (c->pid > 0)
                (void) kill(-c->pid, SIGTERM);
}

void child_done(Child *c) {
        if (c->pid > 0) {
                child_kill(c);
                (void) child_wait(c);
        }
        child_close_stdin(c);
        if (c->stdout_fd >= 0)
                close(c->stdout_fd);
        if (c->stderr_fd >= 0)
                close(c->stderr_fd);
        if (c->pidfd >= 0)
                close(c->pidfd);
        c->stdout_fd = c->stderr_fd = c->pidfd = -1;
        free(c->name);
        c->name = NULL;
}

char *child_stderr_summary(const Child *c) {
        _cleanup_free_ char *t = xstrndup(c->tail, c->tail_len);
        char *out, *p;

        strstrip(t);
        if (!*t)
                return xstrdup("no error output");
        /* Lines joined with "; " so the summary fits one journal/state line. */
        out = xcalloc(1, strlen(t) * 2 + 1);
        p = out;
        for (const char *s = t; *s; s++) {
                if (*s == '\n') {
                        p = stpcpy(p, "; ");
                        continue;
                }
                *p++ = *s;
        }
        return out;
}

int run_capture_line(char *const argv[], char **ret) {
        Child c = {};
        char buf[512];
        size_t len = 0;
        int r;

        r = child_spawn(argv, NULL, CHILD_PIPE_STDOUT, &c);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t k = child_read_stdout(&c, buf + len, sizeof buf - 1 - len);
                if (k <= 0)
                        break;
                len += (size_t) k;
                if (len >= sizeof buf - 1)
                        break;
        }
        buf[len] = 0;
        r = child_wait(&c);
        child_done(&c);
        if (r != 0)
                return err_setf(-EIO, "%s exited with status %d", argv[0], r);
        buf[strcspn(buf, "\n")] = 0;
        *ret = xstrdup(buf);
        return 0;
}

char *path_find_executable(const char *program) {
        const char *path = getenv("PATH") ?: "/usr/bin:/bin";
        _cleanup_strv_free_ char **dirs = strv_split(path, ":");

        STRV_FOREACH(d, dirs) {
                char *p = path_join(*d, program);
                if (access(p, X_OK) >= 0)
                        return p;
                free(p);
        }
        return NULL;
}

