/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Monitoring outputs: healthcheck pings and the Prometheus textfile. A monitoring hiccup must never turn
 * a good backup into a failed one, so every error here ends as a warning. */
#include <curl/curl.h>
#include <inttypes.h>

#include "jobs/context.h"
#include "jobs/monitor.h"
#include "sys/wal-state.h"
#include "log/log.h"

#define PING_TIMEOUT_MS 10000L
#define PING_BODY_MAX 10000U /* healthchecks.io keeps the first 10 KB of a ping body */

char *job_monitor_ping_url(const char *url, const char *job, JobPing what) {
        static const char *const suffix[] = { [JOB_PING_START] = "/start", [JOB_PING_SUCCESS] = "",
                                              [JOB_PING_FAIL] = "/fail" };
        char *text = NULL;
        size_t len = 0, n;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                abort();
        /* "%j" becomes the job's name: one check per job from one key. */
        for (const char *p = url, *j;; p = j + 2) {
                j = strstr(p, "%j");
                if (!j) {
                        n = strlen(p);
                        while (n > 0 && p[n - 1] == '/')
                                n--;
                        fwrite(p, 1, n, f);
                        break;
                }
                fwrite(p, 1, (size_t) (j - p), f);
                fputs(job, f);
        }
        fputs(suffix[what], f);
        fclose(f);
        return text;
}

static size_t discard(char *p, size_t size, size_t n, void *userdata) {
        return size * n;
}

void job_monitor_ping(const Config *c, const char *job, JobPing what, const char *message) {
        _cleanup_free_ char *url = NULL, *body = NULL;
        char errbuf[CURL_ERROR_SIZE] = "";
        long status = 0;
        CURLcode cc;
        CURL *e;

        if (isempty(c->agent.healthcheck_url))
                return;
        url = job_monitor_ping_url(c->agent.healthcheck_url, job, what);
        e = curl_easy_init();
        if (!e) {
                log_warning("cannot ping %s: cannot initialize libcurl", url);
                return;
        }
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, PING_TIMEOUT_MS);
        curl_easy_setopt(e, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        if (what == JOB_PING_FAIL && !isempty(message)) {
                body = xstrndup(message, PING_BODY_MAX);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
        }
        cc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
        if (cc != CURLE_OK)
                log_warning("healthcheck ping %s failed: %s; the job goes on (check healthcheck_url in "
                            "[agent])", url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        else if (status < 200 || status >= 300)
                log_warning("healthcheck ping %s answered HTTP %ld; the job goes on (check healthcheck_url "
                            "in [agent])", url, status);
        else
                log_debug("pinged %s", url);
}

typedef struct Metric {
        const char *name;
        const char *help;
} Metric;

static const Metric metrics[] = {
        { "skyforge_job_last_success_timestamp_seconds", "End of the last successful run (Unix time)." },
        { "skyforge_job_last_duration_seconds", "Duration of the last run." },
        { "skyforge_job_last_bytes", "Stored bytes of the last successful backup." },
        { "skyforge_job_last_success", "1 when the last run succeeded, 0 when it failed." },
        { "skyforge_job_last_run_timestamp_seconds", "End of the last run (Unix time)." },
};

static double metric_value(const JobState *s, size_t i) {
        switch (i) {
        case 0:
                return (double) s->last_success_usec / USEC_PER_SEC;
        case 1:
                return s->last_end_usec >= s->last_start_usec
                               ? (double) (s->last_end_usec - s->last_start_usec) / USEC_PER_SEC
                               : 0;
        case 2:
                return (double) s->last_bytes;
        case 3:
                return streq_ptr(s->last_result, "success") ? 1 : 0;
        default:
                return (double) s->last_end_usec / USEC_PER_SEC;
        }
}

/* The WAL stream's gauges, once it has run on this node (sys/wal-state.h). */
static void job_monitor_wal_metrics(const char *state_dir, FILE *f) {
        _cleanup_(wal_state_done) WalState w = {};

        if (wal_state_read(state_dir, &w) < 0 || isempty(w.state)) {
                err_clear();
                return;
        }
        wal_state_fix_stale(&w);
        fprintf(f,
                "# HELP skyforge_wal_stream_up 1 while the WAL stream (skyforge-wal.service) runs.\n"
                "# TYPE skyforge_wal_stream_up gauge\nskyforge_wal_stream_up %d\n"
                "# HELP skyforge_wal_lag_bytes WAL the replication slot holds on the server that is not "
                "stored yet.\n"
                "# TYPE skyforge_wal_lag_bytes gauge\nskyforge_wal_lag_bytes %" PRIu64 "\n"
                "# HELP skyforge_wal_lag_warning 1 while the slot holds more than wal_warn_bytes.\n"
                "# TYPE skyforge_wal_lag_warning gauge\nskyforge_wal_lag_warning %d\n",
                streq(w.state, "running") ? 1 : 0, w.lag_bytes, w.lag_warning ? 1 : 0);
        if (w.last_segment_usec > 0)
                fprintf(f,
                        "# HELP skyforge_wal_last_segment_timestamp_seconds When the newest complete WAL "
                        "segment was stored (Unix time).\n"
                        "# TYPE skyforge_wal_last_segment_timestamp_seconds gauge\n"
                        "skyforge_wal_last_segment_timestamp_seconds %.17g\n",
                        (double) w.last_segment_usec / USEC_PER_SEC);
}

char *job_monitor_metrics_text(const char *state_dir) {
        JobState states[8] = {};
        size_t n = 0, len = 0;
        char *text = NULL;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                abort();
        for (size_t i = 0; job_names[i] && n < ELEMENTSOF(states); i++) {
                JobState s = {};
                /* Only jobs that finished a run: a job that never ran has nothing to report. */
                if (job_state_read(state_dir, job_names[i], &s) < 0 || isempty(s.last_result)) {
                        job_state_done(&s);
                        continue;
                }
                if (!s.job)
                        s.job = xstrdup(job_names[i]);
                states[n++] = s;
        }
        for (size_t m = 0; m < ELEMENTSOF(metrics); m++) {
                fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", metrics[m].name, metrics[m].help,
                        metrics[m].name);
                for (size_t i = 0; i < n; i++)
                        fprintf(f, "%s{job=\"%s\"} %.17g\n", metrics[m].name, states[i].job,
                                metric_value(&states[i], m));
        }
        job_monitor_wal_metrics(state_dir, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
                job_state_done(&states[i]);
        return text;
}

void job_monitor_write_metrics(const Config *c) {
        _cleanup_free_ char *text = NULL;
        int r;

        if (isempty(c->agent.metrics_file))
                return;
        text = job_monitor_metrics_text(c->agent.state_dir);
        /* Atomic: node_exporter may read the file at any moment. */
        r = write_file_atomic(c->agent.metrics_file, text, strlen(text), 0644);
        if (r < 0) {
                const char *f = c->agent.metrics_file;
                _cleanup_free_ char *dir = xstrndup(f, strrchr(f, '/') - f);
                _cleanup_free_ char *hint = read_only_hint(r, dir);
                log_warning("cannot write metrics_file %s: %s%s; the job goes on", f, strerror(-r), hint);
        }
}
