/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/util.h"

/* age v1 (https://age-encryption.org/v1) with X25519 recipients, byte-compatible with the age CLI.
 *
 * Errors, so callers and tests can tell the failure classes of the age test vectors apart:
 *   -EBADMSG       the header does not parse (or a matching stanza is malformed)
 *   -ENOKEY        no identity unwraps any recipient stanza
 *   -EKEYREJECTED  a file key was unwrapped but the header MAC does not match
 *   -EPROTO        the payload is truncated, tampered with or has trailing data
 * Every failure also records a message with err_set(). */

#define AGE_KEY_SIZE 32       /* X25519 scalars and points */
#define AGE_FILE_KEY_SIZE 16
#define AGE_NONCE_SIZE 16     /* payload nonce, fed to HKDF */
#define AGE_TAG_SIZE 16
#define AGE_CHUNK_SIZE 65536
#define AGE_HEADER_MAX (1024 * 1024)
#define AGE_VERSION_LINE "age-encryption.org/v1"

int age_recipient_parse(const char *s, uint8_t ret_public[static AGE_KEY_SIZE]);
int age_recipient_format(const uint8_t public[static AGE_KEY_SIZE], char **ret);
int age_identity_parse(const char *s, uint8_t ret_secret[static AGE_KEY_SIZE]);
int age_identity_format(const uint8_t secret[static AGE_KEY_SIZE], char **ret);
int age_identity_generate(uint8_t ret_secret[static AGE_KEY_SIZE]);
int age_x25519_public(const uint8_t secret[static AGE_KEY_SIZE], uint8_t ret_public[static AGE_KEY_SIZE]);

/* The X25519 identities of an identity file ("# comments", blank lines, one AGE-SECRET-KEY-1 per line). */
typedef struct AgeIdentities {
        size_t n;
        uint8_t (*secret)[AGE_KEY_SIZE];
} AgeIdentities;

void age_identities_free(AgeIdentities *ids);
DEFINE_TRIVIAL_CLEANUP_FUNC(AgeIdentities *, age_identities_free);
/* origin names the text in error messages (a file name). */
int age_identities_parse(const char *text, const char *origin, AgeIdentities **ret);
int age_identities_load(const char *path, AgeIdentities **ret);

/* Builds a header for n recipients (X25519 public keys) around file_key, MAC included. */
int age_header_build(const uint8_t (*recipients)[AGE_KEY_SIZE], size_t n,
                     const uint8_t file_key[static AGE_FILE_KEY_SIZE], char **ret, size_t *ret_len);

/* Given the header bytes (up to and including the MAC line's newline), recovers the file key with one
 * of the identities and checks the MAC. */
int age_header_unwrap(const char *header, size_t len, const AgeIdentities *ids,
                      uint8_t ret_file_key[static AGE_FILE_KEY_SIZE]);

/* Length of the header at the start of buf: 0 if the MAC line is not complete yet, -EBADMSG if
 * it cannot become a header (too long). Only finds the end; age_header_unwrap() does the parsing. */
ssize_t age_header_find_end(const char *buf, size_t len);

/* STREAM: ChaCha20-Poly1305 over 64 KiB chunks, nonce = 88-bit big-endian counter || last flag. */
typedef struct AgeStream AgeStream;
int age_stream_new(const uint8_t file_key[static AGE_FILE_KEY_SIZE],
                   const uint8_t nonce[static AGE_NONCE_SIZE],
                   bool encrypt, AgeStream **ret);
void age_stream_free(AgeStream *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(AgeStream *, age_stream_free);
uint64_t age_stream_counter(const AgeStream *s);
/* STREAM chunks are independent (the nonce is the chunk counter), so several threads can each seal or
 * open chunks with a clone of the stream, positioned with age_stream_set_counter(). */
int age_stream_clone(const AgeStream *s, AgeStream **ret);
void age_stream_set_counter(AgeStream *s, uint64_t counter);
/* Encrypts n <= AGE_CHUNK_SIZE bytes from in to out (may be the same), appending the tag: out needs
 * n + AGE_TAG_SIZE bytes. */
int age_stream_seal(AgeStream *s, const uint8_t *in, size_t n, bool last, uint8_t *out);
/* Decrypts n bytes (with tag) from in to out (n - AGE_TAG_SIZE bytes). On failure the counter stays, so
 * the caller can retry with the other value of last. */
int age_stream_open(AgeStream *s, const uint8_t *in, size_t n, bool last, uint8_t *out);

/* Canonical unpadded standard base64, as age uses in headers. */
char *age_b64_encode(const uint8_t *data, size_t n);
int age_b64_decode(const char *s, size_t len, uint8_t *out, size_t max, size_t *ret_len);
