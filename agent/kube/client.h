/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>

#include "kube/kubeconfig.h"

/* A small client for the Kubernetes API's core/v1 Secrets, on libcurl. Client certificate, key and CA
 * are handed to libcurl as in-memory blobs: the key is never written anywhere. */
typedef struct KubeClient KubeClient;

typedef enum KubeApplyResult {
        KUBE_APPLY_CREATED,
        KUBE_APPLY_REPLACED,
        KUBE_APPLY_UNCHANGED,
} KubeApplyResult;

const char *kube_apply_result_to_string(KubeApplyResult r); /* "created", "replaced", "unchanged" */

int kube_client_new(const KubeConfig *config, KubeClient **ret);
/* kubeconfig_load() + kube_client_new(): a client for the kubeconfig at path. */
int kube_client_open(const char *kubeconfig, KubeClient **ret);
/* A DNS-1123 label (max 63: namespaces) or subdomain (max 253: object names); false for NULL. */
bool kube_name_valid(const char *s, size_t max);
void kube_client_free(KubeClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeClient *, kube_client_free);

/* Page size for list requests (default 100); tests lower it to exercise continue tokens. */
void kube_client_set_page_size(KubeClient *c, unsigned limit);

/* All Secrets of the given namespaces (NULL: every namespace) as {"apiVersion":"v1","kind":"List",
 * "items":[...]}: each item with apiVersion/kind, without server-set fields, service-account tokens
 * skipped, sorted by namespace and name. A namespace that does not exist is an error. The result holds
 * Secret values in memory only; the caller encrypts it and drops it. */
int kube_list_secrets(KubeClient *c, char *const *namespaces, json_object **ret_list);

/* The most Secrets text an export may hold: a config backup's Secrets member is read back into memory
 * (at most 256 MiB of ciphertext). */
#define KUBE_EXPORT_MAX (240U << 20)

/* Takes the next piece of an export; < 0 stops it with that error. */
typedef int (*KubeWriteFunc)(const void *p, size_t n, void *userdata);

/* The List of kube_list_secrets(), for a caller that encrypts it as it is written: the Secrets are held
 * once (as the values of their pages; each page is parsed as it arrives and the rest of it freed), and
 * kube_export_write() produces the JSON text piece by piece, escaping values in place and dropping each
 * Secret once written, so no text of the whole List, and no copy of a value, is ever made. Fails with
 * -EFBIG beyond KUBE_EXPORT_MAX. */
typedef struct KubeExport KubeExport;
int kube_export_secrets(KubeClient *c, char *const *namespaces, KubeExport **ret);
size_t kube_export_count(const KubeExport *e);
uint64_t kube_export_size(const KubeExport *e); /* bytes kube_export_write() will write */
int kube_export_write(KubeExport *e, KubeWriteFunc write, void *userdata); /* once */
void kube_export_free(KubeExport *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeExport *, kube_export_free);

/* Whether the credentials may list Secrets in the namespaces (NULL: all), with one list of at most one
 * Secret each (`config check --connect`); err_set() naming user, kubeconfig and fix otherwise. */
int kube_check_list_secrets(KubeClient *c, char *const *namespaces);
/* One GET of path (a list with ?limit=1): 0 when it is allowed, else the API's Status as the error
 * ("may not WHAT"). */
int kube_check_list(KubeClient *c, const char *path, const char *what);

/* Creates the Secret, or replaces it when one of that name exists and differs. dry_run asks the API
 * server to check everything and persist nothing (dryRun=All). */
int kube_apply_secret(KubeClient *c, json_object *secret, bool dry_run, KubeApplyResult *ret);

/* The pieces of the export, exported for the unit tests. */
/* A new object: apiVersion and kind first, then the item without server-set metadata. */
json_object *kube_secret_export(json_object *item);
bool kube_secret_is_service_account_token(json_object *secret);
void kube_secrets_sort(json_object *items);
/* Turns one SecretList page's items into export items: strips, skips tokens, appends to out. */
void kube_secrets_collect(json_object *page_items, json_object *out);

/* ---- any API group (Leases, Nodes) ---- */

/* Caps each request (connect and transfer) at usec (default: 10 s to connect, 120 s in all). */
void kube_client_set_timeout(KubeClient *c, uint64_t usec);
/* NULL (default): the process-wide cancel_requested() stops requests; set: only *flag does. */
void kube_client_set_cancel(KubeClient *c, const volatile sig_atomic_t *flag);
const char *kube_client_server(const KubeClient *c);
const char *kube_client_kubeconfig_path(const KubeClient *c);

typedef struct KubeReply {
        long status;
        json_object *json;  /* NULL when the body is not JSON */
        uint64_t date_usec; /* the API server's Date header (usec since the epoch), 0 when missing */
} KubeReply;
void kube_reply_done(KubeReply *reply);

/* One request of any status (the caller judges it); < 0 with err_set() when no reply came (cannot
 * connect, timed out, cancelled). */
int kube_request_json(KubeClient *c, const char *method, const char *path, json_object *body,
                      KubeReply *ret);
/* err_set() for a reply that is not what was wanted, with the API server's message and a hint. */
int kube_reply_error(KubeClient *c, const KubeReply *reply, const char *what);

/* An HTTP Date header value (IMF-fixdate) to usec since the epoch. */
int kube_parse_http_date(const char *s, size_t n, uint64_t *ret_usec);
