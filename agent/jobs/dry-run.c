/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ftw.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "jobs/dry-run.h"
#include "jobs/postgres-db.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "log/log.h"
#include "pg/pg.h"
#include "store/retention.h"

void dry_run_result_done(DryRunResult *res) {
        free(res->destination);
        strv_free(res->objects);
        free(res->server_target);
        free(res->server_version);
        for (size_t i = 0; i < res->n_databases; i++)
                free(res->databases[i].name);
        free(res->databases);
        for (size_t i = 0; i < res->n_tools; i++) {
                free(res->tools[i].program);
                free(res->tools[i].path);
                free(res->tools[i].version);
                free(res->tools[i].use);
        }
        free(res->tools);
        for (size_t i = 0; i < res->n_directories; i++) {
                free(res->directories[i].path);
                free(res->directories[i].member);
        }
        free(res->directories);
        free(res->kube_server);
        for (size_t i = 0; i < res->n_namespaces; i++) {
                free(res->namespaces[i].name);
                strv_free(res->namespaces[i].secrets);
        }
        free(res->namespaces);
        strv_free(res->extra_secret_files);
        free(res->retention_note);
        prune_result_done(&res->retention);
        failure_done(&res->failure);
        *res = (DryRunResult){};
}

bool job_dry_run_supported(const char *job) {
        return streq(job, "postgres") || streq(job, "config");
}

static void dry_run_add_tool(DryRunResult *res, const PgClient *client, const char *program,
                             const char *use) {
        res->tools = xrealloc(res->tools, (res->n_tools + 1) * sizeof *res->tools);
        res->tools[res->n_tools++] = (DryRunTool){ .program = xstrdup(program),
                                                   .path = xstrdup(client->path),
                                                   .version = xstrdup(strempty(client->version_line)),
                                                   .use = xstrdup(use) };
}

/* What postgres_backup() and postgres_dump_databases() look up before they dump, in the same order. */
static int dry_run_postgres(const Config *c, DryRunResult *res) {
        const PostgresConfig *pc = &c->postgres;
        _cleanup_(pg_server_info_done) PgServerInfo info = {};
        _cleanup_(pg_client_done) PgClient dumpall = {}, dump = {};
        const char *age;
        int r;

        res->encrypted = !strv_isempty(pc->recipients);
        res->n_recipients = strv_length(pc->recipients);
        age = res->encrypted ? ".age" : "";
        res->objects = xcalloc(1, sizeof(char *));
        strv_push(&res->objects, xasprintf("ID.sql.zst%s", age));

        r = config_check_passfile(pc->conninfo);
        if (r < 0)
                return r;
        r = pg_preflight(pc->conninfo, &info);
        if (r < 0)
                return r;
        res->server_target = xstrdup(info.target);
        res->server_version = xstrdup(info.version);
        res->server_version_num = info.version_num;
        res->size_estimate = info.size_estimate;
        res->n_databases = strv_length(info.databases);
        res->databases = xcalloc(res->n_databases + 1, sizeof *res->databases);
        for (size_t i = 0; i < res->n_databases; i++)
                res->databases[i] =
                        (DryRunDatabase){ .name = xstrdup(info.databases[i]),
                                          .bytes = info.database_sizes ? info.database_sizes[i] : 0 };

        r = pg_find_client("pg_dumpall", pc->pg_bindir, info.version_num / 10000, &dumpall);
        if (r < 0)
                return r;
        dry_run_add_tool(res, &dumpall, "pg_dumpall", "dumps the whole cluster");
        if (!pc->per_database)
                return 0;
        r = pg_find_client("pg_dump", pc->pg_bindir, info.version_num / 10000, &dump);
        if (r < 0)
                return r;
        dry_run_add_tool(res, &dump, "pg_dump",
                         "dumps each database (per_database = yes), except template1");
        strv_push(&res->objects, xasprintf("ID/globals.sql.zst%s", age));
        STRV_FOREACH (d, info.databases)
                if (!streq(*d, "template1")) {
                        _cleanup_free_ char *enc = postgres_db_object_encode(*d);
                        strv_push(&res->objects, xasprintf("ID/db/%s.dump%s", enc, age));
                }
        return 0;
}

static uint64_t tree_files, tree_bytes;

static int tree_count(const char *path, const struct stat *st, int flag, struct FTW *f) {
        if (flag == FTW_F && S_ISREG(st->st_mode)) {
                tree_files++;
                tree_bytes += (uint64_t) st->st_size;
        }
        return 0;
}

/* The checks of config.c's manifest_prefixes(), with the count of what each directory holds. */
static int dry_run_manifests(const ConfigJobConfig *cc, DryRunResult *res) {
        res->directories = xcalloc(strv_length(cc->manifests) + 1, sizeof *res->directories);
        STRV_FOREACH (d, cc->manifests) {
                const char *base = strrchr(*d, '/');
                DryRunDirectory *dir = res->directories + res->n_directories;
                struct stat st;

                if (stat(*d, &st) < 0)
                        return err_set(-errno, EX_NOINPUT,
                                       "cannot read manifest directory %s: %m (create it or change "
                                       "manifests = in [config]); the run would store nothing",
                                       *d);
                if (!S_ISDIR(st.st_mode))
                        return err_set(-ENOTDIR, EX_CONFIG, "manifests = %s in [config] is not a directory",
                                       *d);
                tree_files = tree_bytes = 0;
                (void) nftw(*d, tree_count, 16, FTW_PHYS);
                *dir = (DryRunDirectory){ .path = xstrdup(*d),
                                          .member = xasprintf("manifests/%s",
                                                              base && base[1] ? base + 1 : "root"),
                                          .files = tree_files,
                                          .bytes = tree_bytes };
                res->n_directories++;
                for (size_t i = 0; i + 1 < res->n_directories; i++)
                        if (streq(res->directories[i].member, dir->member))
                                return err_set(-EEXIST, EX_CONFIG,
                                               "two manifest directories in [config] share the name %s; "
                                               "rename one",
                                               dir->member);
        }
        return 0;
}

static DryRunNamespace *dry_run_namespace(DryRunResult *res, const char *name) {
        for (size_t i = 0; i < res->n_namespaces; i++)
                if (streq(res->namespaces[i].name, name))
                        return res->namespaces + i;
        res->namespaces = xrealloc(res->namespaces, (res->n_namespaces + 1) * sizeof *res->namespaces);
        res->namespaces[res->n_namespaces] =
                (DryRunNamespace){ .name = xstrdup(name), .secrets = xcalloc(1, sizeof(char *)) };
        return res->namespaces + res->n_namespaces++;
}

/* The Secrets the export would hold, by namespace: the same list request, names kept, values dropped. */
static int dry_run_secrets(const ConfigJobConfig *cc, DryRunResult *res) {
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        json_object *list = NULL, *items;
        int r;

        r = kube_client_open(cc->kubeconfig, &client);
        if (r < 0)
                return r;
        kube_client_set_cancel(client, &job_cancel_requested);
        res->kube_server = xstrdup(kube_client_server(client));
        /* A namespace with no Secrets is still listed: the operator named it. */
        STRV_FOREACH (n, cc->namespaces)
                (void) dry_run_namespace(res, *n);
        r = kube_list_secrets(client, cc->namespaces, &list);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(list, "items", &items))
                for (size_t i = 0; i < json_object_array_length(items); i++) {
                        json_object *meta = NULL, *ns = NULL, *name = NULL;
                        json_object *item = json_object_array_get_idx(items, i);

                        if (!json_object_object_get_ex(item, "metadata", &meta) ||
                            !json_object_object_get_ex(meta, "namespace", &ns) ||
                            !json_object_object_get_ex(meta, "name", &name))
                                continue;
                        strv_push(&dry_run_namespace(res, json_object_get_string(ns))->secrets,
                                  xstrdup(json_object_get_string(name)));
                        res->n_secrets++;
                }
        json_object_put(list);
        return 0;
}

static int dry_run_config(const Config *c, DryRunResult *res) {
        const ConfigJobConfig *cc = &c->config;
        int r;

        res->encrypted = true; /* the Secrets always; the archive itself is tar.zst */
        res->n_recipients = strv_length(cc->recipients);
        res->objects = xcalloc(1, sizeof(char *));
        strv_push(&res->objects, xstrdup("ID.tar.zst"));
        res->extra_secret_files = strv_copy(cc->extra_secret_files);
        if (strv_isempty(cc->recipients))
                return err_set(-ENOKEY, EX_CONFIG,
                               "[config] has no recipients; the Secrets export is always encrypted: add "
                               "recipients = age1... (skyforge-agent keygen makes a key pair)");
        r = dry_run_manifests(cc, res);
        if (r < 0)
                return r;
        STRV_FOREACH (f, cc->extra_secret_files)
                if (access(*f, R_OK) < 0)
                        return err_set(-errno, errno == EACCES ? EX_NOPERM : EX_NOINPUT,
                                       "cannot read %s (extra_secret_files in [config]): %m", *f);
        return dry_run_secrets(cc, res);
}

/* Retention after the run: the store's backups of the job as prune sees them, plus the new one (newest,
 * intact), through the same retention_select(). */
static int dry_run_retention(const Config *c, const char *job, Store *s, DryRunResult *res) {
        _cleanup_(backup_list_done) BackupList all = {};
        _cleanup_free_ RetentionItem *items = NULL;
        _cleanup_free_ Manifest **mine = NULL;
        _cleanup_free_ char **damage = NULL; /* NULL where intact: freed one by one below */
        PruneResult *pr = &res->retention;
        size_t n_mine = 0;
        unsigned intact = 1; /* the new backup */
        int r;

        r = backup_list_load(s, NULL, &all);
        if (r < 0)
                return r;
        mine = xcalloc(all.n + 1, sizeof *mine);
        items = xcalloc(all.n + 2, sizeof *items);
        damage = xcalloc(all.n + 1, sizeof(char *));
        for (size_t i = 0; i < all.n; i++)
                if (streq(all.items[i]->job, job))
                        mine[n_mine++] = all.items[i];
        items[0] = (RetentionItem){ .id = "(new)", .time_usec = now_usec(CLOCK_REALTIME) };
        for (size_t i = 0; i < n_mine; i++) {
                if (intact < res->keep_min) {
                        damage[i] = backup_size_damage(s, mine[i]);
                        if (!damage[i])
                                intact++;
                }
                items[i + 1] = (RetentionItem){ .id = mine[i]->id,
                                                .time_usec = mine[i]->started_usec,
                                                .damage = damage[i] };
        }
        (void) retention_select(items, n_mine + 1, now_usec(CLOCK_REALTIME), res->retention_days,
                                res->keep_min);

        pr->decisions = xcalloc(n_mine + 1, sizeof *pr->decisions);
        for (size_t i = 1; i <= n_mine; i++) {
                pr->decisions[pr->n_decisions++] = (PruneDecision){
                        .id = xstrdup(items[i].id),
                        .action = items[i].remove ? PRUNE_WOULD_DELETE : PRUNE_KEEP,
                        .reason = xstrdup(items[i].reason),
                        .bytes = mine[i - 1]->bytes,
                };
                if (items[i].remove)
                        pr->deleted++;
        }
        for (size_t i = 0; i < n_mine; i++)
                free(damage[i]);
        pr->damaged = xcalloc(all.n_damaged + 1, sizeof *pr->damaged);
        for (size_t i = 0; i < all.n_damaged; i++)
                pr->damaged[pr->n_damaged++] = (PruneDamaged){ .id = xstrdup(all.damaged[i].id),
                                                               .message = xstrdup(all.damaged[i].message) };
        return 0;
}

int job_dry_run_result(const Config *c, const char *job, DryRunResult *res) {
        _cleanup_(store_freep) Store *s = NULL;
        int r;

        *res = (DryRunResult){ .job = job, .retention = { .job = job, .dry_run = true } };
        if (!job_dry_run_supported(job)) {
                r = err_set(-EOPNOTSUPP, EX_USAGE, "job %s has no dry run here", job);
                failure_capture(&res->failure, r);
                return r;
        }
        res->destination = config_job_destination(c, job);
        job_retention_settings(c, job, &res->retention_days, &res->keep_min);
        r = streq(job, "postgres") ? dry_run_postgres(c, res) : dry_run_config(c, res);
        if (r < 0) {
                failure_capture(&res->failure, r);
                return r;
        }
        /* Opened for reading: a destination that does not exist yet stays so. */
        r = store_open_location(c, res->destination, &s);
        if (r >= 0)
                r = dry_run_retention(c, job, s, res);
        if (r == -ENOENT) {
                /* The run creates the directory (or, with create_bucket = yes, the bucket). */
                _cleanup_(failure_done) Failure f = failure_take(r);
                res->retention_note = xasprintf("%s; nothing to delete", failure_message(&f));
                return 0;
        }
        if (r < 0)
                failure_capture(&res->failure, r);
        return r;
}

void dry_run_result_print(const DryRunResult *res, FILE *out) {
        char size[FORMAT_BYTES_MAX];

        fprintf(out, "%s: dry run, nothing was changed; the run would:\n", res->job);
        if (res->server_target)
                fprintf(out, "  connect to  PostgreSQL %s at %s\n", res->server_version, res->server_target);
        if (res->databases) {
                fprintf(out, "  databases   %zu, %s in all\n", res->n_databases,
                        format_bytes(res->size_estimate, size, sizeof size));
                for (size_t i = 0; i < res->n_databases; i++)
                        fprintf(out, "    %-30s %10s\n", res->databases[i].name,
                                format_bytes(res->databases[i].bytes, size, sizeof size));
        }
        for (size_t i = 0; i < res->n_tools; i++)
                fprintf(out, "  dump with   %s (%s): %s\n", res->tools[i].path, res->tools[i].version,
                        res->tools[i].use);
        for (size_t i = 0; i < res->n_directories; i++)
                fprintf(out, "  archive     %s as %s/: %" PRIu64 " file(s), %s\n", res->directories[i].path,
                        res->directories[i].member, res->directories[i].files,
                        format_bytes(res->directories[i].bytes, size, sizeof size));
        if (res->kube_server) {
                fprintf(out, "  export      %zu Secret(s) from %s (names only here):\n", res->n_secrets,
                        res->kube_server);
                for (size_t i = 0; i < res->n_namespaces; i++) {
                        fprintf(out, "    %s: %zu", res->namespaces[i].name,
                                strv_length(res->namespaces[i].secrets));
                        STRV_FOREACH (n, res->namespaces[i].secrets)
                                fprintf(out, "%s%s", n == res->namespaces[i].secrets ? " (" : ", ", *n);
                        fputs(strv_isempty(res->namespaces[i].secrets) ? "\n" : ")\n", out);
                }
        }
        STRV_FOREACH (f, res->extra_secret_files)
                fprintf(out, "  encrypt     %s into the archive\n", *f);
        if (res->destination) {
                fprintf(out, "  write to    %s:", res->destination);
                STRV_FOREACH (o, res->objects)
                        fprintf(out, " %s", *o);
                fputc('\n', out);
        }
        if (res->encrypted)
                fprintf(out, "  encryption  age, to %zu recipient(s)%s\n", res->n_recipients,
                        streq(res->job, "config") ? " (the Secrets; the rest is plain tar.zst)" : "");
        else if (res->destination)
                fputs("  encryption  none (no recipients in [postgres])\n", out);
        if (res->failure.error < 0)
                return;
        fprintf(out, "  retention   %u day(s), keep_min %u: with the new backup, %u would be deleted%s%s\n",
                res->retention_days, res->keep_min, res->retention.deleted, res->retention_note ? "; " : "",
                strempty(res->retention_note));
        prune_result_print(&res->retention, out);
}

static json_object *string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

json_object *dry_run_result_to_json(const DryRunResult *res) {
        json_object *o = json_object_new_object(), *a, *e;

        json_object_object_add(o, "job", json_object_new_string(res->job));
        json_object_object_add(o, "result",
                               json_object_new_string(res->failure.error < 0 ? "failed" : "ok"));
        json_object_object_add(o, "dry_run", json_object_new_boolean(true));
        if (res->failure.error < 0) {
                json_object_object_add(o, "error", json_object_new_string(failure_message(&res->failure)));
                json_object_object_add(o, "exit_code", json_object_new_int(res->failure.exit_code));
        }
        json_object_object_add(o, "destination", string_or_null(res->destination));
        a = json_object_new_array();
        STRV_FOREACH (n, res->objects)
                json_object_array_add(a, json_object_new_string(*n));
        json_object_object_add(o, "objects", a);
        e = json_object_new_object();
        json_object_object_add(e, "encrypted", json_object_new_boolean(res->encrypted));
        json_object_object_add(e, "recipients", json_object_new_uint64(res->n_recipients));
        json_object_object_add(o, "encryption", e);
        if (streq(res->job, "postgres")) {
                json_object *s = json_object_new_object();
                json_object_object_add(s, "target", string_or_null(res->server_target));
                json_object_object_add(s, "version", string_or_null(res->server_version));
                json_object_object_add(s, "version_num", json_object_new_int(res->server_version_num));
                json_object_object_add(o, "server", s);
                a = json_object_new_array();
                for (size_t i = 0; i < res->n_databases; i++) {
                        json_object *d = json_object_new_object();
                        json_object_object_add(d, "name", json_object_new_string(res->databases[i].name));
                        json_object_object_add(d, "bytes", json_object_new_uint64(res->databases[i].bytes));
                        json_object_array_add(a, d);
                }
                json_object_object_add(o, "databases", a);
                json_object_object_add(o, "size_estimate", json_object_new_uint64(res->size_estimate));
                a = json_object_new_array();
                for (size_t i = 0; i < res->n_tools; i++) {
                        json_object *t = json_object_new_object();
                        json_object_object_add(t, "program", json_object_new_string(res->tools[i].program));
                        json_object_object_add(t, "path", json_object_new_string(res->tools[i].path));
                        json_object_object_add(t, "version", json_object_new_string(res->tools[i].version));
                        json_object_array_add(a, t);
                }
                json_object_object_add(o, "tools", a);
        } else {
                json_object *sec = json_object_new_object(), *nss = json_object_new_array();
                a = json_object_new_array();
                for (size_t i = 0; i < res->n_directories; i++) {
                        json_object *d = json_object_new_object();
                        json_object_object_add(d, "directory",
                                               json_object_new_string(res->directories[i].path));
                        json_object_object_add(d, "member",
                                               json_object_new_string(res->directories[i].member));
                        json_object_object_add(d, "files",
                                               json_object_new_uint64(res->directories[i].files));
                        json_object_object_add(d, "bytes",
                                               json_object_new_uint64(res->directories[i].bytes));
                        json_object_array_add(a, d);
                }
                json_object_object_add(o, "manifests", a);
                json_object_object_add(sec, "server", string_or_null(res->kube_server));
                json_object_object_add(sec, "count", json_object_new_uint64(res->n_secrets));
                for (size_t i = 0; i < res->n_namespaces; i++) {
                        json_object *ns = json_object_new_object(), *names = json_object_new_array();
                        json_object_object_add(ns, "namespace",
                                               json_object_new_string(res->namespaces[i].name));
                        json_object_object_add(
                                ns, "count",
                                json_object_new_uint64(strv_length(res->namespaces[i].secrets)));
                        STRV_FOREACH (n, res->namespaces[i].secrets)
                                json_object_array_add(names, json_object_new_string(*n));
                        json_object_object_add(ns, "names", names);
                        json_object_array_add(nss, ns);
                }
                json_object_object_add(sec, "namespaces", nss);
                json_object_object_add(o, "secrets", sec);
                a = json_object_new_array();
                STRV_FOREACH (f, res->extra_secret_files)
                        json_object_array_add(a, json_object_new_string(*f));
                json_object_object_add(o, "extra_secret_files", a);
        }
        if (res->failure.error >= 0) {
                json_object *ret = prune_result_to_json(&res->retention);
                json_object_object_add(ret, "retention_days", json_object_new_uint64(res->retention_days));
                json_object_object_add(ret, "keep_min", json_object_new_uint64(res->keep_min));
                json_object_object_add(ret, "note", string_or_null(res->retention_note));
                json_object_object_add(o, "retention", ret);
        }
        return o;
}
