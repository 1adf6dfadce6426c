/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <syslog.h>

#include "shared/util.h"

/* Journal message ids; the catalog in log/skyforge-agent.catalog explains each one (journalctl -x). */
#define SKYFORGE_MESSAGE_JOB_STARTED   "b8d06561d1a7481891ca96c3ae2ef6a0"
#define SKYFORGE_MESSAGE_JOB_SUCCEEDED "eac4d542a7f643f782ac674f5c39d97f"
#define SKYFORGE_MESSAGE_JOB_FAILED    "79a9ad08d95f43e8901fd55e2600d4ac"
#define SKYFORGE_MESSAGE_BACKUP_PRUNED "3d9ce0f7cf474da5b1e638d81f0c093d"
#define SKYFORGE_MESSAGE_VERIFY        "79a96bf90fbe434ebc222a5f13059842"
#define SKYFORGE_MESSAGE_JOB_SKIPPED   "5f0c7d2e8a6b4e19b3a1c4d8e2f70b96"
#define SKYFORGE_MESSAGE_WAL_SEGMENT   "30de0dd3a74146bb9b609f4a7e252a6b"

void log_setup(void);
void log_set_max_level(int level);
int log_get_max_level(void);
/* True when stderr is the journal (we run under systemd); then plain lines go to the journal with
 * their priority and nothing is printed twice. */
bool log_to_journal(void);

int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...)
        _printf_(6, 7);

#define log_full_errno(level, error, ...) log_internal(level, error, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* A job event: printed like any log line and sent to the journal with MESSAGE_ID and SKYFORGE_* fields.
 * backup_id may be NULL; bytes/duration of UINT64_MAX are left out. */
void log_job_event(int level, const char *message_id, const char *job, const char *backup_id, uint64_t bytes,
                   uint64_t duration_usec, const char *fmt, ...) _printf_(7, 8);

/* Under systemd: asks journald to process what we sent before we exit. journald reads a sender's unit and
 * invocation from /proc when it handles a datagram; a job that fails within milliseconds would otherwise be
 * gone by then and its entries would miss _SYSTEMD_UNIT, so `journalctl -u` would not show them. */
void log_journal_sync(void);

/* Error detail: library code records what failed and what to do about it, returns the negative errno,
 * and the command at the top prints the message and exits with the matching sysexits code. */
int err_set(int error, int exit_code, const char *fmt, ...) _printf_(3, 4);
#define err_setf(error, ...) err_set(error, 0, __VA_ARGS__)
const char *err_message(void);
void err_clear(void);
int err_exit_code(int error);

/* A failure as a value: its errno, sysexits code and message, captured where the work returns. Result
 * structs carry one, and a worker thread brings its own home in one (ErrSaved, the older name), so that
 * nothing that runs afterwards -- logging, the state write, the journal entry, cleanup on the way out --
 * can change what the operator is told. err_message() is per thread and any later err_set() replaces it;
 * a Failure is not. */
typedef struct Failure {
        int error; /* 0: nothing captured */
        int exit_code;
        char *message;
} Failure;
typedef Failure ErrSaved;
/* Captures error with the detail err_set() recorded for it (strerror() when none). Keeps the first
 * failure: a second capture does nothing. */
void failure_capture(Failure *f, int error);
/* err_set() of the captured failure, so the caller prints it; returns its error (0 when none). */
int failure_raise(const Failure *f);
/* The message, never NULL for a captured failure. */
static inline const char *failure_message(const Failure *f) {
        return f->error < 0 ? f->message : NULL;
}
void failure_done(Failure *f);
/* Takes the failure out of the slot: for an error that is handled and not returned (a damaged backup
 * reported and skipped), whose detail must not turn up as the cause of a later, unrelated error. */
Failure failure_take(int error);

/* The older names, used where a worker thread brings its failure home. */
void err_save(ErrSaved *s, int error);  /* failure_capture() */
int err_restore(const ErrSaved *s);     /* failure_raise() */
void err_saved_done(ErrSaved *s);       /* failure_done() */

/* A scope whose err_set() calls do not outlive it: the slot (message and exit code) is put back as it was
 * when the scope began. For cleanup on the way out of a failed call (a destructor aborting an upload or
 * removing a temporary file) and for the steps that only report a failure (state file, journal, pings):
 * they may fail and set an error of their own, which they log, but the caller still sees the original. */
typedef struct ErrKeep {
        int error;
        int exit_code;
        char *message; /* NULL: the slot was empty */
} ErrKeep;
ErrKeep err_keep_begin(void);
void err_keep_end(ErrKeep *k);
#define ERR_KEEP_CONCAT_(a, b) a##b
#define ERR_KEEP_CONCAT(a, b) ERR_KEEP_CONCAT_(a, b)
#define ERR_KEEP_SCOPE()                                                                                     \
        _cleanup_(err_keep_end) _unused_ ErrKeep ERR_KEEP_CONCAT(_err_keep_, __COUNTER__) = err_keep_begin()
