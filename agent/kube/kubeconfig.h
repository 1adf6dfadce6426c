/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "shared/util.h"

#define KUBECONFIG_DEFAULT_PATH "/etc/rancher/k3s/k3s.yaml"

/* What the client needs from a kubeconfig: the current context resolved to one cluster and one user.
 * Certificates and keys are held as PEM in memory (decoded from *-data or read from the referenced
 * files), so the client can hand them to libcurl without writing the key anywhere. */
typedef struct KubeConfig {
        char *path; /* for messages */
        char *context; /* current-context */
        char *cluster; /* the context's cluster name */
        char *user; /* the context's user name */
        char *server; /* without trailing slash */
        bool insecure_skip_tls_verify;

        char *ca_pem; /* NULL: the system's CA store */
        size_t ca_pem_size;
        char *client_cert_pem;
        size_t client_cert_pem_size;
        char *client_key_pem; /* wiped on free */
        size_t client_key_pem_size;
        char *token; /* wiped on free */
} KubeConfig;

/* Loads path (NULL: the k3s default). Errors are recorded with err_set(): a missing file suggests
 * installing k3s, unknown names and bad base64 name the entry in the file. */
int kubeconfig_load(const char *path, KubeConfig **ret);
/* The same from text in memory; path is used for messages and to resolve relative file references. */
int kubeconfig_parse(const char *text, size_t size, const char *path, KubeConfig **ret);
void kubeconfig_free(KubeConfig *c);

/* Wipes n bytes, then frees: keys and tokens should not linger in freed memory. NULL is fine. */
void kube_erase_and_free(char *p, size_t n);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeConfig *, kubeconfig_free);
