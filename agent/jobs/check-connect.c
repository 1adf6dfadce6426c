/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <sys/random.h>
#include <sysexits.h>

#include "jobs/check-connect.h"
#include "jobs/context.h"
#include "jobs/volumes-claims.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "log/log.h"
#include "pg/pg.h"
#include "pipe/pipe.h"
#include "store/s3/s3.h"
#include "store/store.h"

#define PROBE_TEXT "skyforge-agent connectivity probe\n"

void connect_report_done(ConnectReport *r) {
        for (size_t i = 0; i < r->n; i++) {
                free(r->items[i].what);
                free(r->items[i].detail);
        }
        free(r->items);
        *r = (ConnectReport){};
}

static void add(ConnectReport *r, ConnectStatus status, int exit_code, const char *what, char *detail) {
        r->items = xrealloc(r->items, (r->n + 1) * sizeof *r->items);
        r->items[r->n++] =
                (ConnectCheck){ .status = status,
                                .what = xstrdup(what),
                                .detail = detail,
                                .exit_code = status == CONNECT_FAIL ? (exit_code ?: EX_SOFTWARE) : 0 };
}

/* The failure recorded with err_set() for r, as a check result. */
static void add_fail(ConnectReport *rep, const char *what, int r) {
        Failure f = failure_take(r);

        add(rep, CONNECT_FAIL, f.exit_code, what, TAKE_PTR(f.message));
}

/* ---- PostgreSQL ---- */

static void check_postgres(const Config *c, ConnectReport *rep) {
        const PostgresConfig *pc = &c->postgres;
        _cleanup_(pg_server_info_done) PgServerInfo info = {};
        _cleanup_(pg_client_done) PgClient dumpall = {}, dump = {};
        int r;

        r = config_check_passfile(pc->conninfo);
        if (r >= 0)
                r = pg_preflight(pc->conninfo, &info);
        if (r < 0)
                return add_fail(rep, "postgres", r);
        r = pg_find_client("pg_dumpall", pc->pg_bindir, info.version_num / 10000, &dumpall);
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(strna(err_message()));
                int code = err_exit_code(r);
                err_clear();
                return add(rep, CONNECT_FAIL, code, "postgres",
                           xasprintf("%s, PostgreSQL %s: %s", info.target, info.version, why));
        }
        if (pc->per_database) {
                r = pg_find_client("pg_dump", pc->pg_bindir, info.version_num / 10000, &dump);
                if (r < 0) {
                        _cleanup_free_ char *why = xstrdup(strna(err_message()));
                        int code = err_exit_code(r);
                        err_clear();
                        return add(rep, CONNECT_FAIL, code, "postgres",
                                   xasprintf("%s, PostgreSQL %s: %s (per_database = yes)", info.target,
                                             info.version, why));
                }
        }
        add(rep, CONNECT_OK, 0, "postgres",
            xasprintf("%s, PostgreSQL %s, %zu database(s), pg_dumpall %d found (%s)%s", info.target,
                      info.version, strv_length(info.databases), dumpall.major, dumpall.path,
                      pc->per_database ? ", pg_dump too" : ""));
}

/* ---- locations ---- */

static int stop_at_first(const StoreEntry *e, void *userdata) {
        return 1;
}

static int stop_at_first_object(const S3Object *o, void *userdata) {
        return 1;
}

static char *join(char *const *l) {
        return strv_join(l, ", ") ?: xstrdup("");
}

static char *probe_name(void) {
        uint8_t b[8];
        char hex[2 * sizeof b + 1];

        if (getrandom(b, sizeof b, 0) != (ssize_t) sizeof b)
                for (size_t i = 0; i < sizeof b; i++)
                        b[i] = (uint8_t) (now_usec(CLOCK_MONOTONIC) >> (8 * i));
        for (size_t i = 0; i < sizeof b; i++)
                snprintf(hex + 2 * i, 3, "%02x", b[i]);
        return xasprintf("skyforge-probe-%s", hex); /* not hidden: the local store refuses dot names */
}

/* Lists the location (which also says its bucket exists) and, when the job writes there, puts and deletes
 * a probe object: the same calls a backup makes, with the same key. */
static void check_location(const Config *c, const char *location, const char *role, bool write,
                           ConnectReport *rep) {
        _cleanup_(location_done) Location l = {};
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_free_ char *what = NULL, *probe = NULL;
        int r;

        if (location_parse(location, &l) < 0)
                return; /* the static check reported it */
        what = l.type == LOCATION_REMOTE ? xasprintf("remote %s", l.remote) : xstrdup("store");
        r = store_open_location(c, location, &s);
        if (r == -ENOENT && !s && l.type == LOCATION_LOCAL && write) {
                /* The first backup run creates it; a check creates nothing. */
                err_clear();
                return add(rep, CONNECT_OK, 0, what,
                           xasprintf("%s (%s): directory does not exist yet; the first run creates it",
                                     location, role));
        }
        if (r >= 0)
                r = store_list(s, "", stop_at_first, NULL);
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(strna(err_message()));
                int code = err_exit_code(r);
                err_clear();
                return add(rep, CONNECT_FAIL, code, what, xasprintf("%s (%s): %s", location, role, why));
        }
        if (!write)
                return add(rep, CONNECT_OK, 0, what,
                           xasprintf("%s (%s): %s, listing works", location, role,
                                     l.type == LOCATION_REMOTE ? "bucket exists" : "directory exists"));
        probe = probe_name();
        r = store_put_buffer(s, probe, PROBE_TEXT, strlen(PROBE_TEXT));
        if (r >= 0) {
                r = store_remove(s, probe);
                if (r < 0) {
                        _cleanup_free_ char *why = xstrdup(strna(err_message()));
                        int code = err_exit_code(r);
                        err_clear();
                        return add(
                                rep, CONNECT_FAIL, code, what,
                                xasprintf("%s (%s): the probe object %s was written but cannot be deleted "
                                          "(retention could not prune; remove it by hand): %s",
                                          location, role, probe, why));
                }
        }
        if (r < 0) {
                _cleanup_free_ char *why = xstrdup(strna(err_message()));
                int code = err_exit_code(r);
                err_clear();
                return add(rep, CONNECT_FAIL, code, what, xasprintf("%s (%s): %s", location, role, why));
        }
        add(rep, CONNECT_OK, 0, what,
            xasprintf("%s (%s): %s, listing, writing and deleting a probe object work", location, role,
                      l.type == LOCATION_REMOTE ? "bucket exists" : "directory exists"));
}

/* A local mirror source: a directory whose subdirectories are the buckets; each named one must list. */
static void check_mirror_source_local(const Config *c, ConnectReport *rep) {
        _cleanup_(store_root_freep) StoreRoot *root = NULL;
        _cleanup_strv_free_ char **buckets = NULL;
        _cleanup_free_ char *what = xasprintf("directory %s", c->mirror.source), *list = NULL;
        int r;

        r = store_root_local_open(c->mirror.source, &root);
        if (r >= 0 && !c->mirror.buckets)
                r = store_root_list_buckets(root, &buckets);
        else
                buckets = strv_copy(c->mirror.buckets);
        STRV_FOREACH (b, buckets) {
                _cleanup_(store_freep) Store *s = NULL;
                _cleanup_(store_lister_freep) StoreLister *l = NULL;
                const StoreEntry *e;

                if (r < 0)
                        break;
                r = store_root_open_bucket(root, *b, false, &s);
                if (r >= 0)
                        r = store_lister_open(s, "", &l);
                if (r >= 0)
                        r = store_lister_next(l, &e);
        }
        if (r < 0)
                return add_fail(rep, what, r);
        list = join(buckets);
        add(rep, CONNECT_OK, 0, what,
            xasprintf("mirror source: %zu bucket(s) list%s%s", strv_length(buckets), *list ? ": " : "",
                      list));
}

/* The mirror reads its source buckets: each must exist and list (or, for "*", ListBuckets must work). */
static void check_mirror_source(const Config *c, ConnectReport *rep) {
        const RemoteConfig *remote = config_find_remote(c, c->mirror.source);
        _cleanup_(s3_client_freep) S3Client *s3 = NULL;
        _cleanup_free_ char *what = xasprintf("remote %s", strna(c->mirror.source)), *list = NULL;
        _cleanup_strv_free_ char **buckets = NULL;
        int r;

        if (!remote)
                return; /* the static check reported it */
        r = s3_client_new(remote, &s3);
        if (r < 0)
                return add_fail(rep, what, r);
        if (!c->mirror.buckets) {
                r = s3_list_buckets(s3, &buckets);
                if (r < 0) {
                        _cleanup_free_ char *why = xstrdup(strna(err_message()));
                        int code = err_exit_code(r);
                        err_clear();
                        return add(rep, CONNECT_FAIL, code, what,
                                   xasprintf("mirror source, buckets = *: %s", why));
                }
        } else
                buckets = strv_copy(c->mirror.buckets);
        STRV_FOREACH (b, buckets) {
                r = s3_list_objects(s3, *b, "", NULL, stop_at_first_object, NULL);
                if (r < 0) {
                        _cleanup_free_ char *why = xstrdup(strna(err_message()));
                        int code = err_exit_code(r);
                        err_clear();
                        return add(rep, CONNECT_FAIL, code, what,
                                   xasprintf("mirror source bucket %s: %s", *b, why));
                }
        }
        list = join(buckets);
        add(rep, CONNECT_OK, 0, what,
            xasprintf("mirror source: %zu bucket(s) list%s%s", strv_length(buckets), *list ? ": " : "",
                      list));
}

/* ---- Kubernetes ---- */

static void check_kubernetes(const Config *c, ConnectReport *rep) {
        _cleanup_(kubeconfig_freep) KubeConfig *kc = NULL;
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        _cleanup_free_ char *ns = NULL;
        int r;

        r = kubeconfig_load(c->config.kubeconfig, &kc);
        if (r >= 0)
                r = kube_client_new(kc, &client);
        if (r < 0)
                return add_fail(rep, "kubernetes", r);
        r = kube_check_list_secrets(client, c->config.namespaces);
        if (r < 0)
                return add_fail(rep, "kubernetes", r);
        ns = c->config.namespaces ? join(c->config.namespaces) : xstrdup("all namespaces");
        add(rep, CONNECT_OK, 0, "kubernetes",
            xasprintf("%s (cluster %s, user %s in %s): may list Secrets in %s%s", kc->server, kc->cluster,
                      kc->user, kc->path, ns,
                      kc->insecure_skip_tls_verify ? "; TLS verification is OFF (insecure-skip-tls-verify)"
                                                   : ""));
}

/* The claims of [volumes] are resolved through the API: one page of PVCs and of PVs proves the listing the
 * job does. Without a cluster and with claims = left at its default, the job backs up paths = only. */
static void check_volumes_kubernetes(const Config *c, ConnectReport *rep) {
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        int r;

        r = volumes_kube_open(c, &client);
        if (r >= 0)
                r = kube_check_list(client, "/api/v1/persistentvolumeclaims?limit=1",
                                    "list PersistentVolumeClaims in all namespaces");
        if (r >= 0)
                r = kube_check_list(client, "/api/v1/persistentvolumes?limit=1", "list PersistentVolumes");
        if (r >= 0)
                return add(rep, CONNECT_OK, 0, "kubernetes [volumes]",
                           xasprintf("%s (kubeconfig %s): may list PersistentVolumeClaims and "
                                     "PersistentVolumes",
                                     kube_client_server(client), kube_client_kubeconfig_path(client)));
        if (volumes_kube_unreachable(r) && !c->volumes.claims_set) {
                _cleanup_free_ char *why = xstrdup(err_message() ?: strerror(-r));
                err_clear();
                return add(rep, CONNECT_SKIP, 0, "kubernetes [volumes]",
                           xasprintf("%s; claims = is not set, so the job backs up paths = only", why));
        }
        add_fail(rep, "kubernetes [volumes]", r);
}

/* ---- age ---- */

static void check_age(char *const *recipients, const char *identity_file, const char *section,
                      ConnectReport *rep) {
        _cleanup_free_ char *what = xasprintf("age [%s]", section);
        _cleanup_(sink_freep) Sink *enc = NULL;
        _cleanup_(source_freep) Source *dec = NULL;
        _cleanup_free_ uint8_t *sealed = NULL;
        size_t sealed_size = 0, got = 0;
        char buf[sizeof PROBE_TEXT + 16];
        Sink *mem;
        Source *src;
        ssize_t k;
        int r = 0;

        if (strv_isempty(recipients))
                return;
        if (isempty(identity_file))
                return add(rep, CONNECT_SKIP, 0, what,
                           xasprintf("no identity_file: verify --restore-test and restore need the identity "
                                     "of one of the %zu recipient(s)",
                                     strv_length(recipients)));
        mem = sink_memory_new();
        enc = sink_age_new(mem, recipients, &r);
        if (!enc) {
                sink_free(mem);
                return add_fail(rep, what, r);
        }
        r = sink_write(enc, PROBE_TEXT, strlen(PROBE_TEXT));
        if (r >= 0)
                r = sink_finish(enc);
        if (r < 0)
                return add_fail(rep, what, r);
        sink_memory_take(mem, &sealed, &sealed_size);

        src = source_memory_new(sealed, sealed_size);
        dec = source_age_new(src, identity_file, &r);
        if (!dec) {
                source_free(src);
                if (r == -ENOKEY) {
                        err_clear();
                        return add(
                                rep, CONNECT_FAIL, EX_CONFIG, what,
                                xasprintf("identity_file %s holds no identity for any of the %zu "
                                          "recipient(s): backups encrypted now could not be restored with "
                                          "it; set identity_file to the key of one of them (age-keygen -y "
                                          "FILE prints its recipient)",
                                          identity_file, strv_length(recipients)));
                }
                return add_fail(rep, what, r);
        }
        while ((k = source_read(dec, buf + got, sizeof buf - got)) > 0)
                got += (size_t) k;
        if (k < 0)
                return add_fail(rep, what, (int) k);
        if (got != strlen(PROBE_TEXT) || memcmp(buf, PROBE_TEXT, got) != 0)
                return add(rep, CONNECT_FAIL, EX_SOFTWARE, what,
                           xstrdup("the probe decrypted to something else (a bug: please report it)"));
        add(rep, CONNECT_OK, 0, what,
            xasprintf("identity_file %s decrypts what is encrypted to the %zu recipient(s)", identity_file,
                      strv_length(recipients)));
}

void config_connect_check(const Config *c, ConnectReport *ret) {
        ConnectReport rep = {};
        _cleanup_free_ char *pg_dest = config_job_destination(c, "postgres");

        check_postgres(c, &rep);
        check_location(c, pg_dest, "postgres destination", true, &rep);
        check_age(c->postgres.recipients, c->postgres.identity_file, "postgres", &rep);

        if (c->mirror.present) {
                if (c->mirror.source && c->mirror.source[0] == '/')
                        check_mirror_source_local(c, &rep);
                else
                        check_mirror_source(c, &rep);
                check_location(c, c->mirror.destination, "mirror destination", true, &rep);
        } else
                add(&rep, CONNECT_SKIP, 0, "mirror", xstrdup("[mirror] is not configured"));

        if (c->config.present) {
                _cleanup_free_ char *dest = config_job_destination(c, "config");
                check_kubernetes(c, &rep);
                if (!streq(dest, pg_dest))
                        check_location(c, dest, "config destination", true, &rep);
                check_age(c->config.recipients, c->config.identity_file, "config", &rep);
        } else
                add(&rep, CONNECT_SKIP, 0, "kubernetes", xstrdup("[config] is not configured"));

        if (c->volumes.present) {
                _cleanup_free_ char *dest = config_job_destination(c, "volumes");
                check_volumes_kubernetes(c, &rep);
                check_location(c, dest, "volumes destination", true, &rep);
                check_age(c->volumes.recipients, c->volumes.identity_file, "volumes", &rep);
        }
        *ret = rep;
}

void connect_report_print(const ConnectReport *r, FILE *f) {
        static const char *const label[] = {
                [CONNECT_OK] = "ok", [CONNECT_FAIL] = "FAIL", [CONNECT_SKIP] = "skip"
        };

        for (size_t i = 0; i < r->n; i++)
                fprintf(f, "%-4s %s: %s\n", label[r->items[i].status], r->items[i].what, r->items[i].detail);
}

int connect_exit_code_merge(int a, int b) {
        static const int order[] = {
                EX_CONFIG, EX_NOPERM, EX_DATAERR, EX_PROTOCOL, EX_IOERR, EX_UNAVAILABLE
        };
        size_t ia = ELEMENTSOF(order), ib = ELEMENTSOF(order);

        if (a == 0 || b == 0)
                return a ?: b;
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                if (order[i] == a)
                        ia = i;
                if (order[i] == b)
                        ib = i;
        }
        return ib < ia ? b : a;
}

int connect_report_exit_code(const ConnectReport *r) {
        int code = 0;

        for (size_t i = 0; i < r->n; i++)
                if (r->items[i].status == CONNECT_FAIL)
                        code = connect_exit_code_merge(code, r->items[i].exit_code);
        return code;
}
