/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The chains of the volumes job's backups: records in the manifests, parents, retention. Pure: reads
 * manifests only, never the store. */
#include <json-c/json.h>
#include <sysexits.h>

#include "jobs/volumes-chain.h"
#include "log/log.h"

/* ---- manifest records ---- */

static const char *json_str(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static json_object *volumes_array(const Manifest *m) {
        json_object *v = NULL;

        if (!m->extra || !json_object_object_get_ex(m->extra, "volumes", &v) ||
            !json_object_is_type(v, json_type_array))
                return NULL;
        return v;
}

int volumes_record(const Manifest *m, const char *name, VolumeRecord *ret) {
        json_object *a = volumes_array(m);

        for (size_t i = 0; a && i < json_object_array_length(a); i++) {
                json_object *o = json_object_array_get_idx(a, i), *files = NULL;
                VolumeRecord r = {
                        .name = json_str(o, "name"),
                        .kind = json_str(o, "kind"),
                        .parent = json_str(o, "parent"),
                        .full = json_str(o, "full"),
                        .archive = json_str(o, "archive"),
                        .catalog = json_str(o, "catalog"),
                        .catalog_sha256 = json_str(o, "catalog_sha256"),
                        .pv = json_str(o, "pv"),
                };

                if (!streq_ptr(r.name, name))
                        continue;
                if (!r.kind || !r.archive || !r.catalog || !r.catalog_sha256 || !r.full ||
                    (streq(r.kind, "incremental") && !r.parent))
                        return err_set(
                                -EBADMSG, EX_DATAERR,
                                "the manifest of volumes backup %s has an incomplete record of volume %s",
                                m->id, name);
                if (json_object_object_get_ex(o, "files", &files))
                        r.files = (uint64_t) json_object_get_int64(files);
                *ret = r;
                return 0;
        }
        return -ENOENT;
}

char **volumes_names(const Manifest *m) {
        json_object *a = volumes_array(m);
        char **l = xcalloc(1, sizeof(char *));

        for (size_t i = 0; a && i < json_object_array_length(a); i++) {
                const char *n = json_str(json_object_array_get_idx(a, i), "name");
                if (n)
                        strv_push(&l, xstrdup(n));
        }
        return l;
}

static const Manifest *list_find(const BackupList *l, const char *id) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i]->id, id))
                        return l->items[i];
        return NULL;
}

int volumes_chain(const BackupList *l, const Manifest *target, const char *name, const Manifest ***ret,
                  size_t *ret_n) {
        _cleanup_free_ const Manifest **chain = NULL;
        const Manifest *m = target;
        size_t n = 0;
        int r;

        /* Newest first while following parents; each step goes back in time, so at most l->n steps. */
        for (;;) {
                VolumeRecord rec;

                if (n > l->n)
                        return err_set(-ELOOP, EX_DATAERR, "the chain of volume %s in backup %s loops", name,
                                       target->id);
                r = volumes_record(m, name, &rec);
                if (r == -ENOENT)
                        return err_set(r, EX_DATAERR, "volumes backup %s holds no volume %s", m->id, name);
                if (r < 0)
                        return r;
                chain = xrealloc(chain, (n + 1) * sizeof *chain);
                chain[n++] = m;
                if (streq(rec.kind, "full"))
                        break;
                m = list_find(l, rec.parent);
                if (!m || strcmp(rec.parent, chain[n - 1]->id) >= 0)
                        return err_set(
                                -ENOENT, EX_DATAERR,
                                "volume %s of backup %s is an incremental of backup %s, which is gone or "
                                "damaged; restore an older backup, or run a full backup",
                                name, target->id, rec.parent);
        }
        for (size_t i = 0; i < n / 2; i++) {
                const Manifest *t = chain[i];
                chain[i] = chain[n - 1 - i];
                chain[n - 1 - i] = t;
        }
        *ret = TAKE_PTR(chain);
        *ret_n = n;
        return 0;
}

int volumes_chain_objects(const BackupList *l, const Manifest *m, VolumesChainObjectFunc f, void *userdata) {
        _cleanup_strv_free_ char **names = volumes_names(m);
        _cleanup_strv_free_ char **seen = xcalloc(1, sizeof(char *));
        int r;

        STRV_FOREACH (name, names) {
                _cleanup_free_ const Manifest **chain = NULL;
                size_t k = 0;

                r = volumes_chain(l, m, *name, &chain, &k);
                if (r < 0) {
                        r = f(NULL, NULL, err_message() ?: strerror(-r), userdata);
                        if (r < 0)
                                return r;
                        continue;
                }
                for (size_t i = 0; i + 1 < k; i++) {
                        VolumeRecord rec;
                        char *only[3] = {};

                        if (volumes_record(chain[i], *name, &rec) < 0 || strv_contains(seen, rec.archive))
                                continue;
                        strv_push(&seen, xstrdup(rec.archive));
                        only[0] = (char *) rec.archive;
                        only[1] = (char *) rec.catalog;
                        r = f(chain[i], only, NULL, userdata);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

void volumes_retention_protect(Manifest *const *mine, RetentionItem *items, size_t n) {
        /* Newest first: a kept backup protects its parents, which are older, so one pass suffices. */
        for (size_t i = 0; i < n; i++) {
                json_object *a;

                if (items[i].remove || !(a = volumes_array(mine[i])))
                        continue;
                for (size_t v = 0; v < json_object_array_length(a); v++) {
                        const char *parent = json_str(json_object_array_get_idx(a, v), "parent");

                        for (size_t j = i + 1; parent && j < n; j++)
                                if (streq(mine[j]->id, parent) && items[j].remove) {
                                        items[j].remove = false;
                                        snprintf(items[j].reason, sizeof items[j].reason,
                                                 "kept: the kept incremental %s depends on it", mine[i]->id);
                                }
                }
        }
}
