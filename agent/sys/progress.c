/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "sys/progress.h"

static ProgressMode progress_mode = PROGRESS_AUTO;

void progress_set_mode(ProgressMode mode) {
        progress_mode = mode;
}

static bool progress_tty(void) {
        if (progress_mode != PROGRESS_AUTO)
                return progress_mode == PROGRESS_ALWAYS;
        return isatty(STDERR_FILENO) > 0 && !getenv("SKYFORGE_NO_PROGRESS");
}

void progress_format_eta(uint64_t left_usec, char *buf, size_t len) {
        uint64_t s = (left_usec + USEC_PER_SEC - 1) / USEC_PER_SEC;

        if (s >= 100 * 3600)
                snprintf(buf, len, "ETA >4d");
        else if (s >= 3600)
                snprintf(buf, len, "ETA %" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
        else if (s >= 60)
                snprintf(buf, len, "ETA %" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
        else
                snprintf(buf, len, "ETA %" PRIu64 "s", s);
}

/* The time left at the average rate so far, once there is a rate worth extrapolating (2 s of work and
 * some bytes done): 0 when unknown. */
static uint64_t progress_left_usec(const Progress *p, uint64_t elapsed) {
        if (elapsed < 2 * USEC_PER_SEC || p->done == 0 || p->total_estimate <= p->done)
                return 0;
        return (uint64_t) ((double) (p->total_estimate - p->done) * (double) elapsed / (double) p->done);
}

void progress_init(Progress *p, const char *verb, uint64_t total_estimate, const char *state_dir, JobState *state) {
        *p = (Progress){
                .verb = xstrdup(verb),
                .total_estimate = total_estimate,
                .start_usec = now_usec(CLOCK_MONOTONIC),
                .tty = progress_tty(),
                .notify = !!getenv("NOTIFY_SOCKET"),
                .state_dir = state_dir,
                .state = state,
        };
}

char *progress_format(const Progress *p, uint64_t now) {
        char done[FORMAT_BYTES_MAX], total[FORMAT_BYTES_MAX], rate[FORMAT_BYTES_MAX], eta[PROGRESS_ETA_MAX + 2] = "";
        uint64_t elapsed = now > p->start_usec ? now - p->start_usec : 0;
        uint64_t bps = elapsed > 0 ? (uint64_t) ((double) p->done * USEC_PER_SEC / (double) elapsed) : 0;
        uint64_t left = progress_left_usec(p, elapsed);

        if (left > 0 && (!p->count_objects || p->total_final)) {
                eta[0] = ',';
                eta[1] = ' ';
                progress_format_eta(left, eta + 2, sizeof eta - 2);
        }
        format_bytes(p->done, done, sizeof done);
        format_bytes(bps, rate, sizeof rate);
        if (p->count_objects) {
                /* Totals grow while the listings are read. */
                format_bytes(p->total_estimate, total, sizeof total);
                return xasprintf("%s: %" PRIu64 "/%" PRIu64 " objects, %s/%s, %s/s%s", p->verb, p->objects_done,
                                 p->objects_total, done, total, rate, eta);
        }
        if (p->total_estimate == 0)
                return xasprintf("%s: %s, %s/s", p->verb, done, rate);
        format_bytes(p->total_estimate, total, sizeof total);
        /* The total is an estimate (database size on disk vs. dump size): never show more than 99 %. */
        unsigned pct = (unsigned) (100.0 * (double) p->done / (double) p->total_estimate);
        if (pct > 99)
                pct = 99;
        return xasprintf("%s: %s of ~%s (%u %%), %s/s%s", p->verb, done, total, pct, rate, eta);
}

void progress_flush(Progress *p) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        _cleanup_free_ char *line = progress_format(p, now);

        p->last_shown_usec = now;
        if (p->tty) {
                fprintf(stderr, "\r\033[K%s", line);
                fflush(stderr);
                p->shown = true;
        }
        if (p->notify)
                /* Work is moving: give the unit another 5 minutes before its start timeout fires. */
                (void) sd_notifyf(false, "STATUS=%s\nEXTEND_TIMEOUT_USEC=%" PRIu64, line, 300 * USEC_PER_SEC);
        if (p->state && p->state_dir) {
                free(p->state->progress_text);
                p->state->progress_text = xstrdup(line);
                p->state->progress = p->total_estimate > 0 ? (double) p->done / (double) p->total_estimate : -1;
                if (p->state->progress > 0.99)
                        p->state->progress = 0.99;
                (void) job_state_write(p->state_dir, p->state);
        }
}

void progress_update(Progress *p, uint64_t done) {
        p->done = done;
        if (now_usec(CLOCK_MONOTONIC) - p->last_shown_usec < USEC_PER_SEC)
                return;
        progress_flush(p);
}

void progress_done(Progress *p) {
        if (p->shown) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
        }
        if (p->notify)
                (void) sd_notify(false, "STATUS=");
        free(p->verb);
        p->verb = NULL;
}
