/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdio.h>

#include "conf/conf.h"
#include "store/manifest.h"
#include "store/store.h"

/* The member of a config backup that holds the Secrets export, age-encrypted. */
#define CONFIG_SECRETS_MEMBER "secrets/secrets.json.age"

/* Extracts the archive of config backup m into dir: the manifests and the still-encrypted Secrets. */
int config_restore_to(const Config *c, Store *s, const Manifest *m, const char *dir, FILE *out);

/* Decrypts the Secrets export of backup m with [config] identity_file and creates or replaces each
 * Secret through the API of [config] kubeconfig, printing one line per Secret to out. */
int config_apply_secrets(const Config *c, Store *s, const Manifest *m, bool dry_run, FILE *out);
