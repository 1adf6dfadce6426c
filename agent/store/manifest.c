/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <sysexits.h>

#include "log/log.h"
#include "store/manifest.h"

#define MANIFEST_MAX_SIZE (16 * 1024 * 1024)
#define MANIFEST_FORMAT 1

void manifest_free(Manifest *m) {
        if (!m)
                return;
        free(m->job);
        free(m->id);
        free(m->compression);
        strv_free(m->recipients);
        free(m->agent_version);
        free(m->tool);
        free(m->tool_version);
        free(m->server_version);
        free(m->hostname);
        free(m->node);
        for (size_t i = 0; i < m->n_objects; i++) {
                free(m->objects[i].name);
                free(m->objects[i].sha256);
        }
        free(m->objects);
        json_object_put(m->extra);
        free(m);
}

void manifest_add_object(Manifest *m, const char *name, uint64_t bytes, const char *sha256) {
        m->objects = xrealloc(m->objects, (m->n_objects + 1) * sizeof *m->objects);
        m->objects[m->n_objects++] = (ManifestObject){ .name = xstrdup(name), .bytes = bytes,
                                                       .sha256 = xstrdup(sha256) };
        m->bytes += bytes;
}

static void add_str(json_object *o, const char *k, const char *v) {
        json_object_object_add(o, k, v ? json_object_new_string(v) : json_object_new_null());
}

static void add_time(json_object *o, const char *k, uint64_t usec) {
        _cleanup_free_ char *s = format_iso8601(usec);
        json_object_object_add(o, k, json_object_new_string(s));
}

json_object *manifest_to_json(const Manifest *m) {
        json_object *o = json_object_new_object(), *objs = json_object_new_array(), *rec = json_object_new_array();

        json_object_object_add(o, "format", json_object_new_int(MANIFEST_FORMAT));
        add_str(o, "job", m->job);
        add_str(o, "id", m->id);
        add_time(o, "started", m->started_usec);
        add_time(o, "finished", m->finished_usec);
        json_object_object_add(o, "started_usec", json_object_new_uint64(m->started_usec));
        json_object_object_add(o, "finished_usec", json_object_new_uint64(m->finished_usec));
        json_object_object_add(o, "bytes", json_object_new_uint64(m->bytes));
        json_object_object_add(o, "raw_bytes", json_object_new_uint64(m->raw_bytes));
        add_str(o, "compression", m->compression ?: "none");
        json_object_object_add(o, "compression_level", json_object_new_int(m->compression_level));
        json_object_object_add(o, "encrypted", json_object_new_boolean(m->encrypted));
        STRV_FOREACH(r, m->recipients)
                json_object_array_add(rec, json_object_new_string(*r));
        json_object_object_add(o, "recipients", rec);
        add_str(o, "agent_version", m->agent_version);
        add_str(o, "tool", m->tool);
        add_str(o, "tool_version", m->tool_version);
        add_str(o, "server_version", m->server_version);
        add_str(o, "hostname", m->hostname);
        for (size_t i = 0; i < m->n_objects; i++) {
                json_object *e = json_object_new_object();
                add_str(e, "name", m->objects[i].name);
                json_object_object_add(e, "bytes", json_object_new_uint64(m->objects[i].bytes));
                add_str(e, "sha256", m->objects[i].sha256);
                json_object_array_add(objs, e);
        }
        json_object_object_add(o, "objects", objs);
        if (m->extra)
                json_object_object_add(o, "details", json_object_get(m->extra));
        return o;
}

char *manifest_serialize(const Manifest *m) {
        json_object *o = manifest_to_json(m);
        char *s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

static int get_string(json_object *o, const char *k, bool required, char **ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null)) {
                if (required)
                        return err_setf(-EBADMSG, "manifest lacks \"%s\"", k);
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return err_setf(-EBADMSG, "manifest field \"%s\" is not a string", k);
        *ret = xstrdup(json_object_get_string(v));
        return 0;
}

static int get_u64(json_object *o, const char *k, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
                return err_setf(-EBADMSG, "manifest lacks a number \"%s\"", k);
        errno = 0;
        int64_t x = json_object_get_int64(v);
        if (x < 0)
                return err_setf(-EBADMSG, "manifest field \"%s\" is negative", k);
        *ret = json_object_get_uint64(v);
        return 0;
}

static bool sha256_hex_valid(const char *s) {
        if (!s || strlen(s) != 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!strchr("0123456789abcdef", *p))
                        return false;
        return true;
}

static int objects_unique(const Manifest *m);

int manifest_from_json(json_object *o, Manifest **ret) {
        _cleanup_(manifest_freep) Manifest *m = xcalloc(1, sizeof *m);
        json_object *v, *objs;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return err_setf(-EBADMSG, "manifest is not a JSON object");
        if ((r = get_string(o, "job", true, &m->job)) < 0 || (r = get_string(o, "id", true, &m->id)) < 0 ||
            (r = get_u64(o, "started_usec", &m->started_usec)) < 0 ||
            (r = get_u64(o, "finished_usec", &m->finished_usec)) < 0 ||
            (r = get_u64(o, "raw_bytes", &m->raw_bytes)) < 0 ||
            (r = get_string(o, "compression", false, &m->compression)) < 0 ||
            (r = get_string(o, "agent_version", false, &m->agent_version)) < 0 ||
            (r = get_string(o, "tool", false, &m->tool)) < 0 ||
            (r = get_string(o, "tool_version", false, &m->tool_version)) < 0 ||
            (r = get_string(o, "server_version", false, &m->server_version)) < 0 ||
            (r = get_string(o, "hostname", false, &m->hostname)) < 0)
                return r;
        if (!backup_id_valid(m->id))
                return err_setf(-EBADMSG, "manifest has an invalid id \"%s\"", m->id);
        if (json_object_object_get_ex(o, "compression_level", &v))
                m->compression_level = json_object_get_int(v);
        if (json_object_object_get_ex(o, "encrypted", &v))
                m->encrypted = json_object_get_boolean(v);
        if (json_object_object_get_ex(o, "recipients", &v) && json_object_is_type(v, json_type_array)) {
                m->recipients = xcalloc(1, sizeof(char *));
                for (size_t i = 0; i < json_object_array_length(v); i++)
                        strv_push(&m->recipients, xstrdup(json_object_get_string(json_object_array_get_idx(v, i))));
        }
        if (!json_object_object_get_ex(o, "objects", &objs) || !json_object_is_type(objs, json_type_array))
                return err_setf(-EBADMSG, "manifest lacks its \"objects\" list");
        /* Every job stores at least one object: a manifest without any restores nothing. */
        if (json_object_array_length(objs) == 0)
                return err_setf(-EBADMSG, "manifest lists no objects (a backup has at least one)");
        for (size_t i = 0; i < json_object_array_length(objs); i++) {
                json_object *e = json_object_array_get_idx(objs, i);
                _cleanup_free_ char *name = NULL, *sha = NULL;
                uint64_t bytes;

                if (!json_object_is_type(e, json_type_object))
                        return err_setf(-EBADMSG, "manifest object #%zu is not a JSON object", i + 1);
                if ((r = get_string(e, "name", true, &name)) < 0 || (r = get_u64(e, "bytes", &bytes)) < 0 ||
                    (r = get_string(e, "sha256", true, &sha)) < 0)
                        return r;
                if (!manifest_object_name_valid(name))
                        return err_setf(-EBADMSG,
                                        "manifest object name \"%.200s\" is not a plain name inside the "
                                        "location (empty, absolute, a '.' or '..' segment, a control "
                                        "character or a manifest's name)",
                                        name);
                if (!sha256_hex_valid(sha))
                        return err_setf(-EBADMSG, "manifest object %s has an invalid sha256", name);
                manifest_add_object(m, name, bytes, sha);
        }
        r = objects_unique(m);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "details", &v))
                m->extra = json_object_get(v);
        *ret = TAKE_PTR(m);
        return 0;
}

int manifest_parse(const char *text, Manifest **ret) {
        json_tokener *tok = json_tokener_new();
        size_t n = strlen(text);
        json_object *o;
        int r;

        /* Strict: one complete JSON value and nothing after it but blanks. json_tokener_parse() would take
         * a valid prefix and ignore the rest of a file that two writers garbled. */
        o = n <= INT_MAX ? json_tokener_parse_ex(tok, text, (int) n) : NULL;
        if (o && json_tokener_get_error(tok) == json_tokener_success) {
                size_t end = json_tokener_get_parse_end(tok);
                if (text[end + strspn(text + end, " \t\r\n")] != 0) {
                        json_object_put(o);
                        json_tokener_free(tok);
                        return err_setf(-EBADMSG, "manifest has data after its JSON object (at byte %zu)",
                                        end);
                }
        } else {
                bool truncated = json_tokener_get_error(tok) == json_tokener_continue;
                json_object_put(o);
                json_tokener_free(tok);
                return err_setf(-EBADMSG, "manifest is not valid JSON%s",
                                truncated ? " (it ends early: truncated?)" : "");
        }
        json_tokener_free(tok);
        r = manifest_from_json(o, ret);
        json_object_put(o);
        return r;
}

char *manifest_name(const char *id) {
        return xasprintf("%s.json", id);
}

bool manifest_name_valid(const char *name, char ret_id[static BACKUP_ID_LEN + 1]) {
        if (strlen(name) != BACKUP_ID_LEN + 5 || !streq(name + BACKUP_ID_LEN, ".json"))
                return false;
        memcpy(ret_id, name, BACKUP_ID_LEN);
        ret_id[BACKUP_ID_LEN] = 0;
        return backup_id_valid(ret_id);
}

bool manifest_object_name_valid(const char *name) {
        char id[BACKUP_ID_LEN + 1];
        size_t n = strlen(name);

        if (n == 0 || n > 1024 || name[0] == '/' || name[n - 1] == '/' || manifest_name_valid(name, id))
                return false;
        for (const char *p = name; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        for (const char *p = name; *p;) {
                size_t k = strcspn(p, "/");
                if (k == 0 || (k == 1 && p[0] == '.') || (k == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p += k;
                if (*p == '/')
                        p++;
        }
        return true;
}

bool backup_object_belongs(const char *id, const char *name) {
        const char *rest = startswith(name, id);

        return backup_id_valid(id) && rest && (rest[0] == '.' || rest[0] == '/') && rest[1] != 0 &&
               manifest_object_name_valid(name);
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int objects_unique(const Manifest *m) {
        _cleanup_free_ char **names = xcalloc(m->n_objects + 1, sizeof(char *));

        for (size_t i = 0; i < m->n_objects; i++)
                names[i] = m->objects[i].name;
        qsort(names, m->n_objects, sizeof(char *), name_cmp);
        for (size_t i = 1; i < m->n_objects; i++)
                if (streq(names[i - 1], names[i]))
                        return err_setf(-EBADMSG, "manifest lists object %s twice", names[i]);
        return 0;
}

int manifest_store(Store *s, const Manifest *m) {
        _cleanup_free_ char *text = manifest_serialize(m), *name = manifest_name(m->id);
        return store_put_buffer(s, name, text, strlen(text));
}

int manifest_load(Store *s, const char *id, Manifest **ret) {
        _cleanup_free_ char *name = manifest_name(id), *text = NULL;
        _cleanup_(manifest_freep) Manifest *m = NULL;
        size_t len = 0;
        int r;

        r = store_get_buffer(s, name, MANIFEST_MAX_SIZE, &text, &len);
        if (r == -ENOENT)
                return r;
        if (r < 0)
                return err_setf(r, "manifest %s/%s is unreadable: %s", s->location, name,
                                err_message() ?: strerror(-r));
        if (strlen(text) != len)
                return err_setf(-EBADMSG, "manifest %s/%s is unreadable: it contains a NUL byte",
                                s->location, name);
        r = manifest_parse(text, &m);
        if (r < 0)
                return err_setf(r, "manifest %s/%s is unreadable: %s", s->location, name, err_message());
        /* A manifest copied or renamed to another id would have retention delete the wrong manifest. */
        if (!streq(m->id, id))
                return err_setf(
                        -EBADMSG,
                        "manifest %s/%s holds backup %s, not %s (copied or renamed?); remove the stray "
                        "copy",
                        s->location, name, m->id, id);
        *ret = TAKE_PTR(m);
        return 0;
}

void backup_list_done(BackupList *l) {
        for (size_t i = 0; i < l->n; i++)
                manifest_free(l->items[i]);
        free(l->items);
        for (size_t i = 0; i < l->n_damaged; i++)
                free(l->damaged[i].message);
        free(l->damaged);
        *l = (BackupList){};
}

typedef struct CollectIds {
        char **ids;
} CollectIds;

static int collect_manifest_ids(const StoreEntry *e, void *userdata) {
        CollectIds *c = userdata;
        char id[BACKUP_ID_LEN + 1];

        if (manifest_name_valid(e->name, id))
                strv_push(&c->ids, xstrdup(id));
        return 0;
}

static int list_manifest_ids(Store *s, char ***ret) {
        CollectIds c = { .ids = xcalloc(1, sizeof(char *)) };
        int r;

        r = store_list(s, "", collect_manifest_ids, &c);
        if (r < 0) {
                strv_free(c.ids);
                return r;
        }
        *ret = c.ids;
        return 0;
}

int backup_list_load(Store *s, const char *job, BackupList *ret) {
        _cleanup_strv_free_ char **ids = NULL;
        _cleanup_(backup_list_done) BackupList l = {};
        size_t n;
        int r;

        r = list_manifest_ids(s, &ids);
        if (r < 0)
                return r;
        n = strv_length(ids);
        l.items = xcalloc(n ?: 1, sizeof(Manifest *));
        l.damaged = xcalloc(n ?: 1, sizeof(BackupDamaged));
        /* Listing order is ascending: walk backwards for newest first. */
        for (size_t i = n; i > 0; i--) {
                Manifest *m;

                r = manifest_load(s, ids[i - 1], &m);
                if (r == -ENOENT)
                        continue; /* deleted since the listing: gone, not damaged */
                if (r < 0) {
                        /* One bad manifest must not hide every other backup, nor itself: it is a damaged
                         * backup, which verify reports and retention neither counts nor deletes. */
                        BackupDamaged *d = l.damaged + l.n_damaged++;
                        memcpy(d->id, ids[i - 1], sizeof d->id);
                        /* Taken out of the error slot: handled here, it must not turn up later as the
                         * cause of an unrelated failure. */
                        _cleanup_(failure_done) Failure f = failure_take(r);
                        d->message = TAKE_PTR(f.message);
                        log_warning("%s; backup %s is damaged.", d->message, d->id);
                        continue;
                }
                if (job && !streq(m->job, job)) {
                        /* Another job's backup in the same location: not this job's to list, count or
                         * delete. */
                        log_debug("%s/%s.json is a backup of %s, not %s, skipping.", s->location, m->id,
                                  m->job, job);
                        manifest_free(m);
                        continue;
                }
                l.items[l.n++] = m;
        }
        *ret = l;
        l = (BackupList){};
        return 0;
}

int backup_list_find(const BackupList *l, const char *id_or_latest, const Manifest **ret) {
        if (streq(id_or_latest, "latest")) {
                if (l->n == 0)
                        return err_set(-ENOENT, EX_NOINPUT, "no backups found");
                *ret = l->items[0];
                return 0;
        }
        if (!backup_id_valid(id_or_latest))
                return err_set(-EINVAL, EX_USAGE, "\"%s\" is not a backup id (YYYYMMDDTHHMMSSZ) or \"latest\"",
                               id_or_latest);
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i]->id, id_or_latest)) {
                        *ret = l->items[i];
                        return 0;
                }
        return err_set(-ENOENT, EX_NOINPUT, "no backup %s (see `skyforge-agent list`)", id_or_latest);
}

char *backup_size_damage(Store *s, const Manifest *m) {
        for (size_t i = 0; i < m->n_objects; i++) {
                const ManifestObject *o = m->objects + i;
                StoreEntry e = {};
                char *d = NULL;
                int r;

                r = store_stat(s, o->name, &e);
                if (r == -ENOENT)
                        d = xasprintf("%s is missing", o->name);
                else if (r < 0)
                        d = xasprintf("cannot stat %s: %s", o->name, err_message() ?: strerror(-r));
                else if (e.size != o->bytes)
                        d = xasprintf("%s has %" PRIu64 " bytes, the manifest says %" PRIu64, o->name,
                                      e.size, o->bytes);
                store_entry_done(&e);
                if (d)
                        return d;
        }
        return NULL;
}

static const Manifest *kept_naming(const char *name, Manifest *const *kept, size_t n_kept) {
        for (size_t i = 0; i < n_kept; i++)
                for (size_t j = 0; j < kept[i]->n_objects; j++)
                        if (streq(kept[i]->objects[j].name, name))
                                return kept[i];
        return NULL;
}

int backup_delete(Store *s, const Manifest *m, Manifest *const *kept, size_t n_kept) {
        _cleanup_free_ char *name = manifest_name(m->id);
        int r, left = 0;

        r = store_remove(s, name);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_objects; i++) {
                const char *o = m->objects[i].name;
                const Manifest *other;

                if (!backup_object_belongs(m->id, o)) {
                        log_warning(
                                "Left %s/%s in place: backup %s lists it, but its name does not start with "
                                "%s, so it is not that backup's to delete (a copied manifest?).",
                                s->location, o, m->id, m->id);
                        left++;
                        continue;
                }
                other = kept_naming(o, kept, n_kept);
                if (other) {
                        log_warning("Left %s/%s in place: backup %s is deleted, but the kept backup %s (%s) "
                                    "lists the object too.",
                                    s->location, o, m->id, other->id, other->job);
                        left++;
                        continue;
                }
                r = store_remove(s, o);
                if (r < 0)
                        /* The backup is already gone; what remains is an orphan the next run removes. */
                        log_warning("%s, continuing.", err_message() ?: "cannot remove object");
        }
        return left;
}

typedef struct Orphans {
        char **manifest_ids;
        const char *keep_id;
        const char *const *suffixes;
        char **remove;
} Orphans;

static void orphans_done(Orphans *o) {
        strv_free(o->remove);
}

static bool name_is_jobs(const char *name, const char *const *suffixes,
                         char ret_id[static BACKUP_ID_LEN + 1]) {
        if (strlen(name) <= BACKUP_ID_LEN)
                return false;
        memcpy(ret_id, name, BACKUP_ID_LEN);
        ret_id[BACKUP_ID_LEN] = 0;
        if (!backup_id_valid(ret_id) || !backup_object_belongs(ret_id, name))
                return false;
        for (size_t i = 0; suffixes && suffixes[i]; i++) {
                const char *rest = name + BACKUP_ID_LEN;
                if (endswith(suffixes[i], "/") ? !!startswith(rest, suffixes[i]) : streq(rest, suffixes[i]))
                        return true;
        }
        return false;
}

static int collect_orphans(const StoreEntry *e, void *userdata) {
        Orphans *o = userdata;
        char id[BACKUP_ID_LEN + 1];

        if (manifest_name_valid(e->name, id))
                return 0;
        if (!name_is_jobs(e->name, o->suffixes, id))
                return 0; /* never this job's to remove */
        if (streq_ptr(id, o->keep_id) || strv_contains(o->manifest_ids, id))
                return 0;
        strv_push(&o->remove, xstrdup(e->name));
        return 0;
}

/* An interrupted write of this job's: the caller holds the job lock, so none is in flight, except the
 * current run's own. Another writer's may be (the WAL stream beside the dumps). */
static bool leftover_is_jobs(const char *name, void *userdata) {
        const Orphans *o = userdata;
        char id[BACKUP_ID_LEN + 1];

        return name_is_jobs(name, o->suffixes, id) && !streq_ptr(id, o->keep_id);
}

int backup_cleanup_orphans(Store *s, const char *keep_id, const char *job, const char *const *suffixes) {
        _cleanup_strv_free_ char **ids = NULL;
        _cleanup_(orphans_done) Orphans o = {};
        int r, n = 0;

        r = list_manifest_ids(s, &ids);
        if (r < 0)
                return r;
        o = (Orphans){ .manifest_ids = ids,
                       .keep_id = keep_id,
                       .suffixes = suffixes,
                       .remove = xcalloc(1, sizeof(char *)) };
        r = store_list(s, "", collect_orphans, &o);
        if (r < 0)
                return r;

        if (store_cleanup_matching(s, 0, leftover_is_jobs, &o) < 0)
                log_warning("%s, continuing.", err_message() ?: "cleanup of interrupted writes failed");

        STRV_FOREACH (name, o.remove) {
                r = store_remove(s, *name);
                if (r < 0)
                        return r;
                log_info("Removed %s/%s: left by an interrupted run of %s (no manifest).", s->location,
                         *name, job);
                n++;
        }
        return n;
}
