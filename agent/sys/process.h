/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <signal.h>
#include <sys/types.h>

#include "shared/util.h"

/* A child process (pg_dumpall, psql, pg_restore) with its stdout and/or stdin on pipes and its stderr
 * captured line by line: each line goes to the log and the last few KiB are kept for the error message. */
typedef struct Child {
        pid_t pid;
        int stdin_fd;  /* ours to write, -1 when not piped */
        int stdout_fd; /* ours to read, -1 when not piped */
        int stderr_fd;
        int pidfd;     /* readable once the child has exited */
        bool exited;
        char *name;    /* for messages: "pg_dumpall" */
        char tail[4096];
        size_t tail_len;
        char line[1024];
        size_t line_len;
        unsigned error_lines;
        int (*on_stderr_line)(struct Child *c, const char *line, void *userdata); /* optional */
        void *userdata;
} Child;

typedef enum ChildFlags {
        CHILD_PIPE_STDIN = 1 << 0,
        CHILD_PIPE_STDOUT = 1 << 1,
} ChildFlags;

/* When set and non-zero (a signal handler sets it), waits on the child return -ECANCELED. */
extern volatile sig_atomic_t *child_cancel_flag;

/* envp_extra ("NAME=value", may be NULL) adds to our environment; a later assignment to the same name
 * replaces an earlier one and an inherited one. */
int child_spawn(char *const argv[], char *const envp_extra[], ChildFlags flags, Child *ret);
/* Reads whatever stderr has without blocking; call it from the I/O loop. */
void child_drain_stderr(Child *c);
/* Reads up to n bytes of stdout, draining stderr meanwhile (so the child never blocks on a full stderr). */
ssize_t child_read_stdout(Child *c, void *buf, size_t n);
/* Writes all of buf to stdin, draining stderr meanwhile. */
int child_write_stdin(Child *c, const void *buf, size_t n);
void child_close_stdin(Child *c);
/* Waits for the exit; drains the rest of stderr. Returns the exit status (0..255), or 128+signal. */
int child_wait(Child *c);
void child_kill(Child *c);
void child_done(Child *c);
static inline void child_donep(Child *c) {
        child_done(c);
}
/* The captured stderr tail, trimmed, single-line friendly ("; " between lines). */
char *child_stderr_summary(const Child *c);
/* Runs argv and returns the first line of its stdout ("pg_dumpall (PostgreSQL) 15.20"). */
int run_capture_line(char *const argv[], char **ret);
/* The first executable named program in $PATH (default /usr/bin:/bin), or NULL. */
char *path_find_executable(const char *program);
