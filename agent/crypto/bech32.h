/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bech32 (BIP 173) as age uses it: no 90-character limit (identities are longer), checksum constant 1
 * (not bech32m), all-lower or all-upper case but never mixed. The human-readable part is returned in
 * lower case, so "AGE-SECRET-KEY-1..." decodes to hrp "age-secret-key-". */

/* Encodes data (8-bit groups) under hrp; upper = true gives the all-upper-case form age uses for
 * identities. Returns 0 or -EINVAL (hrp empty, mixed case, or out of range characters). */
int bech32_encode(const char *hrp, const uint8_t *data, size_t len, bool upper, char **ret);

/* Decodes s. Returns 0, or -EINVAL for mixed case, bad characters, a bad checksum or bad padding. */
int bech32_decode(const char *s, char **ret_hrp, uint8_t **ret_data, size_t *ret_len);
