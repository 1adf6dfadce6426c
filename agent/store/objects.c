/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Object checks against a manifest (verify, and every restore before anything reaches a server). Reads
 * straight from the store and hashes with OpenSSL: the pipe stages build on the store, not the reverse. */
#include <inttypes.h>
#include <openssl/evp.h>
#include <sysexits.h>

#include "log/log.h"
#include "store/objects.h"

#define VERIFY_BUFFER_SIZE (256 * 1024)

static void evp_md_ctx_freep(EVP_MD_CTX **p) {
        EVP_MD_CTX_free(*p);
}

/* Reads object name to its end: its size and SHA-256 (hex). */
static int object_digest(Store *s, const char *name, uint8_t *buf, Progress *p, uint64_t *ret_bytes,
                         char ret_hex[static 65]) {
        _cleanup_(store_reader_freep) StoreReader *rd = NULL;
        _cleanup_(evp_md_ctx_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char sum[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        uint64_t bytes = 0;
        ssize_t k;
        int r;

        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
                return err_set(-ENOMEM, EX_OSERR, "cannot set up SHA-256");
        r = store_reader_open(s, name, 0, &rd);
        if (r < 0)
                return r;
        while ((k = store_read(rd, buf, VERIFY_BUFFER_SIZE)) > 0) {
                EVP_DigestUpdate(md, buf, (size_t) k);
                bytes += (uint64_t) k;
                if (p)
                        progress_update(p, p->done + (uint64_t) k);
        }
        if (k < 0)
                return (int) k;
        EVP_DigestFinal_ex(md, sum, &len);
        for (unsigned i = 0; i < len && i < 32; i++)
                snprintf(ret_hex + 2 * i, 3, "%02x", sum[i]);
        *ret_bytes = bytes;
        return 0;
}

int backup_check_objects(Store *s, const Manifest *m, char *const *only, Progress *p, char ***problems) {
        _cleanup_free_ uint8_t *buf = xmalloc(VERIFY_BUFFER_SIZE);
        int n = 0;

        for (size_t i = 0; i < m->n_objects; i++) {
                const ManifestObject *o = m->objects + i;
                char hex[65] = "";
                uint64_t bytes = 0;
                int r;

                if (only && !strv_contains(only, o->name))
                        continue;
                r = object_digest(s, o->name, buf, p, &bytes, hex);
                if (r == -ENOENT) {
                        strv_push(problems, xasprintf("object %s/%s is missing", s->location, o->name));
                        n++;
                        continue;
                }
                if (r < 0)
                        return err_set(r, EX_IOERR, "cannot read %s/%s: %s", s->location, o->name,
                                       err_message() ?: strerror(-r));
                if (bytes != o->bytes) {
                        strv_push(problems,
                                  xasprintf("%s/%s has %" PRIu64 " bytes, the manifest says %" PRIu64
                                            " (truncated or replaced)",
                                            s->location, o->name, bytes, o->bytes));
                        n++;
                } else if (!streq(hex, o->sha256)) {
                        strv_push(problems,
                                  xasprintf("SHA-256 of %s/%s is %s, the manifest says %s (corrupt)",
                                            s->location, o->name, hex, o->sha256));
                        n++;
                }
        }
        return n;
}

int backup_verify_objects(Store *s, const Manifest *m, bool show_progress) {
        _cleanup_strv_free_ char **problems = xcalloc(1, sizeof(char *));
        Progress p = {};
        int r;

        if (show_progress)
                progress_init(&p, "verifying", m->bytes, NULL, NULL);
        r = backup_check_objects(s, m, NULL, show_progress ? &p : NULL, &problems);
        if (show_progress)
                progress_done(&p);
        if (r < 0)
                return r;
        if (r > 0)
                return err_set(-EBADMSG, EX_DATAERR,
                               "backup %s is damaged: %s; pick another backup from `skyforge-agent list`",
                               m->id, problems[0]);
        return 0;
}
