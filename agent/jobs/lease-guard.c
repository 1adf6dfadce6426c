/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <pthread.h>
#include <sysexits.h>
#include <time.h>

#include "jobs/lease-guard.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "kube/lease.h"
#include "log/log.h"

/* Annotations the agent keeps on its Leases. Times are the API server's (estimated from the Date of its
 * last reply plus this node's monotonic clock since), so that two nodes compare one clock, not theirs. */
#define ANN_INSTANCE "skyforge.io/holder-instance"
#define ANN_RENEWED  "skyforge.io/renewed"
#define ANN_NODE     "skyforge.io/last-node"
#define ANN_RESULT   "skyforge.io/last-result"
#define ANN_BACKUP   "skyforge.io/last-backup-id"
#define ANN_FINISHED "skyforge.io/last-finished"

/* Bound of the watch for a Lease whose holder has not been seen renewing: this many lease durations. */
#define WATCH_ROUNDS_MAX 4

struct LeaseGuard {
        char *job;
        char *ns, *name;
        char node[256];
        char instance[33];
        uint64_t duration_usec;
        KubeClient *client;
        char *message; /* skipped: why */
        char *holder; /* skipped: the holder, if any */

        /* Shared with the renewal thread. */
        pthread_mutex_t mutex;
        pthread_cond_t cond;
        bool thread_running;
        pthread_t thread;
        volatile sig_atomic_t stop; /* stops the thread and its requests */
        KubeLease *lease; /* as last written by us */
        uint64_t acquire_usec; /* wall clock, written for people */
        uint64_t last_ok_mono; /* when the last successful write was sent */
        uint64_t server_usec, server_mono; /* the API server's Date, and this node's clock when it came */
        bool lost;
        char *lost_why;
        bool ended;
        bool quiet; /* status: no notice about running without a cluster */
        pthread_t main_thread; /* the job's: interrupted when the Lease is lost */
        bool signal_main;
};

const char *lease_guard_node_name(const Config *c, char *buf, size_t n) {
        return node_name_or_host(c->agent.node_name, buf, n);
}

static uint64_t renew_interval(const LeaseGuard *g) {
        return g->duration_usec / 3;
}

static uint64_t retry_interval(const LeaseGuard *g) {
        return MIN(2 * USEC_PER_SEC, MAX(g->duration_usec / 10, 100 * USEC_PER_MSEC));
}

/* The Lease counts as lost this long after the last renewal that went through: a quarter of the duration
 * before any other node may take it over (each other node waits the full duration from when it saw that
 * renewal, which was after it was sent), time for a manifest write or a delete begun just before. */
static uint64_t lost_after(const LeaseGuard *g) {
        return g->duration_usec - g->duration_usec / 4;
}

static void note_server_time(LeaseGuard *g, uint64_t date_usec, uint64_t mono) {
        if (date_usec == 0)
                return;
        g->server_usec = date_usec;
        g->server_mono = mono;
}

/* The API server's time now, as estimated; NULL when it never sent a Date. */
static char *server_now_text(const LeaseGuard *g) {
        if (g->server_usec == 0)
                return NULL;
        return format_iso8601(g->server_usec + (now_usec(CLOCK_MONOTONIC) - g->server_mono));
}

/* Seconds from an annotation's time to the Date of the reply that brought it: both the API server's. */
static int64_t seconds_ago(const KubeLease *l, const char *annotation) {
        const char *v = kube_lease_annotation(l, annotation);
        uint64_t t;

        if (!v || l->server_date_usec == 0 || parse_iso8601(v, &t) < 0)
                return -1;
        return l->server_date_usec > t ? (int64_t) ((l->server_date_usec - t) / USEC_PER_SEC) : 0;
}

static char *format_ago(int64_t sec) {
        if (sec < 0)
                return xstrdup("a moment");
        if (sec < 120)
                return xasprintf("%" PRIi64 " s", sec);
        if (sec < 7200)
                return xasprintf("%" PRIi64 " min", sec / 60);
        return xasprintf("%" PRIi64 " h", sec / 3600);
}

static void lease_guard_release(LeaseGuard *g, const char *result, const char *backup_id);

void lease_guard_free(LeaseGuard *g) {
        if (!g)
                return;
        lease_guard_end(g, NULL, NULL);
        kube_lease_free(g->lease);
        kube_client_free(g->client);
        pthread_mutex_destroy(&g->mutex);
        pthread_cond_destroy(&g->cond);
        free(g->job);
        free(g->ns);
        free(g->name);
        free(g->message);
        free(g->holder);
        free(g->lost_why);
        free(g);
}

const char *lease_guard_message(const LeaseGuard *g) {
        return g ? g->message : NULL;
}

const char *lease_guard_holder(const LeaseGuard *g) {
        return g ? g->holder : NULL;
}

static LeaseGuard *guard_new(const Config *c, const char *job) {
        LeaseGuard *g = xcalloc(1, sizeof *g);
        pthread_condattr_t attr;
        uint8_t rnd[16];

        g->job = xstrdup(job);
        g->ns = xstrdup(c->agent.lease_namespace);
        g->name = xasprintf("skyforge-agent-%s", job);
        snprintf(g->node, sizeof g->node, "%s", lease_guard_node_name(c, g->node, sizeof g->node));
        g->duration_usec = MAX(c->agent.lease_duration_usec, 2 * USEC_PER_SEC);
        /* Which process of this node holds it: a prune beside a backup, or a run that died, is another
         * holder, judged like one. */
        if (getentropy(rnd, sizeof rnd) < 0)
                for (size_t i = 0; i < sizeof rnd; i++)
                        rnd[i] = (uint8_t) (now_usec(CLOCK_MONOTONIC) >> (i % 8 * 8)) ^ (uint8_t) getpid();
        for (size_t i = 0; i < sizeof rnd; i++)
                snprintf(g->instance + 2 * i, 3, "%02x", rnd[i]);
        pthread_mutex_init(&g->mutex, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&g->cond, &attr);
        pthread_condattr_destroy(&attr);
        return g;
}

/* Opens the cluster. 0 with the client; -ENODEV (nothing recorded) when auto finds no usable cluster or a
 * single node; errors with err_set() otherwise. */
static int guard_connect(const Config *c, LeaseGuard *g, bool *ret_auto_nocluster) {
        _cleanup_(kubeconfig_freep) KubeConfig *kc = NULL;
        _cleanup_(kube_reply_done) KubeReply reply = {};
        bool yes = streq(c->agent.leader_election, "yes");
        json_object *items = NULL, *meta = NULL, *cont = NULL;
        size_t n_nodes;
        int r;

        *ret_auto_nocluster = false;
        r = kubeconfig_load(c->agent.kubeconfig, &kc);
        if (r >= 0)
                r = kube_client_new(kc, &g->client);
        if (r >= 0) {
                kube_client_set_timeout(g->client, MIN(10 * USEC_PER_SEC, g->duration_usec / 3));
                if (!yes)
                        r = kube_request_json(g->client, "GET", "/api/v1/nodes?limit=2", NULL, &reply);
        }
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                if (r == -ECANCELED)
                        return err_set(r, EX_TEMPFAIL, "job %s was cancelled: %s", g->job, why);
                if (yes)
                        return err_set(
                                r, EX_UNAVAILABLE,
                                "leader_election = yes, but the Lease %s/%s cannot be taken: %s — the "
                                "job did not run, so that no two nodes run it at once; bring the "
                                "cluster up, fix kubeconfig = in [agent], or set leader_election = "
                                "auto to run without a cluster",
                                g->ns, g->name, why);
                /* No kubeconfig at all is a node without k3s (or before it): nothing worth a line. */
                log_full_errno(g->quiet || (!kc && r == -ENOENT) ? LOG_DEBUG : LOG_INFO, 0,
                               "No Kubernetes cluster for leader election (%s): job %s runs without a Lease "
                               "(leader_election = auto).",
                               why, g->job);
                *ret_auto_nocluster = true;
                return -ENODEV;
        }
        if (yes)
                return 0;
        if (reply.status != 200)
                return kube_reply_error(g->client, &reply,
                                        "list the cluster's nodes (leader_election = auto needs to know "
                                        "whether there is more than one; or set leader_election = yes)");
        if (!json_object_object_get_ex(reply.json, "items", &items) ||
            !json_object_is_type(items, json_type_array))
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the Kubernetes API at %s sent a node list without items",
                               kube_client_server(g->client));
        n_nodes = json_object_array_length(items);
        if (json_object_object_get_ex(reply.json, "metadata", &meta) &&
            json_object_object_get_ex(meta, "continue", &cont) && !isempty(json_object_get_string(cont)))
                n_nodes = MAX(n_nodes, (size_t) 3);
        if (n_nodes <= 1) {
                log_debug("The cluster at %s has %zu node(s): job %s runs without a Lease.",
                          kube_client_server(g->client), n_nodes, g->job);
                *ret_auto_nocluster = true;
                return -ENODEV;
        }
        return 0;
}

static void spec_annotations(const LeaseGuard *g, const char *renewed, const char *ann[static 5]) {
        ann[0] = ANN_INSTANCE;
        ann[1] = g->instance;
        ann[2] = ANN_RENEWED;
        ann[3] = renewed; /* NULL removes a stale one */
        ann[4] = NULL;
}

static int guard_skip(LeaseGuard *g, const char *holder, char *message) {
        free(g->holder);
        g->holder = holder ? xstrdup(holder) : NULL;
        free(g->message);
        g->message = message;
        log_debug("%s", message);
        return LEASE_GUARD_SKIPPED;
}

/* Writes the Lease as ours (old: the Lease read, NULL: create). 0 taken, -EAGAIN lost the race. */
static int guard_take(LeaseGuard *g, const KubeLease *old, bool renew) {
        _cleanup_free_ char *renewed = server_now_text(g);
        _cleanup_(kube_lease_freep) KubeLease *l = NULL;
        const char *ann[5];
        uint64_t now = now_usec(CLOCK_REALTIME), sent = now_usec(CLOCK_MONOTONIC);
        KubeLeaseSpec spec = {
                .holder = g->node,
                .duration_sec = (unsigned) (g->duration_usec / USEC_PER_SEC),
                .acquire_usec = now,
                .renew_usec = now,
                .transitions = old ? old->transitions + (renew ? 0 : 1) : 0,
                .annotations = ann,
        };
        int r;

        if (renew && old && old->acquire_time)
                (void) parse_iso8601(old->acquire_time, &spec.acquire_usec);
        spec_annotations(g, renewed, ann);
        r = old ? kube_lease_update(g->client, old, &spec, &l)
                : kube_lease_create(g->client, g->ns, g->name, &spec, &l);
        if (r == -EEXIST || r == -ESTALE || r == -ENOENT)
                return -EAGAIN; /* another node wrote first: read it again */
        if (r < 0)
                return r;
        note_server_time(g, l->server_date_usec, sent);
        g->acquire_usec = spec.acquire_usec;
        g->last_ok_mono = sent;
        kube_lease_free(g->lease);
        g->lease = TAKE_PTR(l);
        log_info("Took Lease %s/%s as %s (%s).", g->ns, g->name, g->node,
                 old && old->holder ? (renew ? "renewed" : "taken over from a holder that stopped renewing")
                                    : "free");
        return 0;
}

static void *renew_thread(void *userdata);

/* The acquire loop: client-go's tryAcquireOrRenew() in a loop, plus the skips. */
static int guard_acquire(const Config *c, LeaseGuard *g) {
        _cleanup_free_ char *seen_rv = NULL, *first_rv = NULL;
        uint64_t observed = 0, start = now_usec(CLOCK_MONOTONIC);
        unsigned races = 0;
        int r;

        for (;;) {
                _cleanup_(kube_lease_freep) KubeLease *l = NULL;
                uint64_t now;

                if (cancel_requested())
                        return err_set(-ECANCELED, EX_TEMPFAIL,
                                       "job %s was cancelled while waiting for Lease %s/%s", g->job, g->ns,
                                       g->name);
                r = kube_lease_get(g->client, g->ns, g->name, &l);
                now = now_usec(CLOCK_MONOTONIC);
                if (r == -ENOENT) {
                        r = guard_take(g, NULL, false);
                        if (r == -EAGAIN && ++races < 20)
                                continue;
                        return r == -EAGAIN ? err_set(-EBUSY, EX_TEMPFAIL,
                                                      "Lease %s/%s keeps changing under "
                                                      "this node; try again",
                                                      g->ns, g->name)
                                            : r;
                }
                if (r < 0)
                        return r;
                note_server_time(g, l->server_date_usec, now);
                if (!streq_ptr(seen_rv, l->resource_version)) {
                        /* What client-go's observedTime is: when this node saw the Lease change. */
                        free(seen_rv);
                        seen_rv = l->resource_version ? xstrdup(l->resource_version) : NULL;
                        observed = now;
                }

                KubeLeaseObservation o = {
                        .exists = true,
                        .holder = l->holder,
                        .holder_instance = kube_lease_annotation(l, ANN_INSTANCE),
                        .duration_sec = l->duration_sec,
                        .observed_usec = observed,
                };
                KubeLeaseDecision d = kube_lease_decide(&o, now, g->node, g->instance);

                if (!l->holder) {
                        /* Free. Done already? A run that succeeded on another node less than min_interval
                         * ago (the API server's clock) is this run too, started later by another timer. */
                        const char *last = kube_lease_annotation(l, ANN_NODE);
                        int64_t ago = seconds_ago(l, ANN_FINISHED);
                        if (c->agent.min_interval_usec > 0 && last && !streq(last, g->node) &&
                            streq_ptr(kube_lease_annotation(l, ANN_RESULT), "success") && ago >= 0 &&
                            (uint64_t) ago * USEC_PER_SEC < c->agent.min_interval_usec) {
                                _cleanup_free_ char *a = format_ago(ago);
                                const char *id = kube_lease_annotation(l, ANN_BACKUP);
                                return guard_skip(
                                        g, NULL,
                                        xasprintf("skipped: %s ran on %s %s ago%s%s%s (min_interval = "
                                                  "%" PRIu64 " s)",
                                                  g->job, last, a, id ? " (backup " : "", strempty(id),
                                                  id ? ")" : "", c->agent.min_interval_usec / USEC_PER_SEC));
                        }
                }
                if (d == KUBE_LEASE_WAIT) {
                        int64_t ago = seconds_ago(l, ANN_RENEWED);
                        bool alive = (ago >= 0 && (uint64_t) ago * USEC_PER_SEC <
                                                          (uint64_t) l->duration_sec * USEC_PER_SEC) ||
                                     (first_rv && !streq_ptr(first_rv, l->resource_version));
                        /* Skipping is always safe; only a takeover needs care. So a holder that renewed
                         * recently by the API server's clock, or that this node saw renew, means skip at
                         * once; one that looks stale is watched until it renews or this node has seen it
                         * unchanged for its whole duration. */
                        if (alive) {
                                _cleanup_free_ char *a = format_ago(
                                        ago >= 0 ? ago : (int64_t) ((now - observed) / USEC_PER_SEC));
                                return guard_skip(
                                        g, l->holder,
                                        xasprintf("skipped: %s is running on %s (lease renewed %s ago)",
                                                  g->job, l->holder, a));
                        }
                        if (!first_rv) {
                                first_rv = xstrdup(strempty(l->resource_version));
                                log_info("Lease %s/%s is held by %s, which has not renewed it lately; "
                                         "watching it "
                                         "for up to %u s before taking it over.",
                                         g->ns, g->name, l->holder, l->duration_sec);
                        }
                        if (now - start > WATCH_ROUNDS_MAX * MAX((uint64_t) l->duration_sec * USEC_PER_SEC,
                                                                 g->duration_usec))
                                return err_set(
                                        -EBUSY, EX_TEMPFAIL,
                                        "Lease %s/%s held by %s neither expired nor was renewed while "
                                        "watched; try again",
                                        g->ns, g->name, l->holder);
                        (void) usleep((useconds_t) retry_interval(g));
                        continue;
                }
                r = guard_take(g, l, d == KUBE_LEASE_RENEW);
                if (r == -EAGAIN && ++races < 20)
                        continue;
                if (r == -EAGAIN)
                        return err_set(-EBUSY, EX_TEMPFAIL,
                                       "Lease %s/%s keeps changing under this node; try again", g->ns,
                                       g->name);
                return r;
        }
}

int lease_guard_begin(const Config *c, const char *job, bool cluster_wide, LeaseGuard **ret) {
        _cleanup_(lease_guard_freep) LeaseGuard *g = NULL;
        bool none = false;
        int r;

        *ret = NULL;
        if (!cluster_wide || streq_ptr(c->agent.leader_election, "no"))
                return 0;
        g = guard_new(c, job);
        g->ended = true; /* nothing to release yet */
        r = guard_connect(c, g, &none);
        if (none)
                return 0;
        if (r < 0)
                return r;
        r = guard_acquire(c, g);
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                int code = err_exit_code(r);
                if (r == -ECANCELED)
                        return r;
                if (streq(c->agent.leader_election, "yes") && code == EX_UNAVAILABLE)
                        return err_set(
                                r, code,
                                "leader_election = yes, but the Lease %s/%s cannot be taken: %s — the job "
                                "did not run, so that no two nodes run it at once; bring the cluster up, "
                                "fix kubeconfig = in [agent], or set leader_election = auto to run "
                                "without a cluster",
                                g->ns, g->name, why);
                return err_set(r, code, "cannot take Lease %s/%s for job %s: %s — the job did not run",
                               g->ns, g->name, job, why);
        }
        if (r == LEASE_GUARD_SKIPPED) {
                *ret = TAKE_PTR(g);
                return LEASE_GUARD_SKIPPED;
        }
        g->ended = false;
        g->main_thread = pthread_self();
        g->signal_main = cancel_flag != NULL; /* job_install_signal_handlers() ran: SIGTERM only sets it */
        /* From here on the renewals stop only when the guard ends: after a SIGTERM the job winds down and
         * still releases the Lease. */
        kube_client_set_cancel(g->client, &g->stop);
        r = thread_start(&g->thread, renew_thread, g);
        if (r < 0) {
                lease_guard_release(g, "failed", NULL);
                g->ended = true;
                return err_set(r, EX_OSERR, "cannot start the renewal of Lease %s/%s: %s", g->ns, g->name,
                               strerror(-r));
        }
        g->thread_running = true;
        *ret = TAKE_PTR(g);
        return 0;
}

static void cond_wait_until(LeaseGuard *g, uint64_t mono) {
        struct timespec ts = { .tv_sec = (time_t) (mono / USEC_PER_SEC),
                               .tv_nsec = (long) (mono % USEC_PER_SEC) * 1000 };
        while (!g->stop && now_usec(CLOCK_MONOTONIC) < mono)
                if (pthread_cond_timedwait(&g->cond, &g->mutex, &ts) == ETIMEDOUT)
                        break;
}

static void guard_mark_lost(LeaseGuard *g, char *why) {
        /* Called with the mutex held. */
        if (g->lost) {
                free(why);
                return;
        }
        g->lost = true;
        g->lost_why = why;
        /* The job stops everything it does (every network loop checks this), and job.c refuses to write a
         * manifest or delete once it sees the Lease lost. */
        if (cancel_flag)
                *cancel_flag = 1;
        /* The job's thread may sleep in poll() on a child (pg_dumpall) or a socket: the cancel signal
         * wakes it, as an operator's SIGTERM would (the handler only sets the flag above). */
        if (g->signal_main)
                (void) pthread_kill(g->main_thread, SIGTERM);
}

static void *renew_thread(void *userdata) {
        LeaseGuard *g = userdata;
        uint64_t next;
        bool failing = false;

        pthread_mutex_lock(&g->mutex);
        next = g->last_ok_mono + renew_interval(g);
        for (;;) {
                _cleanup_(kube_lease_freep) KubeLease *l = NULL, *cur = NULL;
                _cleanup_free_ char *renewed = NULL;
                const char *ann[5];
                uint64_t sent;
                int r;

                cond_wait_until(g, next);
                if (g->stop || g->lost)
                        break;
                renewed = server_now_text(g);
                spec_annotations(g, renewed, ann);
                KubeLeaseSpec spec = {
                        .holder = g->node,
                        .duration_sec = (unsigned) (g->duration_usec / USEC_PER_SEC),
                        .acquire_usec = g->acquire_usec,
                        .renew_usec = now_usec(CLOCK_REALTIME),
                        .transitions = g->lease->transitions,
                        .annotations = ann,
                };
                cur = g->lease;
                g->lease = NULL;
                pthread_mutex_unlock(&g->mutex);

                sent = now_usec(CLOCK_MONOTONIC);
                r = kube_lease_update(g->client, cur, &spec, &l);
                if (r == -ESTALE) {
                        /* Changed since our last write: ours still only if it still names this process
                         * (a write whose reply was lost). */
                        _cleanup_(kube_lease_freep) KubeLease *again = NULL;
                        r = kube_lease_get(g->client, g->ns, g->name, &again);
                        if (r >= 0 && streq_ptr(again->holder, g->node) &&
                            streq_ptr(kube_lease_annotation(again, ANN_INSTANCE), g->instance))
                                r = kube_lease_update(g->client, again, &spec, &l);
                        else if (r >= 0) {
                                pthread_mutex_lock(&g->mutex);
                                g->lease = TAKE_PTR(cur);
                                guard_mark_lost(g, xasprintf("Lease %s/%s was taken by %s", g->ns, g->name,
                                                             again->holder ?: "nobody (released)"));
                                break;
                        }
                }
                pthread_mutex_lock(&g->mutex);
                if (r >= 0) {
                        note_server_time(g, l->server_date_usec, sent);
                        g->last_ok_mono = sent;
                        g->lease = TAKE_PTR(l);
                        if (failing)
                                log_info("Renewed Lease %s/%s again.", g->ns, g->name);
                        failing = false;
                        next = sent + renew_interval(g);
                        continue;
                }
                g->lease = TAKE_PTR(cur);
                if (g->stop)
                        break;
                if (!failing)
                        log_warning("Cannot renew Lease %s/%s: %s; retrying.", g->ns, g->name,
                                    err_message() ?: strerror(-r));
                failing = true;
                if (now_usec(CLOCK_MONOTONIC) >= g->last_ok_mono + lost_after(g)) {
                        guard_mark_lost(
                                g, xasprintf("renewals of Lease %s/%s failed for %" PRIu64 " s (%s)", g->ns,
                                             g->name,
                                             (now_usec(CLOCK_MONOTONIC) - g->last_ok_mono) / USEC_PER_SEC,
                                             err_message() ?: strerror(-r)));
                        break;
                }
                next = now_usec(CLOCK_MONOTONIC) + retry_interval(g);
        }
        pthread_mutex_unlock(&g->mutex);
        return NULL;
}

int lease_guard_check(LeaseGuard *g, int r, const char *before_what) {
        bool lost;
        _cleanup_free_ char *why = NULL;

        if (!g || g->ended)
                return r;
        pthread_mutex_lock(&g->mutex);
        lost = g->lost;
        if (!lost && now_usec(CLOCK_MONOTONIC) >= g->last_ok_mono + lost_after(g)) {
                guard_mark_lost(g, xasprintf("Lease %s/%s was not renewed for %" PRIu64 " s", g->ns, g->name,
                                             (now_usec(CLOCK_MONOTONIC) - g->last_ok_mono) / USEC_PER_SEC));
                lost = true;
        }
        if (lost)
                why = xstrdup(strempty(g->lost_why));
        pthread_mutex_unlock(&g->mutex);
        if (!lost)
                return r;
        return err_set(
                -ENOLCK, EX_TEMPFAIL,
                "job %s lost its Lease and stopped before %s: %s; another node may run the job now, so "
                "this one wrote no manifest and deleted nothing (is the Kubernetes API reachable?)",
                g->job, before_what, why);
}

static void lease_guard_release(LeaseGuard *g, const char *result, const char *backup_id) {
        _cleanup_free_ char *finished = server_now_text(g);
        _cleanup_(kube_lease_freep) KubeLease *l = NULL;
        /* Without a result (a prune), the note of the last run stays as it is. */
        const char *ann[] = { ANN_INSTANCE, NULL,       ANN_RENEWED, NULL,       result ? ANN_NODE : NULL,
                              g->node,      ANN_RESULT, result,      ANN_BACKUP, backup_id,
                              ANN_FINISHED, finished,   NULL };
        uint64_t renew = now_usec(CLOCK_REALTIME);
        int r;

        if (!g->lease)
                return;
        if (g->lease->renew_time)
                (void) parse_iso8601(g->lease->renew_time, &renew);
        KubeLeaseSpec spec = {
                .holder =
                        NULL, /* released: holderIdentity cleared, the times kept (client-go's release()) */
                .duration_sec = (unsigned) (g->duration_usec / USEC_PER_SEC),
                .acquire_usec = g->acquire_usec,
                .renew_usec = renew,
                .transitions = g->lease->transitions,
                .annotations = ann,
        };
        r = kube_lease_update(g->client, g->lease, &spec, &l);
        if (r == -ESTALE)
                log_warning("Lease %s/%s changed before it was released (another node took it over); left "
                            "as is.",
                            g->ns, g->name);
        else if (r < 0)
                log_warning("Cannot release Lease %s/%s: %s; it expires by itself after %" PRIu64 " s.",
                            g->ns, g->name, err_message() ?: strerror(-r), g->duration_usec / USEC_PER_SEC);
        else
                log_debug("Released Lease %s/%s.", g->ns, g->name);
}

void lease_guard_end(LeaseGuard *g, const char *result, const char *backup_id) {
        bool lost;

        if (!g || g->ended)
                return;
        g->ended = true;
        pthread_mutex_lock(&g->mutex);
        g->stop = 1;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->mutex);
        if (g->thread_running)
                pthread_join(g->thread, NULL);
        g->thread_running = false;
        lost = g->lost;
        if (lost)
                return; /* not ours any more, or the API is gone: it expires by itself */
        g->stop = 0; /* the release itself may still talk */
        lease_guard_release(g, result, backup_id);
}

void lease_guard_record_skip(const Config *c, const char *job, const LeaseGuard *g, JobState *st,
                             uint64_t duration_usec) {
        const char *msg = lease_guard_message(g) ?: "skipped";

        free(st->state);
        st->state = xstrdup("idle");
        free(st->last_result);
        st->last_result = xstrdup("skipped");
        free(st->last_error);
        st->last_error = xstrdup(msg);
        free(st->lease_holder);
        st->lease_holder = xstrdup(strempty(lease_guard_holder(g)));
        free(st->progress_text);
        st->progress_text = xstrdup("");
        st->progress = -1;
        st->pid = 0;
        st->last_end_usec = now_usec(CLOCK_REALTIME);
        (void) job_state_write(c->agent.state_dir, st);
        log_job_event(LOG_NOTICE, SKYFORGE_MESSAGE_JOB_SKIPPED, job, NULL, UINT64_MAX, duration_usec,
                      "Job %s %s.", job, msg);
}

/* ---- status ---- */

void lease_guard_status_done(LeaseGuardStatus *s) {
        free(s->error);
        free(s->holder);
        free(s->last_node);
        free(s->last_result);
        free(s->last_backup_id);
        *s = (LeaseGuardStatus){};
}

int lease_guard_status(const Config *c, const char *const *jobs, LeaseGuardStatus *ret, size_t n) {
        _cleanup_(lease_guard_freep) LeaseGuard *g = NULL;
        bool none = false;
        int r;

        for (size_t i = 0; i < n; i++)
                ret[i] = (LeaseGuardStatus){ .renewed_ago = -1, .finished_ago = -1 };
        if (streq_ptr(c->agent.leader_election, "no") || n == 0)
                return 0;
        g = guard_new(c, "status");
        g->ended = true;
        g->duration_usec = 9 * USEC_PER_SEC; /* requests of at most 3 s: status must stay quick */
        g->quiet = true;
        r = guard_connect(c, g, &none);
        if (none)
                return 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(kube_lease_freep) KubeLease *l = NULL;
                _cleanup_free_ char *name = xasprintf("skyforge-agent-%s", jobs[i]);
                int k = r;

                if (!jobs[i])
                        continue; /* node-local: no Lease */
                ret[i].active = true;
                if (k >= 0)
                        k = kube_lease_get(g->client, g->ns, name, &l);
                if (k == -ENOENT)
                        continue;
                if (k < 0) {
                        ret[i].error = xstrdup(err_message() ?: strerror(-k));
                        continue;
                }
                ret[i].holder = l->holder ? xstrdup(l->holder) : NULL;
                ret[i].renewed_ago = seconds_ago(l, ANN_RENEWED);
                ret[i].finished_ago = seconds_ago(l, ANN_FINISHED);
                ret[i].last_node = kube_lease_annotation(l, ANN_NODE)
                                           ? xstrdup(kube_lease_annotation(l, ANN_NODE))
                                           : NULL;
                ret[i].last_result = kube_lease_annotation(l, ANN_RESULT)
                                             ? xstrdup(kube_lease_annotation(l, ANN_RESULT))
                                             : NULL;
                ret[i].last_backup_id = kube_lease_annotation(l, ANN_BACKUP)
                                                ? xstrdup(kube_lease_annotation(l, ANN_BACKUP))
                                                : NULL;
        }
        return 0;
}

static char *status_holder_text(const LeaseGuardStatus *s) {
        _cleanup_free_ char *a = NULL;

        if (s->error)
                return xasprintf("unknown (%s)", s->error);
        if (!s->holder)
                return xstrdup("none");
        if (s->renewed_ago < 0)
                return xstrdup(s->holder);
        a = format_ago(s->renewed_ago);
        return xasprintf("%s (renewed %s ago)", s->holder, a);
}

static char *status_last_text(const LeaseGuardStatus *s) {
        _cleanup_free_ char *a = NULL;

        if (!s->last_node)
                return xstrdup("-");
        a = format_ago(s->finished_ago);
        return xasprintf("%s on %s %s ago%s%s", strempty(s->last_result), s->last_node, a,
                         s->last_backup_id ? ", backup " : "", strempty(s->last_backup_id));
}

static json_object *string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

static json_object *seconds_or_null(int64_t s) {
        return s >= 0 ? json_object_new_int64(s) : NULL;
}

json_object *lease_guard_status_json(const LeaseGuardStatus *s) {
        json_object *o;

        if (!s->active)
                return NULL;
        o = json_object_new_object();
        json_object_object_add(o, "holder", string_or_null(s->holder));
        json_object_object_add(o, "renewed_seconds_ago", seconds_or_null(s->renewed_ago));
        json_object_object_add(o, "last_node", string_or_null(s->last_node));
        json_object_object_add(o, "last_result", string_or_null(s->last_result));
        json_object_object_add(o, "last_backup_id", string_or_null(s->last_backup_id));
        json_object_object_add(o, "last_finished_seconds_ago", seconds_or_null(s->finished_ago));
        json_object_object_add(o, "error", string_or_null(s->error));
        return o;
}

void lease_guard_status_print(const Config *c, const char *const *jobs, const LeaseGuardStatus *s, size_t n,
                              FILE *f) {
        char buf[256];
        bool header = false;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *h = NULL, *l = NULL;
                if (!s[i].active || !jobs[i])
                        continue;
                if (!header)
                        fprintf(f, "\nLeases in %s (this node: %s):\n", c->agent.lease_namespace,
                                lease_guard_node_name(c, buf, sizeof buf));
                header = true;
                h = status_holder_text(&s[i]);
                l = status_last_text(&s[i]);
                fprintf(f, "%-9s lease: %s; last run: %s\n", jobs[i], h, l);
        }
}
