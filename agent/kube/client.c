/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <curl/curl.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include "kube/client.h"
#include "log/log.h"

#define KUBE_PAGE_SIZE_DEFAULT 100U
#define KUBE_RESPONSE_MAX (256U << 20)
#define KUBE_LIST_RESTARTS_MAX 3
/* A listing that needs more pages than this does not come from a real cluster (a million Secrets at the
 * default page size) but from a server whose continue tokens go round in a circle. */
#define KUBE_LIST_PAGES_MAX 10000U

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
        /* NULL: the process-wide cancel_requested(); set: only this flag stops a request (the Lease
         * renewals, which must be able to release the Lease after a SIGTERM). */
        const volatile sig_atomic_t *cancel;
        char errbuf[CURL_ERROR_SIZE];
};

/* A response body; it carries Secret values, so it is wiped before it is freed. With tok set, the body
 * is parsed as it arrives instead of kept whole: a page of large Secrets is then held once (as JSON
 * objects), not twice. */
typedef struct Response {
        long status;
        char *body;
        size_t size, allocated;
        json_tokener *tok;
        json_object *json; /* what tok parsed */
        bool parse_failed;
        uint64_t date_usec; /* the server's Date header, 0 when missing */
} Response;

static void response_done(Response *r) {
        if (r->body)
                explicit_bzero(r->body, r->allocated);
        free(r->body);
        if (r->tok)
                json_tokener_free(r->tok);
        if (r->json)
                json_object_put(r->json);
        *r = (Response) {};
}

static bool is_space(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!strchr(" \t\r\n", p[i]))
                        return false;
        return true;
}

/* Feeds a piece of the body to the tokener; the first complete value is the reply. */
static void response_parse(Response *r, const char *p, size_t n) {
        while (n > 0 && !r->parse_failed) {
                size_t k = MIN(n, (size_t) INT32_MAX);
                if (r->json) {
                        r->parse_failed = !is_space(p, k); /* only whitespace may follow */
                        return;
                }
                json_object *j = json_tokener_parse_ex(r->tok, p, (int) k);
                enum json_tokener_error e = json_tokener_get_error(r->tok);
                if (e == json_tokener_continue) {
                        p += k, n -= k;
                        continue;
                }
                if (e != json_tokener_success || !j) {
                        json_object_put(j);
                        r->parse_failed = true;
                        return;
                }
                r->json = j;
                size_t used = json_tokener_get_parse_end(r->tok);
                p += MIN(used, k), n -= MIN(used, k);
        }
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
        if (r->tok) {
                r->size += n; /* counted, not kept */
                response_parse(r, data, n);
                return n;
        }
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

/* libcurl calls this often while data moves and about once a second while it waits: a SIGTERM (which only
 * sets a flag, and after which libcurl just polls again) stops the request here. */
static bool client_cancelled(const KubeClient *c) {
        return c->cancel ? *c->cancel != 0 : cancel_requested();
}

static int progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        (void) dltotal, (void) dlnow, (void) ultotal, (void) ulnow;
        return client_cancelled(userdata) ? 1 : 0;
}

/* "Date: Tue, 01 Dec 2026 19:40:00 GMT" (RFC 9110's IMF-fixdate, the only form servers send now). */
int kube_parse_http_date(const char *s, size_t n, uint64_t *ret_usec) {
        static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
        char buf[64], mon[4] = "";
        struct tm tm = {};
        int day, year, h, m, sec, k = 0;
        const char *p;

        if (n >= sizeof buf)
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = 0;
        if (sscanf(buf, "%*3s, %2d %3s %4d %2d:%2d:%2d GMT%n", &day, mon, &year, &h, &m, &sec, &k) != 6 ||
            k == 0)
                return -EINVAL;
        p = strlen(mon) == 3 ? strstr(months, mon) : NULL;
        if (!p || (p - months) % 3 != 0 || day < 1 || day > 31 || year < 1970 || h > 23 || m > 59 ||
            sec > 60)
                return -EINVAL;
        tm = (struct tm){ .tm_year = year - 1900, .tm_mon = (int) (p - months) / 3, .tm_mday = day,
                          .tm_hour = h, .tm_min = m, .tm_sec = sec };
        time_t t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret_usec = (uint64_t) t * USEC_PER_SEC;
        return 0;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *userdata) {
        Response *r = userdata;
        size_t n = size * nmemb;

        if (n > 5 && strncasecmp(data, "Date:", 5) == 0) {
                const char *v = data + 5;
                size_t k = n - 5;
                while (k > 0 && (*v == ' ' || *v == '\t'))
                        v++, k--;
                while (k > 0 && strchr(" \t\r\n", v[k - 1]))
                        k--;
                if (kube_parse_http_date(v, k, &r->date_usec) < 0)
                        r->date_usec = 0;
        }
        return n;
}

int kube_client_open(const char *kubeconfig, KubeClient **ret) {
        _cleanup_(kubeconfig_freep) KubeConfig *kc = NULL;
        int r;

        r = kubeconfig_load(kubeconfig, &kc);
        if (r < 0)
                return r;
        return kube_client_new(kc, ret);
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
        SETOPT(CURLOPT_NOPROGRESS, 0L);
        SETOPT(CURLOPT_XFERINFOFUNCTION, progress_cb);
        SETOPT(CURLOPT_XFERINFODATA, c);
        SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
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
        case CURLE_ABORTED_BY_CALLBACK:
                return err_set(-ECANCELED, EX_TEMPFAIL,
                               "cancelled while talking to the Kubernetes API at %s", c->server);
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
        Response resp = { .tok = ret->tok };
        CURLcode e;

        ret->tok = NULL;
        if (client_cancelled(c)) {
                response_done(&resp);
                return err_set(-ECANCELED, EX_TEMPFAIL,
                               "cancelled before a request to the Kubernetes API at %s", c->server);
        }
        log_debug("Kubernetes API: %s %s", method, url);
        c->errbuf[0] = 0;
        e = curl_easy_setopt(c->curl, CURLOPT_URL, url);
        if (e == CURLE_OK)
                e = curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &resp);
        if (e == CURLE_OK)
                e = curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &resp);
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
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        json_object *j;

        if (r->tok)
                return r->json && !r->parse_failed ? json_object_get(r->json) : NULL;
        tok = json_tokener_new();
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
static int status_error_json(KubeClient *c, long status, json_object *j, const char *what) {
        const char *msg = json_get_string(j, "message");
        _cleanup_free_ char *reason = msg ? xasprintf("%ld: %s", status, msg)
                                          : xasprintf("HTTP %ld", status);

        switch (status) {
        case 401:
                return err_set(-EACCES, EX_NOPERM,
                               "the Kubernetes API at %s refused the credentials of user "
                               "\"%s\" in %s (%s): the client certificate or token is not valid for this "
                               "cluster — use the kubeconfig the cluster wrote (k3s: %s)",
                               c->server, c->user, c->kubeconfig_path, reason, KUBECONFIG_DEFAULT_PATH);
        case 403:
                return err_set(-EACCES, EX_NOPERM,
                               "user \"%s\" in %s may not %s (%s): use a kubeconfig whose "
                               "user may, such as the cluster admin's (k3s: %s)",
                               c->user, c->kubeconfig_path, what, reason, KUBECONFIG_DEFAULT_PATH);
        case 422:
        case 400:
                return err_set(-EINVAL, EX_DATAERR,
                               "the Kubernetes API at %s rejected the request to %s (%s)", c->server, what,
                               reason);
        default:
                return err_set(status >= 500 ? -EIO : -EPROTO, status >= 500 ? EX_UNAVAILABLE : EX_PROTOCOL,
                               "cannot %s: the Kubernetes API at %s answered %s", what, c->server, reason);
        }
}

static int status_error(KubeClient *c, const Response *r, const char *what) {
        _cleanup_json_ json_object *j = parse_json(r);

        return status_error_json(c, r->status, j, what);
}

/* Names go into URL paths unescaped, so they are checked against the API's own rules first. */
bool kube_name_valid(const char *s, size_t max) {
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > max || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      (*p == '.' && max > 63)))
                        return false;
        return true;
}
#define namespace_valid(s) kube_name_valid(s, 63)
#define secret_name_valid(s) kube_name_valid(s, 253)

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

/* Where list_paged() puts the export items of a listing: a json-c array, or the texts of an export. */
typedef struct Collector {
        int (*add)(struct Collector *col, json_object *export_item);
        size_t (*count)(struct Collector *col);
        void (*truncate)(struct Collector *col, size_t n); /* drops what came after the first n */
} Collector;

/* Follows continue tokens until the listing is complete. An expired token (410 Gone: the listing took
 * longer than etcd keeps its snapshot) restarts the listing, since pages from two snapshots could miss
 * or repeat Secrets. A token that comes back unchanged, or more pages than any cluster has, would never
 * end: refused. Each page is parsed as it arrives and freed once its items are collected. */
static int list_paged(KubeClient *c, const char *base, const char *what, Collector *out) {
        size_t start = out->count(out);
        unsigned restarts = 0, pages = 0;
        _cleanup_free_ char *cont = NULL;

        for (;;) {
                _cleanup_free_ char *path = NULL;
                _cleanup_(response_done) Response r = {};
                _cleanup_json_ json_object *page = NULL;
                json_object *items, *meta;
                const char *next;
                int k;

                if (++pages > KUBE_LIST_PAGES_MAX)
                        return err_set(
                                -ELOOP, EX_PROTOCOL,
                                "the Kubernetes API at %s answered more than %u pages to %s; the listing "
                                "cannot finish (an API server bug?)",
                                c->server, KUBE_LIST_PAGES_MAX, what);
                if (cont) {
                        _cleanup_(curl_freep) char *esc = curl_easy_escape(c->curl, cont, 0);
                        if (!esc)
                                return -ENOMEM;
                        path = xasprintf("%s?limit=%u&continue=%s", base, c->page_size, esc);
                } else
                        path = xasprintf("%s?limit=%u", base, c->page_size);

                r.tok = json_tokener_new();
                if (!r.tok)
                        return -ENOMEM;
                k = request(c, "GET", path, NULL, &r);
                if (k < 0)
                        return k;
                if (r.status == 410 && cont && restarts < KUBE_LIST_RESTARTS_MAX) {
                        log_debug("Kubernetes API: continue token expired, listing %s again", base);
                        restarts++;
                        free(cont);
                        cont = NULL;
                        out->truncate(out, start);
                        continue;
                }
                if (r.status != 200)
                        return status_error(c, &r, what);
                page = parse_json(&r);
                response_done(&r); /* the page is held once, as page */
                if (!page || !json_object_object_get_ex(page, "items", &items) ||
                    !(json_object_is_type(items, json_type_array) ||
                      json_object_is_type(items, json_type_null)))
                        return err_set(-EBADMSG, EX_PROTOCOL,
                                       "the Kubernetes API at %s answered %s with "
                                       "something that is not a SecretList",
                                       c->server, path);
                for (size_t i = 0;
                     json_object_is_type(items, json_type_array) && i < json_object_array_length(items);
                     i++) {
                        json_object *item = json_object_array_get_idx(items, i);
                        if (!json_object_is_type(item, json_type_object) ||
                            kube_secret_is_service_account_token(item))
                                continue;
                        _cleanup_json_ json_object *e = kube_secret_export(item);
                        k = out->add(out, e);
                        if (k < 0)
                                return k;
                }

                meta = json_get_object(page, "metadata");
                next = json_get_string(meta, "continue");
                if (isempty(next))
                        return 0;
                if (cont && streq(cont, next))
                        return err_set(
                                -ELOOP, EX_PROTOCOL,
                                "the Kubernetes API at %s returned the same continue token twice to %s; "
                                "the listing cannot finish (an API server bug?)",
                                c->server, what);
                free(cont);
                cont = xstrdup(next);
        }
}

/* Lists every namespace asked for (NULL: all) into out. */
static int list_namespaces_secrets(KubeClient *c, char *const *namespaces, Collector *out) {
        int r;

        if (!namespaces)
                return list_paged(c, "/api/v1/secrets", "list secrets in all namespaces", out);
        for (size_t i = 0; namespaces[i]; i++) {
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
                r = list_paged(c, base, what, out);
                if (r < 0)
                        return r;
        }
        return 0;
}

typedef struct ArrayCollector {
        Collector col;
        json_object *items;
} ArrayCollector;

static int array_add(Collector *col, json_object *item) {
        json_object_array_add(((ArrayCollector *) col)->items, json_object_get(item));
        return 0;
}

static size_t array_count(Collector *col) {
        return json_object_array_length(((ArrayCollector *) col)->items);
}

static void array_truncate(Collector *col, size_t n) {
        json_object *items = ((ArrayCollector *) col)->items;
        size_t len = json_object_array_length(items);

        if (len > n)
                json_object_array_del_idx(items, n, len - n);
}

int kube_list_secrets(KubeClient *c, char *const *namespaces, json_object **ret_list) {
        _cleanup_json_ json_object *items = json_object_new_array(), *list = NULL;
        ArrayCollector a = { .col = { array_add, array_count, array_truncate }, .items = items };
        int r;

        r = list_namespaces_secrets(c, namespaces, &a.col);
        if (r < 0)
                return r;
        kube_secrets_sort(items);
        list = json_object_new_object();
        json_object_object_add(list, "apiVersion", json_object_new_string("v1"));
        json_object_object_add(list, "kind", json_object_new_string("List"));
        json_object_object_add(list, "items", TAKE_PTR(items));
        *ret_list = TAKE_PTR(list);
        return 0;
}

/* ---- the export, written as it is encrypted ---- */

/* JSON text of o, handed to write in pieces as it is produced: strings (the Secret values) are escaped
 * straight from the json-c objects, so no serialized copy of an item, and no copy of a value, is ever
 * made. Laid out like json-c's JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE. */
static int json_write_string(const char *p, size_t n, KubeWriteFunc write, void *userdata) {
        static const char hex[] = "0123456789abcdef";
        size_t run = 0;
        int r;

        r = write("\"", 1, userdata);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                unsigned char ch = (unsigned char) p[i];
                char esc[7];
                size_t k = 0;

                if (ch == '"' || ch == '\\')
                        esc[k++] = '\\', esc[k++] = (char) ch;
                else if (ch == '\n')
                        esc[k++] = '\\', esc[k++] = 'n';
                else if (ch == '\r')
                        esc[k++] = '\\', esc[k++] = 'r';
                else if (ch == '\t')
                        esc[k++] = '\\', esc[k++] = 't';
                else if (ch < 0x20) {
                        memcpy(esc, "\\u00", 4);
                        esc[4] = hex[ch >> 4], esc[5] = hex[ch & 15];
                        k = 6;
                } else {
                        run++;
                        continue;
                }
                if (run > 0)
                        r = write(p + i - run, run, userdata);
                run = 0;
                if (r >= 0)
                        r = write(esc, k, userdata);
        }
        if (r >= 0 && run > 0)
                r = write(p + n - run, run, userdata);
        if (r >= 0)
                r = write("\"", 1, userdata);
        return r;
}

static int json_write_indent(unsigned indent, KubeWriteFunc write, void *userdata) {
        static const char spaces[] = "                                                                ";
        int r = write("\n", 1, userdata);

        for (unsigned left = indent; r >= 0 && left > 0;) {
                unsigned k = MIN(left, (unsigned) sizeof spaces - 1);
                r = write(spaces, k, userdata);
                left -= k;
        }
        return r;
}

static int json_write(json_object *o, unsigned indent, KubeWriteFunc write, void *userdata) {
        bool first = true;
        int r = 0;

        switch (json_object_get_type(o)) {
        case json_type_string:
                return json_write_string(json_object_get_string(o), (size_t) json_object_get_string_len(o),
                                         write, userdata);
        case json_type_object:
                if (json_object_object_length(o) == 0)
                        return write("{}", 2, userdata);
                r = write("{", 1, userdata);
                json_object_object_foreach(o, key, val) {
                        if (r >= 0 && !first)
                                r = write(",", 1, userdata);
                        first = false;
                        if (r >= 0)
                                r = json_write_indent(indent + 2, write, userdata);
                        if (r >= 0)
                                r = json_write_string(key, strlen(key), write, userdata);
                        if (r >= 0)
                                r = write(": ", 2, userdata);
                        if (r >= 0)
                                r = json_write(val, indent + 2, write, userdata);
                }
                if (r >= 0)
                        r = json_write_indent(indent, write, userdata);
                return r >= 0 ? write("}", 1, userdata) : r;
        case json_type_array: {
                size_t n = json_object_array_length(o);
                if (n == 0)
                        return write("[]", 2, userdata);
                r = write("[", 1, userdata);
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        if (i > 0)
                                r = write(",", 1, userdata);
                        if (r >= 0)
                                r = json_write_indent(indent + 2, write, userdata);
                        if (r >= 0)
                                r = json_write(json_object_array_get_idx(o, i), indent + 2, write, userdata);
                }
                if (r >= 0)
                        r = json_write_indent(indent, write, userdata);
                return r >= 0 ? write("]", 1, userdata) : r;
        }
        default: {
                /* null, booleans and numbers: short */
                size_t len;
                const char *t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
                return write(t, len, userdata);
        }
        }
}

static int count_write(const void *p, size_t n, void *userdata) {
        (void) p;
        *(uint64_t *) userdata += n;
        return 0;
}

static uint64_t json_text_size(json_object *o, unsigned indent) {
        uint64_t n = 0;

        (void) json_write(o, indent, count_write, &n);
        return n;
}

#define EXPORT_HEAD        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": ["
#define EXPORT_TAIL        "\n  ]\n}\n"
#define EXPORT_ITEM_INDENT 4U

struct KubeExport {
        Collector col;
        KubeClient *c;
        json_object **items; /* export items; they hold the values of their page, the rest of it is freed */
        size_t n_items, n_allocated;
        uint64_t bytes; /* of the JSON text of the items */
};

static int export_add(Collector *col, json_object *item) {
        KubeExport *e = (KubeExport *) col;
        uint64_t n = json_text_size(item, EXPORT_ITEM_INDENT) + 2 + EXPORT_ITEM_INDENT;

        if (e->bytes + n > KUBE_EXPORT_MAX)
                return err_set(-EFBIG, EX_DATAERR,
                               "the Secrets of the cluster at %s add up to more than %u MiB, more than a "
                               "config backup can hold; narrow namespaces = in [config]",
                               e->c->server, KUBE_EXPORT_MAX >> 20);
        if (e->n_items == e->n_allocated) {
                e->n_allocated = MAX(e->n_allocated * 2, (size_t) 64);
                e->items = xrealloc(e->items, e->n_allocated * sizeof *e->items);
        }
        e->items[e->n_items++] = json_object_get(item);
        e->bytes += n;
        return 0;
}

static size_t export_count(Collector *col) {
        return ((KubeExport *) col)->n_items;
}

static void export_truncate(Collector *col, size_t n) {
        KubeExport *e = (KubeExport *) col;

        while (e->n_items > n) {
                json_object *i = e->items[--e->n_items];
                e->bytes -= json_text_size(i, EXPORT_ITEM_INDENT) + 2 + EXPORT_ITEM_INDENT;
                json_object_put(i);
        }
}

void kube_export_free(KubeExport *e) {
        if (!e)
                return;
        export_truncate(&e->col, 0);
        free(e->items);
        free(e);
}

int kube_export_secrets(KubeClient *c, char *const *namespaces, KubeExport **ret) {
        _cleanup_(kube_export_freep) KubeExport *e = xcalloc(1, sizeof *e);
        int r;

        e->col = (Collector){ export_add, export_count, export_truncate };
        e->c = c;
        r = list_namespaces_secrets(c, namespaces, &e->col);
        if (r < 0)
                return r;
        qsort(e->items, e->n_items, sizeof *e->items, secret_cmp);
        *ret = TAKE_PTR(e);
        return 0;
}

size_t kube_export_count(const KubeExport *e) {
        return e->n_items;
}

uint64_t kube_export_size(const KubeExport *e) {
        return strlen(EXPORT_HEAD) + e->bytes - (e->n_items > 0 ? 1 : 0) + strlen(EXPORT_TAIL);
}

int kube_export_write(KubeExport *e, KubeWriteFunc write, void *userdata) {
        int r;

        r = write(EXPORT_HEAD, strlen(EXPORT_HEAD), userdata);
        /* Each item is dropped once written: the plaintext shrinks as the ciphertext grows. */
        for (size_t i = 0; i < e->n_items; i++) {
                if (r >= 0 && i > 0)
                        r = write(",", 1, userdata);
                if (r >= 0)
                        r = json_write_indent(EXPORT_ITEM_INDENT, write, userdata);
                if (r >= 0)
                        r = json_write(e->items[i], EXPORT_ITEM_INDENT, write, userdata);
                e->items[i] = (json_object_put(e->items[i]), NULL);
        }
        e->n_items = 0;
        e->bytes = 0;
        if (r >= 0)
                r = write(EXPORT_TAIL, strlen(EXPORT_TAIL), userdata);
        return r;
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
                k = kube_check_list(c, path, what);
                if (k < 0)
                        return k;
        }
        return 0;
}

int kube_check_list(KubeClient *c, const char *path, const char *what) {
        _cleanup_(response_done) Response r = {};
        int k;

        k = request(c, "GET", path, NULL, &r);
        if (k < 0)
                return k;
        if (r.status != 200)
                return status_error(c, &r, what);
        return 0;
}

/* ---- requests for the other API groups (Leases, Nodes) ---- */

void kube_client_set_timeout(KubeClient *c, uint64_t usec) {
        long ms = (long) MAX(usec / USEC_PER_MSEC, (uint64_t) 100);

        (void) curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, ms);
        (void) curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, ms);
}

void kube_client_set_cancel(KubeClient *c, const volatile sig_atomic_t *flag) {
        c->cancel = flag;
}

const char *kube_client_server(const KubeClient *c) {
        return c->server;
}

const char *kube_client_kubeconfig_path(const KubeClient *c) {
        return c->kubeconfig_path;
}

int kube_request_json(KubeClient *c, const char *method, const char *path, json_object *body,
                      KubeReply *ret) {
        _cleanup_(response_done) Response resp = {};
        int r;

        r = request(c, method, path, body, &resp);
        if (r < 0)
                return r;
        *ret = (KubeReply){ .status = resp.status, .json = parse_json(&resp), .date_usec = resp.date_usec };
        return 0;
}

int kube_reply_error(KubeClient *c, const KubeReply *reply, const char *what) {
        return status_error_json(c, reply->status, reply->json, what);
}

void kube_reply_done(KubeReply *reply) {
        if (reply->json)
                json_object_put(reply->json);
        *reply = (KubeReply){};
}
