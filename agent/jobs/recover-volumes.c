/* SPDX-License-Identifier: GPL-2.0-or-later */
/* recover's volumes step: each claim of the newest volumes backup back into the PersistentVolume that the
 * rebuilt cluster bound it to, with the workloads that mount it scaled to 0 meanwhile.
 *
 * The replica counts to scale back to are kept in STATE_DIR/recover-volumes.json, written before the
 * first workload is scaled down: a rerun after a crash (or after a failed restore, which leaves the
 * workloads at 0 so that they do not initialise the empty volume) finds the counts there, not the 0 it
 * set itself. A claim is done when it was restored from that backup into that PV and its workloads are
 * back; a rerun then skips it. */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "jobs/context.h"
#include "jobs/recover.h"
#include "jobs/volumes-chain.h"
#include "jobs/volumes-claims.h"
#include "jobs/volumes-nodes.h"
#include "jobs/volumes.h"
#include "kube/volumes.h"
#include "log/log.h"
#include "store/manifest.h"
#include "store/store.h"
#include "sys/fs.h"
#include "sys/walk.h"

#define POLL_USEC (1 * USEC_PER_SEC)
#define STATE_MAX (4U << 20)

static uint64_t bind_timeout(const RecoverOptions *o) {
        return o->bind_timeout_usec ?: RECOVER_DEFAULT_BIND_TIMEOUT_USEC;
}

/* Sleeps usec in short slices; false when recovery was cancelled (SIGTERM). */
static bool sleep_cancellable(uint64_t usec) {
        uint64_t end = now_usec(CLOCK_MONOTONIC) + usec;

        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (job_cancel_requested)
                        return false;
                if (now >= end)
                        return true;
                usleep((useconds_t) MIN(end - now, 100 * USEC_PER_MSEC));
        }
}

static int cancelled(void) {
        return err_set(-ECANCELED, EX_TEMPFAIL, "recovery was cancelled");
}

/* ---- the backup ---- */

/* Every node's folder of volumes backups (volumes-nodes.h): a rebuilt node, perhaps under a new name,
 * finds each claim wherever its last backup went. */
typedef struct VolumesSource {
        VolumesFolders folders;
        char *location;
        const Manifest *m; /* the newest backup of all */
        char **claims; /* the claims (NAMESPACE/PVC, not paths) of each folder's newest backup */
} VolumesSource;

static void volumes_source_done(VolumesSource *s) {
        volumes_folders_done(&s->folders);
        free(s->location);
        strv_free(s->claims);
        *s = (VolumesSource){};
}

static int volumes_source_open(const Config *c, VolumesSource *ret) {
        _cleanup_(volumes_source_done) VolumesSource s = {};
        int r;

        s.location = config_job_destination(c, "volumes");
        r = volumes_folders_open(c, NULL, &s.folders);
        if (r < 0)
                return r;
        s.claims = xcalloc(1, sizeof(char *));
        for (size_t i = 0; i < s.folders.n; i++) {
                const BackupList *l = &s.folders.items[i].list;
                _cleanup_strv_free_ char **names = NULL;

                if (l->n == 0)
                        continue;
                if (!s.m || strcmp(l->items[0]->id, s.m->id) > 0)
                        s.m = l->items[0];
                names = volumes_names(l->items[0]);
                STRV_FOREACH (n, names)
                        if ((*n)[0] != '/' && strchr(*n, '/') && !strv_contains(s.claims, *n))
                                strv_push(&s.claims, xstrdup(*n));
        }
        if (!s.m)
                return err_set(-ENOENT, EX_NOINPUT,
                               "no volumes backup in %s (the minio step brings MinIO's buckets back from "
                               "offsite first)",
                               s.location);
        *ret = s;
        s = (VolumesSource){};
        return 0;
}

/* The backup to restore claim from, in any node's folder: the newest that holds it from another
 * PersistentVolume than pv, the one it is bound to now. A backup of the current PV was taken on the
 * rebuilt node (its volumes timer ran before this step) and holds the new, likely empty volume, not what
 * the rebuild should bring back. */
static const Manifest *backup_for_claim(const VolumesSource *src, const char *claim, const char *pv,
                                        const VolumesFolder **ret_folder, bool *ret_passed_over) {
        const Manifest *newest = NULL, *other = NULL;
        const VolumesFolder *newest_f = NULL, *other_f = NULL;

        for (size_t f = 0; f < src->folders.n; f++) {
                const VolumesFolder *v = src->folders.items + f;

                for (size_t i = 0; i < v->list.n; i++) {
                        const Manifest *m = v->list.items[i];
                        VolumeRecord rec;

                        if (volumes_record(m, claim, &rec) < 0)
                                continue;
                        if (!newest || strcmp(m->id, newest->id) > 0) {
                                newest = m;
                                newest_f = v;
                        }
                        if (!streq_ptr(rec.pv, pv)) {
                                if (!other || strcmp(m->id, other->id) > 0) {
                                        other = m;
                                        other_f = v;
                                }
                                break; /* the folder's newest such: older ones lose anyway */
                        }
                }
        }
        if (other && other != newest)
                log_info("Passing over volumes backup %s for claim %s: it was taken of PersistentVolume %s, "
                         "the rebuilt volume.",
                         newest->id, claim, pv);
        *ret_folder = other ? other_f : newest_f;
        if (ret_passed_over)
                *ret_passed_over = other && other != newest;
        return other ?: newest;
}

/* ---- the state file ---- */

static char *state_path(const Config *c) {
        return path_join(c->agent.state_dir, "recover-volumes.json");
}

static json_object *state_load(const Config *c) {
        _cleanup_free_ char *p = state_path(c), *text = NULL;
        json_object *o = NULL;

        if (read_file_string(p, STATE_MAX, &text) >= 0)
                o = json_tokener_parse(text);
        if (o && !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                o = NULL;
        }
        if (text && !o)
                log_warning("%s is not a JSON object; ignoring it (the replica counts it held are lost: "
                            "check the workloads' replicas afterwards).",
                            p);
        return o ?: json_object_new_object();
}

static int state_save(const Config *c, json_object *state) {
        _cleanup_free_ char *p = state_path(c);
        const char *text = json_object_to_json_string_ext(state, JSON_C_TO_STRING_PRETTY);
        int r;

        (void) mkdir_p(c->agent.state_dir, 0755);
        r = write_file_atomic(p, text, strlen(text), 0600);
        if (r < 0)
                return err_set(r, EX_CANTCREAT, "cannot write %s: %s", p, strerror(-r));
        return 0;
}

static const char *obj_string(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool obj_bool(json_object *o, const char *key) {
        json_object *v;

        return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* The entry of claim, reset when it belongs to another backup or PV (a new recovery). */
static json_object *state_claim(json_object *state, const char *claim, const char *backup, const char *pv) {
        json_object *e = NULL, *old = NULL, *reps = NULL;

        if (json_object_object_get_ex(state, claim, &old) && json_object_is_type(old, json_type_object) &&
            streq_ptr(obj_string(old, "backup"), backup) && streq_ptr(obj_string(old, "pv"), pv))
                return old;
        /* Counts saved by an interrupted run that scaled the workloads down are still the ones to come
         * back to, whatever the claim is restored from now. */
        if (old && json_object_is_type(old, json_type_object) &&
            json_object_object_get_ex(old, "replicas", &reps) && json_object_is_type(reps, json_type_object))
                reps = json_object_get(reps);
        else
                reps = json_object_new_object();
        e = json_object_new_object();
        json_object_object_add(e, "backup", json_object_new_string(backup));
        json_object_object_add(e, "pv", json_object_new_string(pv));
        json_object_object_add(e, "restored", json_object_new_boolean(false));
        json_object_object_add(e, "replicas", reps);
        json_object_object_add(state, claim, e);
        return e;
}

static json_object *state_replicas(json_object *e) {
        json_object *r = NULL;

        if (!json_object_object_get_ex(e, "replicas", &r) || !json_object_is_type(r, json_type_object)) {
                r = json_object_new_object();
                json_object_object_add(e, "replicas", r);
        }
        return r;
}

/* ---- the directory ---- */

/* The first entry of dir, or NULL when it is empty (to free). */
static char *dir_first_entry(const char *dir) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_(dir_list_freep) DirList *l = NULL;
        const char *first;

        if (fd < 0 || dir_list_open(fd, NULL, 4096, &l) < 0)
                return xstrdup("?");
        return dir_list_next(l, &first) > 0 ? xstrdup(first) : NULL;
}

static int refuse_not_empty(const char *claim, const char *dir, const char *first) {
        return err_set(-ENOTEMPTY, EX_CANTCREAT,
                       "the directory %s of claim %s is not empty (it holds \"%s\", perhaps written by its "
                       "workload since it started): nothing was restored into it; rerun with --force to "
                       "replace its content with the backup",
                       dir, claim, first);
}

/* ---- waiting ---- */

static int wait_bound(const Config *c, KubeClient *client, const RecoverOptions *o, const char *claim,
                      VolumeClaim *ret) {
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        unsigned polls = 0;
        int r;

        for (;;) {
                r = volumes_claim_lookup(c, client, claim, ret);
                if (r != -EAGAIN)
                        return r;
                if (now_usec(CLOCK_MONOTONIC) - start >= bind_timeout(o))
                        return err_set(-ETIMEDOUT, EX_UNAVAILABLE,
                                       "claim %s is not bound to a PersistentVolume after %" PRIu64
                                       " s: apply the manifests that create it (the manifests step) and let "
                                       "its workload's pod be scheduled (local-path binds on first use), or "
                                       "wait longer with --bind-timeout",
                                       claim, bind_timeout(o) / USEC_PER_SEC);
                if (polls++ % 10 == 0)
                        log_info("Waiting for claim %s to be bound.", claim);
                if (!sleep_cancellable(POLL_USEC))
                        return cancelled();
        }
}

static int wait_pods_gone(KubeClient *client, const RecoverOptions *o, const char *ns, const char *pvc,
                          const char *claim) {
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        unsigned polls = 0;
        int r;

        for (;;) {
                _cleanup_free_ char *first = NULL;
                size_t n;

                r = kube_pods_using_claim(client, ns, pvc, &n, &first);
                if (r < 0)
                        return r;
                if (n == 0)
                        return 0;
                if (now_usec(CLOCK_MONOTONIC) - start >= bind_timeout(o))
                        return err_set(
                                -ETIMEDOUT, EX_UNAVAILABLE,
                                "%zu pod(s) still mount claim %s (%s) %" PRIu64
                                " s after its workloads were scaled to 0: nothing was restored; a pod "
                                "not owned by a Deployment or StatefulSet must be deleted by hand, then "
                                "rerun (or wait longer with --bind-timeout)",
                                n, claim, strna(first), bind_timeout(o) / USEC_PER_SEC);
                if (polls++ % 10 == 0)
                        log_info("Waiting for %zu pod(s) mounting claim %s to end (%s).", n, claim,
                                 strna(first));
                if (!sleep_cancellable(POLL_USEC))
                        return cancelled();
        }
}

/* ---- one claim ---- */

typedef enum ClaimOutcome {
        CLAIM_RESTORED,
        CLAIM_DONE_ALREADY,
        CLAIM_ELSEWHERE,
} ClaimOutcome;

static int scale_back(const Config *c, KubeClient *client, json_object *state, json_object *e,
                      const char *ns, const char *claim, char **note) {
        json_object *reps = state_replicas(e);
        _cleanup_strv_free_ char **done = xcalloc(1, sizeof(char *));
        int r = 0;

        json_object_object_foreach(reps, w, v) {
                unsigned n = (unsigned) MAX(json_object_get_int64(v), (int64_t) 0);

                r = kube_scale_set(client, ns, w, n, NULL);
                if (r == -ENOENT) {
                        log_warning("%s in namespace \"%s\" is gone; not scaled back.", w, ns);
                        r = 0;
                } else if (r < 0)
                        break;
                else {
                        log_info("Scaled %s in namespace \"%s\" back to %u.", w, ns, n);
                        char *j = xasprintf("%s%s%s back to %u", strempty(*note), *note ? ", " : "", w, n);
                        free(*note);
                        *note = j;
                }
                strv_push(&done, xstrdup(w));
        }
        STRV_FOREACH (d, done)
                json_object_object_del(reps, *d);
        if (!strv_isempty(done)) {
                int q = state_save(c, state);
                if (r >= 0)
                        r = q;
        }
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                return err_set(r, err_exit_code(r),
                               "%s; the replica counts of the workloads of claim %s are kept in "
                               "state_dir/recover-volumes.json: rerun recover --step volumes to scale them "
                               "back",
                               why, claim);
        }
        return 0;
}

static int claim_recover(const Config *c, const RecoverOptions *o, VolumesSource *src, KubeClient *client,
                         json_object *state, const char *claim, ClaimOutcome *ret_outcome, char **ret_note) {
        _cleanup_(volume_claim_done) VolumeClaim vc = {};
        _cleanup_strv_free_ char **workloads = NULL;
        _cleanup_free_ char *ns = xstrndup(claim, strcspn(claim, "/")), *first = NULL, *note = NULL;
        const char *pvc = claim + strlen(ns) + 1;
        const VolumesFolder *folder = NULL;
        const Manifest *m;
        json_object *e, *reps;
        int r;

        r = wait_bound(c, client, o, claim, &vc);
        if (r == -EXDEV) {
                *ret_outcome = CLAIM_ELSEWHERE;
                *ret_note = xstrdup(err_message());
                return 0;
        }
        if (r < 0)
                return r;
        m = backup_for_claim(src, claim, vc.pv, &folder, NULL);

        e = state_claim(state, claim, m->id, vc.pv);
        reps = state_replicas(e);
        if (obj_bool(e, "restored")) {
                if (json_object_object_length(reps) == 0) {
                        *ret_outcome = CLAIM_DONE_ALREADY;
                        *ret_note = xasprintf("%s: restored from %s into %s already", claim, m->id, vc.path);
                        return 0;
                }
                r = scale_back(c, client, state, e, ns, claim, &note);
                if (r < 0)
                        return r;
                *ret_outcome = CLAIM_RESTORED;
                *ret_note = xasprintf("%s: restored into %s before; %s", claim, vc.path, strempty(note));
                return 0;
        }

        /* Refused before anything is touched: the workloads keep running. */
        first = dir_first_entry(vc.path);
        if (first && !o->force && json_object_object_length(reps) == 0)
                return refuse_not_empty(claim, vc.path, first);

        r = kube_workloads_using_claim(client, ns, pvc, &workloads);
        if (r < 0)
                return r;
        /* The counts to come back to, saved before the first scale-down; one saved by an earlier run
         * (which scaled the workload to 0 itself) is kept. */
        STRV_FOREACH (w, workloads) {
                unsigned n;
                json_object *v;

                if (json_object_object_get_ex(reps, *w, &v))
                        continue;
                r = kube_scale_get(client, ns, *w, &n, NULL);
                if (r < 0)
                        return r;
                json_object_object_add(reps, *w, json_object_new_int64(n));
        }
        r = state_save(c, state);
        if (r < 0)
                return r;
        json_object_object_foreach(reps, wl, count) {
                r = kube_scale_set(client, ns, wl, 0, NULL);
                if (r < 0 && r != -ENOENT)
                        return r;
                log_info("Scaled %s in namespace \"%s\" to 0 (from %" PRId64 ").", wl, ns,
                         json_object_get_int64(count));
        }
        r = wait_pods_gone(client, o, ns, pvc, claim);
        if (r < 0)
                return r;

        free(first);
        first = dir_first_entry(vc.path);
        if (first && !o->force)
                return err_set(-ENOTEMPTY, EX_CANTCREAT,
                               "the directory %s of claim %s is not empty (it holds \"%s\"): nothing was "
                               "restored; its workloads were left at 0 (their counts are kept in "
                               "state_dir/recover-volumes.json); rerun with --force to replace the content "
                               "with the backup",
                               vc.path, claim, first);

        VolumesRestoreOptions ro = { .volume = claim, .to = vc.path, .replace = o->force, .out = stderr };
        r = volumes_restore(c, folder->store, &folder->list, m, &ro);
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                return err_set(
                        r, err_exit_code(r),
                        "%s; the workloads of claim %s were left at 0 so that they do not start on an "
                        "empty volume (their counts are kept in state_dir/recover-volumes.json: a "
                        "rerun restores them)",
                        why, claim);
        }
        json_object_object_add(e, "restored", json_object_new_boolean(true));
        json_object_object_add(e, "path", json_object_new_string(vc.path));
        r = state_save(c, state);
        if (r < 0)
                return r;
        r = scale_back(c, client, state, e, ns, claim, &note);
        if (r < 0)
                return r;
        *ret_outcome = CLAIM_RESTORED;
        *ret_note = xasprintf("%s from %s into %s%s%s%s", claim, m->id, vc.path,
                              first ? " (replaced, --force)" : "", note ? "; " : "", strempty(note));
        return 0;
}

/* ---- the step ---- */

int recover_volumes_plan(const Config *c, const RecoverOptions *o, FILE *out) {
        _cleanup_(volumes_source_done) VolumesSource src = {};
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        char size[FORMAT_BYTES_MAX];
        int r;

        if (!c->volumes.present) {
                fprintf(out, "volumes    skip: [volumes] is not configured\n");
                return 0;
        }
        r = volumes_source_open(c, &src);
        if (r < 0) {
                fprintf(out, "volumes    cannot: %s\n", err_message() ?: strerror(-r));
                return r;
        }
        if (strv_isempty(src.claims)) {
                fprintf(out,
                        "volumes    skip: volumes backup %s holds no claims (restore its paths with "
                        "restore volumes --to)\n",
                        src.m->id);
                return 0;
        }
        fprintf(out,
                "volumes    restore %zu claim(s) of volumes backup %s (%s) from %s into their rebuilt "
                "PersistentVolumes, workloads scaled to 0 meanwhile%s\n",
                strv_length(src.claims), src.m->id, format_bytes(src.m->bytes, size, sizeof size),
                src.location, o->force ? " (--force: non-empty directories replaced)" : "");
        r = volumes_kube_open(c, &client);
        if (r < 0) {
                fprintf(out, "           cluster not reachable now: %s\n", err_message() ?: strerror(-r));
                return 0;
        }
        STRV_FOREACH (claim, src.claims) {
                _cleanup_(volume_claim_done) VolumeClaim vc = {};
                _cleanup_strv_free_ char **workloads = NULL;
                _cleanup_free_ char *ns = xstrndup(*claim, strcspn(*claim, "/")), *first = NULL;
                const VolumesFolder *folder = NULL;
                const Manifest *m;
                bool passed = false;

                r = volumes_claim_lookup(c, client, *claim, &vc);
                if (r == -EAGAIN) {
                        fprintf(out, "           %s: not bound yet (the step waits up to %" PRIu64 " s)\n",
                                *claim, bind_timeout(o) / USEC_PER_SEC);
                        continue;
                }
                if (r < 0) {
                        fprintf(out, "           %s: %s\n", *claim, err_message() ?: strerror(-r));
                        continue;
                }
                first = dir_first_entry(vc.path);
                m = backup_for_claim(&src, *claim, vc.pv, &folder, &passed);
                if (m != src.m || !streq_ptr(folder->node, src.folders.self)) {
                        _cleanup_free_ char *what = volumes_folder_describe(folder);
                        fprintf(out, "           %s: from volumes backup %s (%s%s%s)\n", *claim, m->id,
                                passed ? "newer ones hold the rebuilt volume" : "",
                                passed && !streq_ptr(folder->node, src.folders.self) ? "; " : "",
                                streq_ptr(folder->node, src.folders.self) ? "" : what);
                }
                fprintf(out, "           %s: PersistentVolume %s in %s (%s)", *claim, vc.pv, vc.path,
                        !first     ? "empty"
                        : o->force ? "not empty: replaced (--force)"
                                   : "not empty: the step will refuse without --force");
                if (kube_workloads_using_claim(client, ns, *claim + strlen(ns) + 1, &workloads) >= 0)
                        STRV_FOREACH (w, workloads) {
                                unsigned n;
                                if (kube_scale_get(client, ns, *w, &n, NULL) >= 0)
                                        fprintf(out, "%s %s (%u)", w == workloads ? "; scales to 0:" : ",",
                                                *w, n);
                        }
                fputc('\n', out);
        }
        return 0;
}

int recover_volumes_run(const Config *c, const RecoverOptions *o, RecoverOutcome *ret_outcome,
                        char **ret_note) {
        _cleanup_(volumes_source_done) VolumesSource src = {};
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        _cleanup_free_ char *done = NULL, *skipped = NULL;
        json_object *state = NULL;
        size_t n_done = 0, n_skipped = 0;
        int r;

        if (!c->volumes.present) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note = xstrdup("[volumes] is not configured");
                return 0;
        }
        r = volumes_source_open(c, &src);
        if (r < 0)
                return r;
        if (strv_isempty(src.claims)) {
                *ret_outcome = RECOVER_SKIPPED;
                *ret_note = xasprintf("volumes backup %s holds no claims (restore its paths with restore "
                                      "volumes --to)",
                                      src.m->id);
                return 0;
        }
        r = volumes_kube_open(c, &client);
        if (r < 0)
                return r;
        state = state_load(c);
        STRV_FOREACH (claim, src.claims) {
                _cleanup_free_ char *note = NULL;
                ClaimOutcome outcome = CLAIM_ELSEWHERE;
                char **list;

                r = claim_recover(c, o, &src, client, state, *claim, &outcome, &note);
                if (r < 0)
                        break;
                list = outcome == CLAIM_RESTORED ? &done : &skipped;
                char *j = xasprintf("%s%s%s", strempty(*list), *list ? "; " : "", note);
                free(*list);
                *list = j;
                if (outcome == CLAIM_RESTORED)
                        n_done++;
                else
                        n_skipped++;
        }
        json_object_put(state);
        if (r < 0)
                return r;
        *ret_outcome = n_done > 0 ? RECOVER_DONE : RECOVER_SKIPPED;
        *ret_note = xasprintf("%zu claim(s) restored%s%s%s, %zu skipped%s%s%s", n_done, done ? " (" : "",
                              strempty(done), done ? ")" : "", n_skipped, skipped ? " (" : "",
                              strempty(skipped), skipped ? ")" : "");
        return 0;
}
