/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <curl/curl.h>
#include <sysexits.h>

#include "kube/client.h"
#include "log/log.h"

#define KUBE_PAGE_SIZE_DEFAULT 100U
#define KUBE_RESPONSE_MAX (256U << 20)
#define KUBE_LIST_RESTARTS_MAX 3

struct KubeClient {
        CURL *curl;
        struct curl_slist *headers;
        char *server;
        char *kubeconfig_path;
        char *cluster;
        char *user;
        /* Owned copies handed to libcurl without copying (CURL_BLOB_NOCOPY), so the key is wiped here. */
        char *ca_pem, *cert_pem, *key_pem;
        size_t ca_pem_size, cert_pem_size, key_pem_size;
        unsigned page_size;
        char errbuf[CURL_ERROR_SIZE];
};

/* A response body; it carries Secret values, so it is wiped before it is freed. */
typedef struct Response {
        long status;
        char *body;
        size_t size, allocated;
} Response;

static void response_done(Response *r) {
        if (r->body)
                explicit_bzero(r->body, r->allocated);
        free(r->body);
        *r = (Response) {};
}

static void json_object_putp(json_object **j) {
        if (*j)
                json_object_put(*j);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

static void json_tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

static void curl_freep(char **p) {
        curl_free(*p);
}

static void dup_blob(const char *src, size_t n, char **ret, size_t *ret_size) {
        if (!src)
                return;
        *ret = xmalloc(n + 1);
        memcpy(*ret, src, n);
        (*ret)[n] = 0;
        *ret_size = n;
}

void kube_client_free(KubeClient *c) {
        if (!c)
                return;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        /* The Authorization header carries the token. */
        for (struct curl_slist *h = c->headers; h; h = h->next)
                explicit_bzero(h->data, strlen(h->data));
        curl_slist_free_all(c->headers);
        free(c->server);
        free(c->kubeconfig_path);
        free(c->cluster);
        free(c->user);
        free(c->ca_pem);
        free(c->cert_pem);
        kube_erase_and_free(c->key_pem, c->key_pem_size);
        free(c);
}

const char *kube_apply_result_to_string(KubeApplyResult r) {
        switch (r) {
        case KUBE_APPLY_CREATED:
                return "created";
        case KUBE_APPLY_REPLACED:
                return "replaced";
        case KUBE_APPLY_UNCHANGED:
                return "unchanged";
        }
        return "?";
}

void kube_client_set_page_size(KubeClient *c, unsigned limit) {
        c->page_size = limit > 0 ? limit : KUBE_PAGE_SIZE_DEFAULT;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        Response *r = userdata;
        size_t n = size * nmemb;

        if (r->size + n + 1 > KUBE_RESPONSE_MAX)
                return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR */
        if (r->size + n + 1 > r->allocated) {
                size_t a = r->allocated * 2 > r->size + n + 1 ? r->allocated * 2 : r->size + n + 1;
                char *b = xmalloc(a);
                /* Grown by hand rather than realloc(), so the old copy can be wiped. */
                if (r->body) {
                        memcpy(b, r->body, r->size);
                        explicit_bzero(r->body, r->allocated);
                        free(r->body);
                }
                r->body = b;
                r->allocated = a;
        }
        memcpy(r->body + r->size, data, n);
        r->size += n;
        r->body[r->size] = 0;
        return n;
}

int kube_client_new(const KubeConfig *config, KubeClient **ret) {
        _cleanup_(kube_client_freep) KubeClient *c = NULL;
        CURLcode e = CURLE_OK;

        c = xcalloc(1, sizeof *c);
        c->server = xstrdup(config->server);
        c->kubeconfig_path = xstrdup(config->path);
        c->cluster = xstrdup(config->cluster);
        c->user = xstrdup(config->user);
        c->page_size = KUBE_PAGE_SIZE_DEFAULT;
        dup_blob(config->ca_pem, config->ca_pem_size, &c->ca_pem, &c->ca_pem_size);
        dup_blob(config->client_cert_pem, config->client_cert_pem_size, &c->cert_pem,
                       &c->cert_pem_size);
        dup_blob(config->client_key_pem, config->client_key_pem_size, &c->key_pem, &c->key_pem_size);

        c->curl = curl_easy_init();
        if (!c->curl)
                return -ENOMEM;

        c->headers = curl_slist_append(c->headers, "Accept: application/json");
        c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
        c->headers = curl_slist_append(c->headers, "User-Agent: skyforge-agent/" PACKAGE_VERSION);
        if (!isempty(config->token)) {
                _cleanup_free_ char *h = xasprintf("Authorization: Bearer %s", config->token);
                c->headers = curl_slist_append(c->headers, h);
                explicit_bzero(h, strlen(h));
        }
        if (!c->headers)
                return -ENOMEM;

/* Stops at the first option that fails; e keeps its code. */
#define SETOPT(o, v) (e = e != CURLE_OK ? e : curl_easy_setopt(c->curl, o, v))
        SETOPT(CURLOPT_NOSIGNAL, 1L);
        SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
        SETOPT(CURLOPT_HTTPHEADER, c->headers);
        SETOPT(CURLOPT_PROTOCOLS_STR, "https,http");
        SETOPT(CURLOPT_CONNECTTIMEOUT, 10L);
        SETOPT(CURLOPT_TIMEOUT, 120L);
        SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
        if (config->insecure_skip_tls_verify) {
                /* Honoured like kubectl does, but never silently (as tls_verify = no for S3). */
                log_warning(
                        "TLS verification is off for the Kubernetes API of cluster \"%s\" (%s): "
                        "insecure-skip-tls-verify: true in kubeconfig %s lets anyone on the path read the "
                        "Secrets; give the cluster's CA (certificate-authority-data) instead",
                        strna(config->cluster), strna(config->server), strna(config->path));
                SETOPT(CURLOPT_SSL_VERIFYPEER, 0L);
                SETOPT(CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (c->ca_pem) {
                struct curl_blob b = { .data = c->ca_pem, .len = c->ca_pem_size, .flags = CURL_BLOB_NOCOPY };
                SETOPT(CURLOPT_CAINFO_BLOB, &b);
                /* Only the cluster's CA, as kubectl does: a public CA must not vouch for the API server. */
                SETOPT(CURLOPT_CAPATH, NULL);
        }
        if (c->cert_pem) {
                struct curl_blob b = { .data = c->cert_pem,
                                       .len = c->cert_pem_size,
                                       .flags = CURL_BLOB_NOCOPY };
                struct curl_blob k = { .data = c->key_pem,
                                       .len = c->key_pem_size,
                                       .flags = CURL_BLOB_NOCOPY };
                SETOPT(CURLOPT_SSLCERT_BLOB, &b);
                SETOPT(CURLOPT_SSLCERTTYPE, "PEM");
                SETOPT(CURLOPT_SSLKEY_BLOB, &k);
                SETOPT(CURLOPT_SSLKEYTYPE, "PEM");
        }
#undef SETOPT
        if (e != CURLE_OK)
                return err_set(-EIO, EX_SOFTWARE, "cannot set up the HTTP client for the Kubernetes API: %s",
                               curl_easy_strerror(e));
        *ret = TAKE_PTR(c);
        return 0;
}

/* Turns a libcurl failure into a message that says what to check. */
static int transport_error(KubeClient *c, CURLcode e) {
        const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(e);
        long os_errno = 0;

        switch (e) {
        case CURLE_COULDNT_CONNECT:
                (void) curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
                if (os_errno == 0)
                        os_errno = ECONNREFUSED;
                return err_set(-(int) os_errno, EX_UNAVAILABLE,
                               "cannot reach the Kubernetes API at %s: %s — "
                               "is k3s running?",
                               c->server,
                               os_errno == ECONNREFUSED ? "connection refused" : strerror((int) os_errno));
        case CURLE_OPERATION_TIMEDOUT:
                return err_set(-ETIMEDOUT, EX_UNAVAILABLE,
                               "cannot reach the Kubernetes API at %s: timed out "
                               "(%s) — is k3s running?",
                               c->server, detail);
        case CURLE_COULDNT_RESOLVE_HOST:
                return err_set(-EHOSTUNREACH, EX_UNAVAILABLE,
                               "cannot reach the Kubernetes API at %s: the "
                               "host name does not resolve — check server of cluster \"%s\" in %s",
                               c->server, c->cluster, c->kubeconfig_path);
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
                return err_set(-EPROTO, EX_CONFIG,
                               "TLS verification of the Kubernetes API at %s failed (%s): "
                               "check certificate-authority-data of cluster \"%s\" in %s",
                               c->server, detail, c->cluster, c->kubeconfig_path);
        case CURLE_SSL_CERTPROBLEM:
                return err_set(-EINVAL, EX_CONFIG,
                               "the client certificate or key of user \"%s\" in %s cannot "
                               "be used (%s): check client-certificate-data and client-key-data",
                               c->user, c->kubeconfig_path, detail);
        case CURLE_WRITE_ERROR:
                return err_set(-EFBIG, EX_PROTOCOL,
                               "the Kubernetes API at %s sent a response larger than "
                               "%u MiB",
                               c->server, KUBE_RESPONSE_MAX >> 20);
        default:
                return err_set(-ECONNABORTED, EX_UNAVAILABLE,
                               "request to the Kubernetes API at %s failed: %s "
                               "— is k3s running, and is the client certificate of user \"%s\" in %s valid?",
                               c->server, detail, c->user, c->kubeconfig_path);
        }
}

/* One request; a response with any HTTP status is success here, the caller judges the status. */
static int request(KubeClient *c, const char *method, const char *path, json_object *body, Response *ret) {
        _cleanup_free_ char *url = xasprintf("%s%s", c->server, path);
        const char *payload = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;
        Response resp = {};
        CURLcode e;

        log_debug("Kubernetes API: %s %s", method, url);
        c->errbuf[0] = 0;
        e = curl_easy_setopt(c->curl, CURLOPT_URL, url);
        if (e == CURLE_OK)
                e = curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &resp);
        if (e == CURLE_OK && payload) {
                e = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long) strlen(payload));
                if (e == CURLE_OK)
                        e = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, payload);
                if (e == CURLE_OK)
                        e = curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        } else if (e == CURLE_OK) {
                e = curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
                if (e == CURLE_OK)
                        e = curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST,
                                             streq(method, "GET") ? NULL : method);
        }
        if (e == CURLE_OK)
                e = curl_easy_perform(c->curl);
        /* The serialised body holds Secret values too; json-c keeps it in the object until it is freed. */
        (void) curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
        if (e != CURLE_OK) {
                response_done(&resp);
                return transport_error(c, e);
        }
        (void) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp.status);
        log_debug("Kubernetes API: %s %s -> %ld (%zu bytes)", method, url, resp.status, resp.size);
        *ret = resp;
        return 0;
}

static json_object *parse_json(const Response *r) {
        _cleanup_(json_tokener_freep) json_tokener *tok = json_tokener_new();
        json_object *j;

        if (!tok || !r->body)
                return NULL;
        j = json_tokener_parse_ex(tok, r->body, (int) r->size);
        if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(j);
                return NULL;
        }
        return j;
}

static const char *json_get_string(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static json_object *json_get_object(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object))
                return NULL;
        return v;
}

/* A failed API call: the message of the Status object the API server sends, with a hint. */
static int status_error(KubeClient *c, const Response *r, const char *what) {
        _cleanup_json_ json_object *j = parse_json(r);
        const char *msg = json_get_string(j, "message");
        _cleanup_free_ char *reason =
                msg ? xasprintf("%ld: %s", r->status, msg) : xasprintf("HTTP %ld", r->status);

        switch (r->status) {
        case 401:
                return err_set(-EACCES, EX_NOPERM,
                               "the Kubernetes API at %s refused the credentials of user "
                               "\"%s\" in %s (%s): the client certificate or token is not valid for this "
                               "cluster — use the kubeconfig the cluster wrote (k3s: %s)",
                               c->server, c->user, c->kubeconfig_path, reason, KUBECONFIG_DEFAULT_PATH);
        case 403:
                return err_set(-EACCES, EX_NOPERM,
                               "user \"%s\" in %s may not %s (%s): use a kubeconfig whose "
                               "user may read and write Secrets, such as the cluster admin's",
                               c->user, c->kubeconfig_path, what, reason);
        case 422:
        case 400:
                return err_set(-EINVAL, EX_DATAERR,
                               "the Kubernetes API at %s rejected the request to %s (%s)", c->server, what,
                               reason);
        default:
                return err_set(r->status >= 500 ? -EIO : -EPROTO,
                               r->status >= 500 ? EX_UNAVAILABLE : EX_PROTOCOL,
                               "cannot %s: the Kubernetes API at %s answered %s", what, c->server, reason);
        }
}

/* Names go into URL paths unescaped, so they are checked against the API's own rules first. */
static bool dns_name_valid(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      (*p == '.' && max > 63)))
                        return false;
        return true;
}
#define namespace_valid(s) dns_name_valid(s, 63)
#define secret_name_valid(s) dns_name_valid(s, 253)

/* Metadata the API server sets; a restore must not carry them over (uid and resourceVersion would be
 * rejected, the rest is noise in the export). */
static const char *const server_set_metadata[] = {
        "uid",      "resourceVersion", "managedFields",     "creationTimestamp",
        "selfLink", "generation",      "deletionTimestamp", "deletionGracePeriodSeconds",
};

json_object *kube_secret_export(json_object *item) {
        json_object *out = json_object_new_object();

        /* List items come without apiVersion and kind; kubectl create -f needs them on each item. */
        json_object_object_add(out, "apiVersion", json_object_new_string("v1"));
        json_object_object_add(out, "kind", json_object_new_string("Secret"));
        json_object_object_foreach (item, key, val) {
                if (streq(key, "apiVersion") || streq(key, "kind"))
                        continue;
                if (streq(key, "metadata") && json_object_is_type(val, json_type_object)) {
                        json_object *m = json_object_new_object();
                        json_object_object_foreach (val, mkey, mval) {
                                bool drop = false;
                                for (size_t i = 0; i < ELEMENTSOF(server_set_metadata); i++)
                                        drop = drop || streq(mkey, server_set_metadata[i]);
                                if (!drop)
                                        json_object_object_add(m, mkey, json_object_get(mval));
                        }
                        json_object_object_add(out, key, m);
                } else
                        json_object_object_add(out, key, json_object_get(val));
        }
        return out;
}

bool kube_secret_is_service_account_token(json_object *secret) {
        return streq_ptr(json_get_string(secret, "type"), "kubernetes.io/service-account-token");
}

static int secret_cmp(const void *a, const void *b) {
        json_object *ma = json_get_object(*(json_object *const *) a, "metadata");
        json_object *mb = json_get_object(*(json_object *const *) b, "metadata");
        int r = strcmp(strempty(json_get_string(ma, "namespace")),
                       strempty(json_get_string(mb, "namespace")));

        return r != 0 ? r
                      : strcmp(strempty(json_get_string(ma, "name")), strempty(json_get_string(mb, "name")));
}

void kube_secrets_sort(json_object *items) {
        json_object_array_sort(items, secret_cmp);
}

void kube_secrets_collect(json_object *page_items, json_object *out) {
        size_t n = json_object_array_length(page_items);

        for (size_t i = 0; i < n; i++) {
                json_object *item = json_object_array_get_idx(page_items, i);
                if (!json_object_is_type(item, json_type_object) ||
                    kube_secret_is_service_account_token(item))
                        continue;
                json_object_array_add(out, kube_secret_export(item));
        }
}

static int check_namespace(KubeClient *c, const char *ns) {
        _cleanup_free_ char *path = xasprintf("/api/v1/namespaces/%s", ns);
        _cleanup_free_ char *what = xasprintf("read namespace \"%s\"", ns);
        _cleanup_(response_done) Response r = {};
        int k;

        k = request(c, "GET", path, NULL, &r);
        if (k < 0)
                return k;
        if (r.status == 404)
                return err_set(-ENOENT, EX_CONFIG,
                               "namespace \"%s\" does not exist in the cluster at %s: fix "
                               "namespaces = in [config] (or use * for all)",
                               ns, c->server);
        if (r.status != 200)
                return status_error(c, &r, what);
        return 0;
}

/* Follows continue tokens until the listing is complete. An expired token (410 Gone: the listing took
 * longer than etcd keeps its snapshot) restarts the listing, since pages from two snapshots could miss
 * or repeat Secrets. */
static int list_paged(KubeClient *c, const char *base, const char *what, json_object *out) {
        size_t start = json_object_array_length(out);
        unsigned restarts = 0;
        _cleanup_free_ char *cont = NULL;

        for (;;) {
                _cleanup_free_ char *path = NULL;
                _cleanup_(response_done) Response r = {};
                _cleanup_json_ json_object *page = NULL;
                json_object *items, *meta;
                const char *next;
                int k;

                if (cont) {
                        _cleanup_(curl_freep) char *esc = curl_easy_escape(c->curl, cont, 0);
                        if (!esc)
                                return -ENOMEM;
                        path = xasprintf("%s?limit=%u&continue=%s", base, c->page_size, esc);
                } else
                        path = xasprintf("%s?limit=%u", base, c->page_size);

                k = request(c, "GET", path, NULL, &r);
                if (k < 0)
                        return k;
                if (r.status == 410 && cont && restarts < KUBE_LIST_RESTARTS_MAX) {
                        log_debug("Kubernetes API: continue token expired, listing %s again", base);
                        restarts++;
                        free(cont);
                        cont = NULL;
                        size_t n = json_object_array_length(out);
                        if (n > start)
                                json_object_array_del_idx(out, start, n - start);
                        continue;
                }
                if (r.status != 200)
                        return status_error(c, &r, what);
                page = parse_json(&r);
                if (!page || !json_object_object_get_ex(page, "items", &items) ||
                    !(json_object_is_type(items, json_type_array) ||
                      json_object_is_type(items, json_type_null)))
                        return err_set(-EBADMSG, EX_PROTOCOL,
                                       "the Kubernetes API at %s answered %s with "
                                       "something that is not a SecretList",
                                       c->server, path);
                if (json_object_is_type(items, json_type_array))
                        kube_secrets_collect(items, out);

                meta = json_get_object(page, "metadata");
                next = json_get_string(meta, "continue");
                if (isempty(next))
                        return 0;
                free(cont);
                cont = xstrdup(next);
        }
}

int kube_list_secrets(KubeClient *c, char *const *namespaces, json_object **ret_list) {
        _cleanup_json_ json_object *items = json_object_new_array(), *list = NULL;
        int r;

        if (!namespaces) {
                r = list_paged(c, "/api/v1/secrets", "list secrets in all namespaces", items);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; namespaces && namespaces[i]; i++) {
                const char *ns = namespaces[i];
                _cleanup_free_ char *base = NULL, *what = NULL;

                if (!namespace_valid(ns))
                        return err_set(-EINVAL, EX_CONFIG,
                                       "\"%s\" is not a valid namespace name: fix "
                                       "namespaces = in [config]",
                                       ns);
                bool seen = false;
                for (size_t j = 0; j < i; j++)
                        seen = seen || streq(namespaces[j], ns);
                if (seen)
                        continue;
                r = check_namespace(c, ns);
                if (r < 0)
                        return r;
                base = xasprintf("/api/v1/namespaces/%s/secrets", ns);
                what = xasprintf("list secrets in namespace \"%s\"", ns);
                r = list_paged(c, base, what, items);
                if (r < 0)
                        return r;
        }

        kube_secrets_sort(items);
        list = json_object_new_object();
        json_object_object_add(list, "apiVersion", json_object_new_string("v1"));
        json_object_object_add(list, "kind", json_object_new_string("List"));
        json_object_object_add(list, "items", TAKE_PTR(items));
        *ret_list = TAKE_PTR(list);
        return 0;
}

int kube_apply_secret(KubeClient *c, json_object *secret, bool dry_run, KubeApplyResult *ret) {
        _cleanup_json_ json_object *desired = NULL, *existing = NULL, *existing_export = NULL;
        _cleanup_free_ char *collection = NULL, *path = NULL, *what = NULL;
        _cleanup_(response_done) Response post = {}, get = {}, put = {};
        const char *kind, *ns, *name, *rv, *q = dry_run ? "?dryRun=All" : "";
        json_object *meta;
        int r;

        kind = json_get_string(secret, "kind");
        meta = json_get_object(secret, "metadata");
        name = json_get_string(meta, "name");
        ns = json_get_string(meta, "namespace") ?: "default";
        if (!json_object_is_type(secret, json_type_object) || (kind && !streq(kind, "Secret")) || !name)
                return err_set(-EINVAL, EX_DATAERR,
                               "cannot apply %s \"%s\": only Secrets with a "
                               "metadata.name are restored",
                               strna(kind), strna(name));
        if (!secret_name_valid(name) || !namespace_valid(ns))
                return err_set(-EINVAL, EX_DATAERR,
                               "cannot apply Secret %s/%s: not a valid namespace and name", ns, name);

        desired = kube_secret_export(secret);
        if (!json_get_string(json_get_object(desired, "metadata"), "namespace"))
                json_object_object_add(json_get_object(desired, "metadata"), "namespace",
                                       json_object_new_string(ns));
        collection = xasprintf("/api/v1/namespaces/%s/secrets", ns);
        what = xasprintf("create Secret %s/%s", ns, name);
        path = xasprintf("%s%s", collection, q);
        r = request(c, "POST", path, desired, &post);
        if (r < 0)
                return r;
        if (post.status == 200 || post.status == 201 || post.status == 202) {
                *ret = KUBE_APPLY_CREATED;
                return 0;
        }
        if (post.status == 404)
                return err_set(-ENOENT, EX_UNAVAILABLE,
                               "cannot create Secret %s/%s: namespace \"%s\" does "
                               "not exist — apply the manifests first or run: kubectl create namespace %s",
                               ns, name, ns, ns);
        if (post.status != 409)
                return status_error(c, &post, what);

        /* It exists: compare, and replace it only when it differs. */
        free(what);
        what = xasprintf("read Secret %s/%s", ns, name);
        free(path);
        path = xasprintf("%s/%s", collection, name);
        r = request(c, "GET", path, NULL, &get);
        if (r < 0)
                return r;
        if (get.status != 200)
                return status_error(c, &get, what);
        existing = parse_json(&get);
        if (!existing)
                return err_set(-EBADMSG, EX_PROTOCOL,
                               "the Kubernetes API at %s answered GET %s with "
                               "something that is not a Secret",
                               c->server, path);
        rv = json_get_string(json_get_object(existing, "metadata"), "resourceVersion");
        existing_export = kube_secret_export(existing);
        if (json_object_equal(existing_export, desired)) {
                *ret = KUBE_APPLY_UNCHANGED;
                return 0;
        }

        /* The resourceVersion makes the replace conditional: a Secret changed since the GET is not
         * overwritten blindly. */
        if (rv)
                json_object_object_add(json_get_object(desired, "metadata"), "resourceVersion",
                                       json_object_new_string(rv));
        free(what);
        what = xasprintf("replace Secret %s/%s", ns, name);
        free(path);
        path = xasprintf("%s/%s%s", collection, name, q);
        r = request(c, "PUT", path, desired, &put);
        if (r < 0)
                return r;
        if (put.status == 409)
                return err_set(-EAGAIN, EX_TEMPFAIL,
                               "Secret %s/%s changed while it was being replaced: run "
                               "the restore again",
                               ns, name);
        if (put.status != 200 && put.status != 201)
                return status_error(c, &put, what);
        *ret = KUBE_APPLY_REPLACED;
        return 0;
}

int kube_check_list_secrets(KubeClient *c, char *const *namespaces) {
        /* One list of at most one Secret per namespace (or one cluster-wide): proves the permission the
         * export needs without reading the Secrets. */
        for (size_t i = 0; namespaces ? namespaces[i] != NULL : i == 0; i++) {
                _cleanup_free_ char *path = NULL, *what = NULL;
                _cleanup_(response_done) Response r = {};
                int k;

                if (namespaces) {
                        if (!namespace_valid(namespaces[i]))
                                return err_set(-EINVAL, EX_CONFIG,
                                               "\"%s\" is not a valid namespace name: fix namespaces = in "
                                               "[config]",
                                               namespaces[i]);
                        k = check_namespace(c, namespaces[i]);
                        if (k < 0)
                                return k;
                        path = xasprintf("/api/v1/namespaces/%s/secrets?limit=1", namespaces[i]);
                        what = xasprintf("list Secrets in namespace \"%s\"", namespaces[i]);
                } else {
                        path = xstrdup("/api/v1/secrets?limit=1");
                        what = xstrdup("list Secrets in all namespaces");
                }
                k = request(c, "GET", path, NULL, &r);
                if (k < 0)
                        return k;
                if (r.status != 200)
                        return status_error(c, &r, what);
        }
        return 0;
}
