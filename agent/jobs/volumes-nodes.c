/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The volumes job's node folders (volumes-nodes.h). */
#include <sysexits.h>

#include "conf/location.h"
#include "jobs/lease-guard.h"
#include "jobs/volumes-nodes.h"
#include "log/log.h"

int volumes_this_node(const Config *c, char **ret) {
        char buf[256];
        const char *node = lease_guard_node_name(c, buf, sizeof buf);

        if (!node_name_valid(node))
                return err_set(-EINVAL, EX_CONFIG,
                               "the node name \"%s\"%s cannot name this node's folder of volumes backups: it "
                               "must be " NODE_NAME_RULE "; set node_name = in [agent] to the node's "
                               "Kubernetes name",
                               node, isempty(c->agent.node_name) ? " (the host name)" : "");
        *ret = xstrdup(node);
        return 0;
}

/* DEST with "NODE/" appended, as a location of the same kind. */
static char *location_append(const char *dest, const char *node) {
        _cleanup_(location_done) Location l = {};

        if (location_parse(dest, &l) >= 0 && l.type == LOCATION_REMOTE)
                return xasprintf("%s%s%s/", dest, endswith(dest, "/") ? "" : "/", node);
        return path_join(dest, node);
}

int volumes_node_location(const Config *c, const char *node, char **ret) {
        _cleanup_free_ char *self = NULL, *dest = config_job_destination(c, "volumes");
        int r;

        if (!node) {
                r = volumes_this_node(c, &self);
                if (r < 0)
                        return r;
                node = self;
        } else if (!node_name_valid(node))
                return err_set(-EINVAL, EX_USAGE, "\"%s\" is not a node name", node);
        *ret = location_append(dest, node);
        return 0;
}

int volumes_job_location(const Config *c, const char *job, char **ret) {
        if (streq(job, "volumes"))
                return volumes_node_location(c, NULL, ret);
        *ret = config_job_destination(c, job);
        return 0;
}

/* ---- the folders ---- */

static void folder_done(VolumesFolder *v) {
        free(v->node);
        free(v->location);
        store_free(v->store);
        backup_list_done(&v->list);
}

void volumes_folders_done(VolumesFolders *f) {
        for (size_t i = 0; i < f->n; i++)
                folder_done(f->items + i);
        free(f->items);
        free(f->self);
        free(f->destination);
        *f = (VolumesFolders){};
}

char *volumes_folder_describe(const VolumesFolder *v) {
        return v->node ? xasprintf("node %s", v->node) : xstrdup("the shared folder (before node folders)");
}

typedef struct NodeNames {
        char **names;
        size_t n;
} NodeNames;

/* "NODE/<id>.json": NODE has a folder of backups. Other names (DEST/<id>/..., leftovers, strays) say
 * nothing; a folder with a name that is not a node name is not one (and never written by us). */
static int collect_node(const StoreEntry *e, void *userdata) {
        NodeNames *nn = userdata;
        const char *slash = strchr(e->name, '/');
        char id[BACKUP_ID_LEN + 1];
        _cleanup_free_ char *node = NULL;

        if (!slash || !manifest_name_valid(slash + 1, id))
                return 0;
        node = xstrndup(e->name, (size_t) (slash - e->name));
        if (!node_name_valid(node) || (nn->n > 0 && streq(nn->names[nn->n - 1], node)))
                return 0;
        if (nn->n >= 100000)
                return err_set(-E2BIG, EX_DATAERR, "more than 100000 node folders in the volumes destination");
        strv_push(&nn->names, TAKE_PTR(node));
        nn->n++;
        return 0;
}

static int folder_load(const Config *c, VolumesFolders *f, const char *node, Store *shared_store) {
        VolumesFolder v = { .node = node ? xstrdup(node) : NULL };
        int r;

        if (node) {
                r = volumes_node_location(c, node, &v.location);
                if (r >= 0)
                        r = store_open_location(c, v.location, &v.store);
        } else {
                v.location = xstrdup(f->destination);
                r = store_clone(shared_store, &v.store);
        }
        if (r >= 0)
                r = backup_list_load(v.store, "volumes", &v.list);
        if (r < 0) {
                folder_done(&v);
                return r;
        }
        for (size_t i = 0; i < v.list.n; i++) {
                free(v.list.items[i]->node);
                v.list.items[i]->node = node ? xstrdup(node) : NULL;
        }
        if (!node && v.list.n == 0) {
                folder_done(&v);
                return 0;
        }
        f->items = xrealloc(f->items, (f->n + 1) * sizeof *f->items);
        f->items[f->n++] = v;
        return 0;
}

int volumes_folders_open(const Config *c, const char *only, VolumesFolders *ret) {
        _cleanup_(volumes_folders_done) VolumesFolders f = {};
        _cleanup_(store_freep) Store *root = NULL;
        NodeNames nn = {};
        _cleanup_strv_free_ char **names = NULL;
        int r;

        f.destination = config_job_destination(c, "volumes");
        r = volumes_this_node(c, &f.self);
        if (r < 0)
                return r;
        if (only && !streq(only, VOLUMES_SHARED_FOLDER) && !node_name_valid(only))
                return err_set(-EINVAL, EX_USAGE,
                               "--node %s: not a node name (letters, digits, '-', '_', '.'; or \".\" for the "
                               "shared folder of backups made before node folders)",
                               only);
        r = store_open_location(c, f.destination, &root);
        if (r == -ENOENT && !root) {
                /* A local destination no run has written to: no backups; it stays uncreated. */
                _cleanup_(failure_done) Failure missing = failure_take(r);
                *ret = f;
                f = (VolumesFolders){};
                return 0;
        }
        nn.names = xcalloc(1, sizeof(char *));
        if (r >= 0)
                r = store_list(root, "", collect_node, &nn);
        names = nn.names;
        if (r < 0)
                return r;
        /* This node's folder first: what a bare "latest" and a colliding id resolve to. */
        if (strv_contains(names, f.self) && (!only || streq(only, f.self))) {
                r = folder_load(c, &f, f.self, root);
                if (r < 0)
                        return r;
        }
        STRV_FOREACH (n, names) {
                if (streq(*n, f.self) || (only && !streq(only, *n)))
                        continue;
                r = folder_load(c, &f, *n, root);
                if (r < 0)
                        return r;
        }
        if (!only || streq(only, VOLUMES_SHARED_FOLDER)) {
                r = folder_load(c, &f, NULL, root);
                if (r < 0)
                        return r;
        }
        f.picked = only;
        if (only && f.n == 0 && !streq(only, VOLUMES_SHARED_FOLDER)) {
                _cleanup_free_ char *all = strv_join(names, ", ");
                return err_set(-ENOENT, EX_NOINPUT, "node %s has no volumes backups in %s (nodes there: %s)",
                               only, f.destination, all ?: "none");
        }
        *ret = f;
        f = (VolumesFolders){};
        return 0;
}

static char *folders_nodes(const VolumesFolders *f) {
        _cleanup_free_ char *s = NULL;

        for (size_t i = 0; i < f->n; i++) {
                char *t = xasprintf("%s%s%s", strempty(s), s ? ", " : "",
                                    f->items[i].node ?: "\".\" (the shared folder)");
                free(s);
                s = t;
        }
        return TAKE_PTR(s) ?: xstrdup("none");
}

int volumes_folders_find(const VolumesFolders *f, const char *id_or_latest, const VolumesFolder **ret_folder,
                         const Manifest **ret) {
        const VolumesFolder *found = NULL;
        const Manifest *m = NULL;
        size_t n_found = 0;

        if (streq(id_or_latest, "latest")) {
                /* This node's newest; before its first run after the upgrade, the shared folder's. A single
                 * folder (--node) is its own. */
                for (size_t i = 0; i < f->n && !found; i++)
                        if (f->picked || streq_ptr(f->items[i].node, f->self))
                                found = f->items + i;
                for (size_t i = 0; i < f->n && !found; i++)
                        if (!f->items[i].node)
                                found = f->items + i;
                if (!found || found->list.n == 0) {
                        _cleanup_free_ char *nodes = folders_nodes(f);
                        return err_set(-ENOENT, EX_NOINPUT,
                                       "no volumes backup of this node (%s) in %s; pick another node's with "
                                       "--node NAME (folders with backups: %s; see `skyforge-agent list "
                                       "volumes`)",
                                       f->self, f->destination, nodes);
                }
                *ret_folder = found;
                *ret = found->list.items[0];
                return 0;
        }
        if (!backup_id_valid(id_or_latest))
                return err_set(-EINVAL, EX_USAGE, "\"%s\" is not a backup id (YYYYMMDDTHHMMSSZ) or \"latest\"",
                               id_or_latest);
        /* This node's folder comes first: an id it holds is its own, whoever else has the same. */
        for (size_t i = 0; i < f->n && !(found && streq_ptr(found->node, f->self)); i++)
                for (size_t j = 0; j < f->items[i].list.n; j++)
                        if (streq(f->items[i].list.items[j]->id, id_or_latest)) {
                                if (!found) {
                                        found = f->items + i;
                                        m = f->items[i].list.items[j];
                                }
                                n_found++;
                                break;
                        }
        if (!found)
                return err_set(-ENOENT, EX_NOINPUT, "no volumes backup %s in %s (see `skyforge-agent list volumes`)",
                               id_or_latest, f->destination);
        if (n_found > 1 && !streq_ptr(found->node, f->self)) {
                _cleanup_free_ char *nodes = folders_nodes(f);
                return err_set(-ENOTUNIQ, EX_USAGE,
                               "volumes backup %s exists in more than one folder of %s; pick one with --node "
                               "NAME (folders: %s)",
                               id_or_latest, f->destination, nodes);
        }
        *ret_folder = found;
        *ret = m;
        return 0;
}

static int manifest_cmp_newest_first(const void *a, const void *b) {
        const Manifest *x = *(Manifest *const *) a, *y = *(Manifest *const *) b;
        int c = strcmp(y->id, x->id);
        return c != 0 ? c : strcmp(strempty(x->node), strempty(y->node));
}

int volumes_folders_take_all(VolumesFolders *f, BackupList *ret) {
        BackupList all = { .items = xcalloc(1, sizeof(Manifest *)) };

        for (size_t i = 0; i < f->n; i++) {
                BackupList *l = &f->items[i].list;

                all.items = xrealloc(all.items, (all.n + l->n + 1) * sizeof *all.items);
                memcpy(all.items + all.n, l->items, l->n * sizeof *l->items);
                all.n += l->n;
                l->n = 0; /* moved */
        }
        if (all.n > 0)
                qsort(all.items, all.n, sizeof *all.items, manifest_cmp_newest_first);
        *ret = all;
        return 0;
}

int volumes_restore_from_folders(const Config *c, const char *node, const char *id_or_latest,
                                 const VolumesRestoreOptions *o, char **ret_id) {
        _cleanup_(volumes_folders_done) VolumesFolders f = {};
        const VolumesFolder *v = NULL;
        const Manifest *m = NULL;
        int r;

        r = volumes_folders_open(c, node, &f);
        if (r >= 0)
                r = volumes_folders_find(&f, id_or_latest, &v, &m);
        if (r < 0)
                return r;
        if (!streq_ptr(v->node, f.self)) {
                _cleanup_free_ char *what = volumes_folder_describe(v);
                log_info("Restoring volumes backup %s of %s (%s).", m->id, what, v->location);
        }
        *ret_id = xstrdup(m->id);
        /* Chains never cross folders: the backup's own folder holds its full and incrementals. */
        return volumes_restore(c, v->store, &v->list, m, o);
}
