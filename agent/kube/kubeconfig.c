/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <sysexits.h>
#include <yaml.h>

#include "kube/kubeconfig.h"
#include "log/log.h"

#define KUBECONFIG_MAX_SIZE (4U << 20)
#define KUBECONFIG_REF_MAX_SIZE (1U << 20)

void kube_erase_and_free(char *p, size_t n) {
        if (!p)
                return;
        explicit_bzero(p, n);
        free(p);
}

void kubeconfig_free(KubeConfig *c) {
        if (!c)
                return;
        free(c->path);
        free(c->context);
        free(c->cluster);
        free(c->user);
        free(c->server);
        free(c->ca_pem);
        free(c->client_cert_pem);
        kube_erase_and_free(c->client_key_pem, c->client_key_pem_size);
        kube_erase_and_free(c->token, c->token ? strlen(c->token) : 0);
        free(c);
}

static void yaml_document_deletep(yaml_document_t **d) {
        if (*d)
                yaml_document_delete(*d);
}

static const char *node_scalar(yaml_node_t *n) {
        if (!n || n->type != YAML_SCALAR_NODE)
                return NULL;
        return (const char *) n->data.scalar.value;
}

/* The value under key in a mapping node, NULL when absent or when node is no mapping. */
static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *map, const char *key) {
        if (!map || map->type != YAML_MAPPING_NODE)
                return NULL;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                const char *k = node_scalar(yaml_document_get_node(d, p->key));
                if (k && streq(k, key))
                        return yaml_document_get_node(d, p->value);
        }
        return NULL;
}

static const char *map_get_scalar(yaml_document_t *d, yaml_node_t *map, const char *key) {
        const char *s = node_scalar(map_get(d, map, key));
        return isempty(s) ? NULL : s;
}

/* kubeconfig lists are sequences of {name: N, <kind>: {...}}; returns the inner mapping of entry name. */
static yaml_node_t *find_named(yaml_document_t *d, yaml_node_t *root, const char *list, const char *kind,
                               const char *name) {
        yaml_node_t *seq = map_get(d, root, list);

        if (!seq || seq->type != YAML_SEQUENCE_NODE)
                return NULL;
        for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top; i++) {
                yaml_node_t *entry = yaml_document_get_node(d, *i);
                const char *n = map_get_scalar(d, entry, "name");
                if (n && streq(n, name)) {
                        yaml_node_t *inner = map_get(d, entry, kind);
                        /* "user: {}" and an entry without its mapping both mean "nothing set". */
                        return inner && inner->type == YAML_MAPPING_NODE ? inner : entry;
                }
        }
        return NULL;
}

/* Strict standard base64 as Go decodes it for kubectl (padding required), except that whitespace is
 * skipped: a long value folded over several lines in YAML arrives with spaces in it. */
static int base64_decode(const char *in, char **ret, size_t *ret_size) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        _cleanup_free_ char *out = xmalloc(strlen(in) / 4 * 3 + 4);
        unsigned acc = 0, nchars = 0, npad = 0;
        size_t n = 0;

        for (const char *p = in; *p; p++) {
                const char *pos;

                if (strchr(" \t\r\n", *p))
                        continue;
                if (*p == '=') {
                        npad++;
                        continue;
                }
                pos = strchr(alphabet, *p);
                if (!pos || npad > 0)
                        return -EBADMSG;
                acc = (acc << 6) | (unsigned) (pos - alphabet);
                if (++nchars % 4 == 0) {
                        out[n++] = (char) (acc >> 16);
                        out[n++] = (char) (acc >> 8);
                        out[n++] = (char) acc;
                        acc = 0;
                }
        }
        if ((nchars + npad) % 4 != 0 || npad > 2 || (npad > 0 && nchars % 4 != 4 - npad) || nchars == 0)
                return -EBADMSG;
        if (nchars % 4 == 2)
                out[n++] = (char) (acc >> 4);
        else if (nchars % 4 == 3) {
                out[n++] = (char) (acc >> 10);
                out[n++] = (char) (acc >> 2);
        }
        out[n] = 0;
        *ret_size = n;
        *ret = TAKE_PTR(out);
        return 0;
}

/* File references are relative to the kubeconfig's directory, as kubectl resolves them. */
static char *resolve_ref(const char *kubeconfig_path, const char *ref) {
        const char *slash = strrchr(kubeconfig_path, '/');

        if (ref[0] == '/' || !slash)
                return xstrdup(ref);
        return xasprintf("%.*s/%s", (int) (slash - kubeconfig_path), kubeconfig_path, ref);
}

/* One credential or certificate: inline "<key>-data" (base64) or a file named by "<key>". */
static int load_blob(yaml_document_t *d, yaml_node_t *map, const char *key, const char *what,
                     const char *kcpath, char **ret, size_t *ret_size) {
        _cleanup_free_ char *data_key = xasprintf("%s-data", key), *path = NULL, *buf = NULL;
        const char *v;
        size_t size;
        int r;

        v = map_get_scalar(d, map, data_key);
        if (v) {
                r = base64_decode(v, &buf, &size);
                if (r < 0)
                        return err_set(r, EX_CONFIG,
                                       "%s of %s in kubeconfig %s is not valid base64: "
                                       "copy it again from the cluster's kubeconfig",
                                       data_key, what, kcpath);
                *ret = TAKE_PTR(buf);
                *ret_size = size;
                return 1;
        }
        v = map_get_scalar(d, map, key);
        if (!v)
                return 0;
        path = resolve_ref(kcpath, v);
        r = read_file_string(path, KUBECONFIG_REF_MAX_SIZE, &buf);
        if (r < 0)
                return err_set(r, EX_CONFIG, "cannot read %s %s of %s (kubeconfig %s): %s", key, path, what,
                               kcpath, strerror(-r));
        *ret = TAKE_PTR(buf);
        *ret_size = (size_t) r;
        return 1;
}

static int load_cluster(yaml_document_t *d, yaml_node_t *root, KubeConfig *c) {
        _cleanup_free_ char *what = xasprintf("cluster \"%s\"", c->cluster);
        yaml_node_t *cl = find_named(d, root, "clusters", "cluster", c->cluster);
        const char *server, *insecure;
        size_t n;
        int r;

        if (!cl)
                return err_set(-ENOENT, EX_CONFIG,
                               "kubeconfig %s: context \"%s\" names cluster \"%s\", "
                               "which is not listed under clusters:",
                               c->path, c->context, c->cluster);
        server = map_get_scalar(d, cl, "server");
        if (!server || !(startswith(server, "https://") || startswith(server, "http://")))
                return err_set(-EINVAL, EX_CONFIG, "kubeconfig %s: %s has no https:// server address",
                               c->path, what);
        n = strlen(server);
        while (n > 0 && server[n - 1] == '/')
                n--;
        c->server = xstrndup(server, n);

        insecure = map_get_scalar(d, cl, "insecure-skip-tls-verify");
        if (insecure) {
                r = parse_bool(insecure);
                if (r < 0)
                        return err_set(r, EX_CONFIG,
                                       "kubeconfig %s: insecure-skip-tls-verify of %s is not "
                                       "a boolean: \"%s\"",
                                       c->path, what, insecure);
                c->insecure_skip_tls_verify = r;
        }
        r = load_blob(d, cl, "certificate-authority", what, c->path, &c->ca_pem, &c->ca_pem_size);
        return r < 0 ? r : 0;
}

static int load_user(yaml_document_t *d, yaml_node_t *root, KubeConfig *c) {
        _cleanup_free_ char *what = xasprintf("user \"%s\"", c->user);
        yaml_node_t *u = find_named(d, root, "users", "user", c->user);
        const char *token, *token_file;
        int r, have_cert, have_key;

        if (!u)
                return err_set(-ENOENT, EX_CONFIG,
                               "kubeconfig %s: context \"%s\" names user \"%s\", "
                               "which is not listed under users:",
                               c->path, c->context, c->user);
        if (map_get(d, u, "exec") || map_get(d, u, "auth-provider"))
                return err_set(-EOPNOTSUPP, EX_CONFIG,
                               "kubeconfig %s: %s authenticates through an exec or "
                               "auth-provider plugin, which skyforge-agent does not run: use a kubeconfig "
                               "with a client certificate or a token",
                               c->path, what);

        have_cert = load_blob(d, u, "client-certificate", what, c->path, &c->client_cert_pem,
                              &c->client_cert_pem_size);
        if (have_cert < 0)
                return have_cert;
        have_key = load_blob(d, u, "client-key", what, c->path, &c->client_key_pem, &c->client_key_pem_size);
        if (have_key < 0)
                return have_key;
        if (have_cert != have_key)
                return err_set(-EINVAL, EX_CONFIG, "kubeconfig %s: %s has a client %s but no client %s",
                               c->path, what, have_cert ? "certificate" : "key",
                               have_cert ? "key" : "certificate");

        token = map_get_scalar(d, u, "token");
        token_file = map_get_scalar(d, u, "tokenFile");
        if (token)
                c->token = xstrdup(token);
        else if (token_file) {
                _cleanup_free_ char *path = resolve_ref(c->path, token_file);
                r = read_file_string(path, KUBECONFIG_REF_MAX_SIZE, &c->token);
                if (r < 0)
                        return err_set(r, EX_CONFIG, "cannot read tokenFile %s of %s (kubeconfig %s): %s",
                                       path, what, c->path, strerror(-r));
                strstrip(c->token);
        }
        if (!have_cert && isempty(c->token))
                return err_set(-EINVAL, EX_CONFIG,
                               "kubeconfig %s: %s has neither a client certificate nor "
                               "a token (username/password is not supported)",
                               c->path, what);
        return 0;
}

int kubeconfig_parse(const char *text, size_t size, const char *path, KubeConfig **ret) {
        _cleanup_(kubeconfig_freep) KubeConfig *c = NULL;
        _cleanup_(yaml_document_deletep) yaml_document_t *doc = NULL;
        yaml_document_t docbuf;
        yaml_parser_t parser;
        yaml_node_t *root, *ctx;
        const char *s;
        int r;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, size);
        if (!yaml_parser_load(&parser, &docbuf)) {
                r = err_set(-EBADMSG, EX_CONFIG, "kubeconfig %s is not valid YAML: %s at line %zu", path,
                            strna(parser.problem), parser.problem_mark.line + 1);
                yaml_parser_delete(&parser);
                return r;
        }
        yaml_parser_delete(&parser);
        doc = &docbuf;

        c = xcalloc(1, sizeof *c);
        c->path = xstrdup(path);
        root = yaml_document_get_root_node(doc);
        if (!root || root->type != YAML_MAPPING_NODE)
                return err_set(-EBADMSG, EX_CONFIG,
                               "kubeconfig %s is empty or not a mapping: regenerate it "
                               "(k3s writes %s)",
                               path, KUBECONFIG_DEFAULT_PATH);

        s = map_get_scalar(doc, root, "current-context");
        if (!s)
                return err_set(-EINVAL, EX_CONFIG,
                               "kubeconfig %s has no current-context: pick one with "
                               "\"kubectl --kubeconfig %s config use-context NAME\"",
                               path, path);
        c->context = xstrdup(s);

        ctx = find_named(doc, root, "contexts", "context", c->context);
        if (!ctx)
                return err_set(-ENOENT, EX_CONFIG,
                               "kubeconfig %s: current-context \"%s\" is not listed "
                               "under contexts:",
                               path, c->context);
        s = map_get_scalar(doc, ctx, "cluster");
        if (!s)
                return err_set(-EINVAL, EX_CONFIG, "kubeconfig %s: context \"%s\" names no cluster", path,
                               c->context);
        c->cluster = xstrdup(s);
        s = map_get_scalar(doc, ctx, "user");
        if (!s)
                return err_set(-EINVAL, EX_CONFIG, "kubeconfig %s: context \"%s\" names no user", path,
                               c->context);
        c->user = xstrdup(s);

        r = load_cluster(doc, root, c);
        if (r < 0)
                return r;
        r = load_user(doc, root, c);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

int kubeconfig_load(const char *path, KubeConfig **ret) {
        _cleanup_free_ char *text = NULL;
        int r;

        if (!path)
                path = KUBECONFIG_DEFAULT_PATH;
        r = read_file_string(path, KUBECONFIG_MAX_SIZE, &text);
        if (r == -ENOENT)
                return err_set(r, EX_CONFIG,
                               "no kubeconfig at %s — is k3s installed? (or set kubeconfig = "
                               "in [config])",
                               path);
        if (r < 0)
                return err_set(r, r == -EACCES ? EX_NOPERM : EX_CONFIG, "cannot read kubeconfig %s: %s%s",
                               path, strerror(-r), r == -EACCES ? " (run as root)" : "");
        r = kubeconfig_parse(text, (size_t) r, path, ret);
        /* The kubeconfig may hold the key and the token inline. */
        explicit_bzero(text, strlen(text));
        return r;
}
