/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <json-c/json.h>

#include "log/log.h"
#include "sys/state.h"

void job_state_done(JobState *s) {
        free(s->job);
        free(s->state);
        free(s->last_result);
        free(s->last_error);
        free(s->last_backup_id);
        free(s->progress_text);
        free(s->last_verify);
        free(s->lease_holder);
        *s = (JobState){};
}

char *job_state_path(const char *state_dir, const char *job) {
        return xasprintf("%s/%s.json", state_dir, job);
}

static void put_str(json_object *o, const char *k, const char *v) {
        json_object_object_add(o, k, json_object_new_string(strempty(v)));
}

static void put_u64(json_object *o, const char *k, uint64_t v) {
        json_object_object_add(o, k, json_object_new_uint64(v));
}

json_object *job_state_to_json(const JobState *s) {
        json_object *o = json_object_new_object();

        put_str(o, "job", s->job);
        put_str(o, "state", s->state ?: "idle");
        put_str(o, "last_result", s->last_result);
        put_str(o, "last_error", s->last_error);
        put_str(o, "last_backup_id", s->last_backup_id);
        put_u64(o, "last_bytes", s->last_bytes);
        put_u64(o, "last_start_usec", s->last_start_usec);
        put_u64(o, "last_end_usec", s->last_end_usec);
        put_u64(o, "last_success_usec", s->last_success_usec);
        json_object_object_add(o, "progress", json_object_new_double(s->progress));
        put_str(o, "progress_text", s->progress_text);
        put_str(o, "last_verify", s->last_verify);
        put_u64(o, "pid", s->pid);
        put_str(o, "lease_holder", s->lease_holder);
        return o;
}

char *state_json_str(json_object *o, const char *k) {
        json_object *v;
        if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
                return xstrdup("");
        return xstrdup(json_object_get_string(v));
}

uint64_t state_json_u64(json_object *o, const char *k) {
        json_object *v;
        if (!json_object_object_get_ex(o, k, &v))
                return 0;
        return json_object_get_uint64(v);
}

int job_state_from_json(json_object *o, JobState *ret) {
        json_object *v;

        if (!json_object_is_type(o, json_type_object))
                return -EBADMSG;
        *ret = (JobState){
                .job = state_json_str(o, "job"),
                .state = state_json_str(o, "state"),
                .last_result = state_json_str(o, "last_result"),
                .last_error = state_json_str(o, "last_error"),
                .last_backup_id = state_json_str(o, "last_backup_id"),
                .last_bytes = state_json_u64(o, "last_bytes"),
                .last_start_usec = state_json_u64(o, "last_start_usec"),
                .last_end_usec = state_json_u64(o, "last_end_usec"),
                .last_success_usec = state_json_u64(o, "last_success_usec"),
                .progress = json_object_object_get_ex(o, "progress", &v) ? json_object_get_double(v) : -1,
                .progress_text = state_json_str(o, "progress_text"),
                .last_verify = state_json_str(o, "last_verify"),
                .pid = state_json_u64(o, "pid"),
                .lease_holder = state_json_str(o, "lease_holder"),
        };
        if (isempty(ret->state)) {
                free(ret->state);
                ret->state = xstrdup("idle");
        }
        return 0;
}

int job_state_read(const char *state_dir, const char *job, JobState *ret) {
        _cleanup_free_ char *path = job_state_path(state_dir, job), *text = NULL;
        json_object *o;
        int r;

        r = read_file_string(path, 1 << 20, &text);
        if (r == -ENOENT) {
                *ret = (JobState){ .job = xstrdup(job), .state = xstrdup("idle"), .last_result = xstrdup(""),
                                   .last_error = xstrdup(""), .last_backup_id = xstrdup(""),
                                   .progress = -1, .progress_text = xstrdup(""), .last_verify = xstrdup(""),
                                   .lease_holder = xstrdup("") };
                return 0;
        }
        if (r < 0)
                return err_setf(r, "cannot read job state %s: %m", path);
        o = json_tokener_parse(text);
        if (!o)
                return err_setf(-EBADMSG, "job state %s is not valid JSON; remove it to reset the state", path);
        r = job_state_from_json(o, ret);
        json_object_put(o);
        if (r < 0)
                return err_setf(r, "job state %s has an unexpected shape; remove it to reset the state", path);
        if (isempty(ret->job)) {
                free(ret->job);
                ret->job = xstrdup(job);
        }
        return 0;
}

/* A backup run and a verify of the same job run side by side and both write JOB.json: the run its state
 * and progress, the verify its result. Each write happens under JOB.state.lock, held only for the
 * read-modify-write, and last_verify is owned by job_state_write_verify(): every other write keeps the
 * value on disk, so a run that read the state before the verify finished does not erase its result. */
static int state_lock(const char *state_dir, const char *job, int *ret_fd) {
        _cleanup_free_ char *path = xasprintf("%s/%s.state.lock", state_dir, job);
        int r;

        r = mkdir_p(state_dir, 0755);
        if (r < 0)
                return r;
        return lock_file(path, 0644, true, NULL, ret_fd);
}

static int state_write_locked(const char *state_dir, const JobState *s) {
        _cleanup_free_ char *path = job_state_path(state_dir, s->job);
        json_object *o = job_state_to_json(s);
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        int r;

        r = write_file_atomic(path, text, strlen(text), 0644);
        json_object_put(o);
        if (r < 0)
                return err_setf(r, "cannot write job state %s: %m (is state_dir writable?)", path);
        return 0;
}

int job_state_write(const char *state_dir, const JobState *s) {
        _cleanup_(job_state_done) JobState disk = {};
        _cleanup_close_ int fd = -EBADF;
        JobState w = *s;
        int r;

        r = state_lock(state_dir, s->job, &fd);
        if (r < 0)
                return err_setf(r, "cannot lock the state of job %s in %s: %m (is state_dir writable?)",
                                s->job, state_dir);
        if (job_state_read(state_dir, s->job, &disk) >= 0)
                w.last_verify = disk.last_verify;
        return state_write_locked(state_dir, &w);
}

int job_state_write_verify(const char *state_dir, const char *job, const char *last_verify) {
        _cleanup_(job_state_done) JobState st = {};
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = state_lock(state_dir, job, &fd);
        if (r < 0)
                return err_setf(r, "cannot lock the state of job %s in %s: %m (is state_dir writable?)", job,
                                state_dir);
        r = job_state_read(state_dir, job, &st);
        if (r < 0)
                return r;
        free(st.last_verify);
        st.last_verify = xstrdup(strempty(last_verify));
        return state_write_locked(state_dir, &st);
}
