/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Cleanup helpers in systemd's shape: a variable marked _cleanup_free_ is freed when it goes out of
 * scope; TAKE_PTR() hands ownership to the caller. Every destructor accepts NULL. */
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))

/* pthread_create() with every signal blocked in the new thread: signals (SIGTERM cancels a job) stay with
 * the caller's thread, whose blocking calls they interrupt. Returns 0 or a negative errno. */
int thread_start(pthread_t *ret, void *(*f)(void *), void *userdata);

/* A cancellation request for the whole process (SIGTERM/SIGINT during a job): points at the flag the
 * signal handler sets (job_install_signal_handlers()). Every loop that waits on the network or on a peer
 * checks cancel_requested() — in every thread, since the signal itself only reaches the main thread.
 * NULL: nothing cancels. */
extern volatile sig_atomic_t *cancel_flag;
static inline bool cancel_requested(void) {
        return cancel_flag && *cancel_flag;
}

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#define TAKE_PTR(p)                                                                                          \
        ({                                                                                                   \
                typeof(p) _p_ = (p);                                                                         \
                (p) = NULL;                                                                                  \
                _p_;                                                                                         \
        })

#define TAKE_FD(fd)                                                                                          \
        ({                                                                                                   \
                int _fd_ = (fd);                                                                             \
                (fd) = -EBADF;                                                                               \
                _fd_;                                                                                        \
        })

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                              \
        static inline void func##p(type *p) {                                                                \
                if (*p)                                                                                      \
                        func(*p);                                                                            \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

void strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* The value of one hex digit (either case), -1 for any other character. */
static inline int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return streq(a, b);
}
static inline bool isempty(const char *s) {
        return !s || !*s;
}
static inline const char *strempty(const char *s) {
        return s ?: "";
}
static inline const char *strna(const char *s) {
        return s ?: "n/a";
}
const char *startswith(const char *s, const char *prefix);
const char *endswith(const char *s, const char *suffix);

/* Allocation failure is not recoverable for a backup agent in any useful way; abort loudly. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);

size_t strv_length(char *const *l);
int strv_push(char ***l, char *value); /* takes ownership of value */
char **strv_split(const char *s, const char *separators);
bool strv_contains(char *const *l, const char *s);
static inline bool strv_isempty(char *const *l) {
        return !l || !l[0];
}
#define STRV_FOREACH(s, l) for (char **s = (l); s && *s; s++)

char *strstrip(char *s);
/* Edits between a and b, ignoring case: insertions, deletions, substitutions and swaps of two neighbouring
 * characters ("josn" is one edit from "json"), each counted once (the optimal string alignment distance). */
int edit_distance(const char *a, const char *b);
/* The candidate within a typo's distance of word (1 edit up to 5 characters, 2 up to 11, else 3), the
 * closest first; NULL when none is: the did-you-mean of config keys, commands and options. */
const char *closest_word(const char *word, const char *const *candidates, size_t n);

int parse_bool(const char *s);                                   /* 1, 0, or -EINVAL */
int parse_uint64(const char *s, uint64_t *ret);
int parse_size(const char *s, uint64_t *ret);                    /* "64M", "1GiB", "4096" */

uint64_t now_usec(int clock);                                    /* CLOCK_REALTIME / CLOCK_MONOTONIC */
#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_DAY (UINT64_C(86400) * USEC_PER_SEC)

/* "20261125T142546Z" <-> usec since the epoch (UTC). */
#define BACKUP_ID_LEN 16
int backup_id_format(uint64_t usec, char ret[static BACKUP_ID_LEN + 1]);
int backup_id_parse(const char *id, uint64_t *ret_usec);
bool backup_id_valid(const char *id);
/* Whether name can name a node ([agent] node_name, else the host name): it names the node's folder of
 * volumes backups and its Lease holder, so 1 to NODE_NAME_MAX of [A-Za-z0-9._-], not starting with '.' or
 * '-', and not a backup id (DEST/<id>/ holds a backup of the volumes' shared folder). */
#define NODE_NAME_MAX 253
#define NODE_NAME_RULE                                                                                      \
        "1 to 253 of the letters, digits, '-', '_' and '.', not starting with '.' or '-', and not a " \
        "backup id"
bool node_name_valid(const char *name);
/* This node's name: configured ([agent] node_name) unless empty, else the host name (in buf, n bytes),
 * else "localhost". Not checked: see node_name_valid(). */
const char *node_name_or_host(const char *configured, char *buf, size_t n);
/* ISO 8601 "2026-11-25T14:25:46Z" for manifests and JSON output. */
char *format_iso8601(uint64_t usec);
int parse_iso8601(const char *s, uint64_t *ret_usec);

char *format_bytes(uint64_t n, char *buf, size_t len);           /* "1.2 GiB" */
#define FORMAT_BYTES_MAX 32

int mkdir_p(const char *path, mode_t mode);
/* For an error r on path: "" or, for -EROFS, a hint naming the fix (under systemd: the unit's
 * ReadWritePaths=). Never NULL; free it. */
char *read_only_hint(int r, const char *path);
int fsync_directory_of(const char *path);
int write_full(int fd, const void *buf, size_t n);
ssize_t read_full(int fd, void *buf, size_t n);
int read_file_string(const char *path, size_t max, char **ret);
/* Writes data to path atomically: temporary file in the same directory, fsync, rename, fsync dir. */
int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);

char *path_join(const char *a, const char *b);

/* Takes an exclusive flock() on path (created with mode). Without wait: -EBUSY when another process holds
 * it. With wait: blocks until it is free, or -ECANCELED once *cancel is set (a signal handler sets it). */
int lock_file(const char *path, mode_t mode, bool wait, const volatile sig_atomic_t *cancel, int *ret_fd);
char **strv_copy(char *const *l); /* NULL for NULL */
/* The strings of l with sep between them; NULL when l is empty or NULL. */
char *strv_join(char *const *l, const char *sep);
