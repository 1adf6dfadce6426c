/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <systemd/sd-bus.h>

#include "cli/cli.h"
#include "cli/status-wal.h"
#include "jobs/job.h"
#include "jobs/lease-guard.h"
#include "log/log.h"

/* The next elapse of skyforge-backup-JOB.timer, from systemd over the system bus; 0 when unknown (no
 * systemd, timer not loaded). */
static uint64_t next_run_usec(sd_bus *bus, const char *job) {
        _cleanup_free_ char *unit = xasprintf("skyforge-backup-%s.timer", job), *path = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t t = 0;

        if (!bus || sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &path) < 0)
                return 0;
        if (sd_bus_get_property_trivial(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Timer",
                                        "NextElapseUSecRealtime", &error, 't', &t) < 0)
                t = 0;
        sd_bus_error_free(&error);
        return t == UINT64_MAX ? 0 : t;
}

static json_object *time_or_null(uint64_t usec) {
        _cleanup_free_ char *s = NULL;
        if (usec == 0)
                return NULL;
        s = format_iso8601(usec);
        return json_object_new_string(s);
}

/* A state file saying "running" for a process that is gone means that run died without cleaning up. */
static void fix_stale_running(JobState *st) {
        if (streq_ptr(st->state, "running") && st->pid > 0 && kill((pid_t) st->pid, 0) < 0 && errno == ESRCH) {
                free(st->state);
                st->state = xstrdup("failed");
                free(st->last_error);
                st->last_error = xasprintf("the run with pid %" PRIu64 " ended without recording a result", st->pid);
        }
}

static int run_status(CliContext *ctx, int argc, char *argv[]) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(config_problems_done) ConfigProblems problems = {};
        sd_bus *bus = NULL;
        json_object *arr = NULL;
        LeaseGuardStatus leases[8] = {};
        const char *cluster_wide[ELEMENTSOF(leases)] = {};
        size_t n_jobs = MIN(strv_length((char **) job_names), ELEMENTSOF(leases));
        bool json = false;
        int r;

        if (cli_parse_json_option(argc, argv, &json) != 0)
                return EX_USAGE;
        if (optind < argc)
                return cli_unexpected_argument(argv[0], argv[optind]);
        /* status always works: it needs only state_dir, so a configuration with errors elsewhere is
         * reported in one line and the state shown anyway. */
        r = config_load(ctx->config_path, ctx->config_explicit, &c, &problems);
        if (r < 0 && !c)
                return cli_load_config(ctx, &c);
        if (r < 0) {
                const ConfigProblem *first = NULL;
                for (size_t i = 0; !first && i < problems.n; i++)
                        if (problems.items[i].severity == CONFIG_ERROR && !problems.items[i].deferred)
                                first = problems.items + i;
                log_warning("%s has %zu error(s), first: %s; showing the job state from state_dir %s anyway "
                            "(run `skyforge-agent config check`)",
                            ctx->config_path,
                            config_problems_count(&problems, CONFIG_ERROR) -
                                    config_problems_count_deferred(&problems),
                            first ? first->message : "unknown", c->agent.state_dir);
        }
        if (sd_bus_open_system(&bus) < 0)
                bus = NULL;
        /* More than one node: who holds each cluster-wide job's Lease, and where the job last ran. */
        for (size_t i = 0; i < n_jobs; i++)
                if (job_find(job_names[i]) && job_find(job_names[i])->cluster_wide)
                        cluster_wide[i] = job_names[i];
        (void) lease_guard_status(c, cluster_wide, leases, n_jobs);
        if (json)
                arr = json_object_new_array();
        else
                printf("%-9s %-14s %-8s %-17s %-20s %-20s %s\n", "JOB", "STATE", "RESULT", "LAST BACKUP",
                       "LAST SUCCESS", "NEXT RUN", "LAST ERROR / PROGRESS");
        for (size_t i = 0; job_names[i]; i++) {
                _cleanup_(job_state_done) JobState st = {};
                uint64_t next;

                r = job_state_read(c->agent.state_dir, job_names[i], &st);
                if (r < 0) {
                        sd_bus_flush_close_unref(bus);
                        json_object_put(arr);
                        return cli_fail(r, "cannot read job state");
                }
                fix_stale_running(&st);
                /* A job without its section is not idle: no timer run will do anything. Its last result
                 * (from when it was configured) stays visible. */
                if (!config_job_configured(c, job_names[i]) && !streq_ptr(st.state, "running")) {
                        free(st.state);
                        st.state = xstrdup("not configured");
                }
                next = next_run_usec(bus, job_names[i]);
                if (json) {
                        json_object *j = json_object_new_object();
                        json_object_object_add(j, "job", json_object_new_string(job_names[i]));
                        json_object_object_add(j, "state", json_object_new_string(st.state));
                        json_object_object_add(j, "last_result",
                                               isempty(st.last_result) ? NULL : json_object_new_string(st.last_result));
                        json_object_object_add(j, "last_error",
                                               isempty(st.last_error) ? NULL : json_object_new_string(st.last_error));
                        json_object_object_add(j, "last_backup_id", isempty(st.last_backup_id) ? NULL :
                                               json_object_new_string(st.last_backup_id));
                        json_object_object_add(j, "last_bytes", json_object_new_uint64(st.last_bytes));
                        json_object_object_add(j, "last_start", time_or_null(st.last_start_usec));
                        json_object_object_add(j, "last_end", time_or_null(st.last_end_usec));
                        json_object_object_add(j, "last_success", time_or_null(st.last_success_usec));
                        json_object_object_add(j, "next_run", time_or_null(next));
                        json_object_object_add(j, "progress", isempty(st.progress_text) ? NULL :
                                               json_object_new_string(st.progress_text));
                        /* The last `verify` result, as recorded (an object), or null. */
                        json_object_object_add(j, "last_verify", isempty(st.last_verify) ? NULL :
                                               json_tokener_parse(st.last_verify));
                        json_object_object_add(j, "lease_holder", isempty(st.lease_holder) ? NULL :
                                               json_object_new_string(st.lease_holder));
                        json_object_object_add(j, "lease",
                                               i < n_jobs ? lease_guard_status_json(&leases[i]) : NULL);
                        json_object_array_add(arr, j);
                } else {
                        _cleanup_free_ char *succ = st.last_success_usec ? format_iso8601(st.last_success_usec) : xstrdup("-");
                        _cleanup_free_ char *nr = next ? format_iso8601(next) : xstrdup("-");
                        printf("%-9s %-14s %-8s %-17s %-20s %-20s %s\n", job_names[i], st.state,
                               isempty(st.last_result) ? "-" : st.last_result,
                               isempty(st.last_backup_id) ? "-" : st.last_backup_id, succ, nr,
                               streq(st.state, "running") ? st.progress_text : st.last_error);
                }
        }
        /* The WAL stream, once it ran here: not a job with a timer, but watched like one. */
        if (json) {
                json_object *w = status_wal_json(c);
                if (w)
                        json_object_array_add(arr, w);
        } else
                status_wal_print(c, stdout);
        if (json) {
                puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(arr);
        } else
                lease_guard_status_print(c, cluster_wide, leases, n_jobs, stdout);
        for (size_t i = 0; i < ELEMENTSOF(leases); i++)
                lease_guard_status_done(&leases[i]);
        sd_bus_flush_close_unref(bus);
        return 0;
}

const Verb verb_status = {
        .name = "status",
        .args = "[--json]",
        .summary = "Show each job's state, last result, last backup and next run.",
        .help = "  --json   print a JSON array with one object per job (job, state, last_result, last_error,\n"
                "           last_backup_id, last_success, next_run, ...)\n",
        .run = run_status,
};
