/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <archive.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "jobs/config.h"
#include "jobs/context.h"
#include "jobs/postgres.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "log/log.h"
#include "pipe/pipe.h"
#include "pipe/tar.h"
#include "pipe/untar.h"
#include "store/objects.h"

#define SECRETS_MAX (256U * 1024 * 1024)

/* Encrypts what src yields to recipients, into memory: the plaintext never reaches a file. */
static int encrypt_to_memory(Source *src, char *const *recipients, uint8_t **ret_data, size_t *ret_size) {
        _cleanup_(sink_freep) Sink *mem = sink_memory_new(), *age = NULL;
        int r;

        age = sink_age_new(mem, recipients, &r);
        if (!age)
                return r;
        mem = NULL; /* age owns it now */
        r = pipe_pump(src, age);
        if (r < 0)
                return r;
        sink_memory_take(age->next, ret_data, ret_size);
        return 0;
}

static uint64_t tree_bytes;

static int tree_bytes_add(const char *path, const struct stat *st, int flag, struct FTW *f) {
        if (flag == FTW_F)
                tree_bytes += (uint64_t) st->st_size;
        return 0;
}

/* The archive names of the manifest directories, manifests/<basename>, checked before any work starts. */
static int manifest_prefixes(char *const *dirs, char ***ret, uint64_t *ret_bytes) {
        _cleanup_strv_free_ char **prefixes = xcalloc(1, sizeof(char *));
        struct stat st;

        tree_bytes = 0;
        STRV_FOREACH(d, (char **) dirs) {
                const char *base = strrchr(*d, '/');
                _cleanup_free_ char *p = NULL;

                if (stat(*d, &st) < 0)
                        return err_set(-errno, EX_NOINPUT,
                                       "cannot read manifest directory %s: %m (create it or change "
                                       "manifests = in [config]); nothing was stored", *d);
                if (!S_ISDIR(st.st_mode))
                        return err_set(-ENOTDIR, EX_CONFIG, "manifests = %s in [config] is not a directory",
                                       *d);
                p = xasprintf("manifests/%s", base && base[1] ? base + 1 : "root");
                if (strv_contains(prefixes, p))
                        return err_set(-EEXIST, EX_CONFIG,
                                       "two manifest directories in [config] share the name %s; rename one",
                                       p);
                (void) nftw(*d, tree_bytes_add, 16, FTW_PHYS);
                strv_push(&prefixes, TAKE_PTR(p));
        }
        *ret = TAKE_PTR(prefixes);
        *ret_bytes = tree_bytes;
        return 0;
}

static int export_write(const void *p, size_t n, void *userdata) {
        return sink_write(userdata, p, n);
}

/* The Secrets export, encrypted as it is written: the plaintext List never exists as one text, and the
 * ciphertext buffer is sized once from the text's length (age adds a header and 16 bytes per 64 KiB). */
static int export_secrets(const ConfigJobConfig *cc, uint8_t **ret_data, size_t *ret_size, size_t *ret_count,
                          char **ret_server) {
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        _cleanup_(kube_export_freep) KubeExport *e = NULL;
        _cleanup_(sink_freep) Sink *mem = NULL, *age = NULL;
        uint64_t size;
        size_t count;
        int r;

        r = kube_client_open(cc->kubeconfig, &client);
        if (r < 0)
                return r;
        r = kube_export_secrets(client, cc->namespaces, &e);
        if (r < 0)
                return r;
        count = kube_export_count(e);
        size = kube_export_size(e);
        mem = sink_memory_new_sized(
                (size_t) (size + (size / (64 * 1024) + 2) * 16 + 256 * (strv_length(cc->recipients) + 1)));
        age = sink_age_new(mem, cc->recipients, &r);
        if (!age)
                return r;
        mem = NULL; /* age owns it now */
        r = kube_export_write(e, export_write, age);
        if (r >= 0)
                r = sink_finish(age);
        if (r < 0)
                return r;
        sink_memory_take(age->next, ret_data, ret_size);
        *ret_count = count;
        *ret_server = xstrdup(kube_client_server(client));
        return 0;
}

static int add_extra_secret_file(TarWriter *tar, const char *path, char *const *recipients,
                                  json_object *names) {
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ char *member = NULL;
        const char *base = strrchr(path, '/');
        size_t size;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return err_set(-errno, errno == EACCES ? EX_NOPERM : EX_NOINPUT,
                               "cannot read %s (extra_secret_files in [config]): %m; nothing was stored",
                               path);
        src = source_fd_new(fd);
        r = encrypt_to_memory(src, recipients, &data, &size);
        if (r < 0)
                return r;
        member = xasprintf("secrets/%s.age", base ? base + 1 : path);
        for (size_t i = 0; i < json_object_array_length(names); i++)
                if (streq(json_object_get_string(json_object_array_get_idx(names, i)), member))
                        return err_set(-EEXIST, EX_CONFIG,
                                       "two extra_secret_files in [config] share the name %s", member);
        json_object_array_add(names, json_object_new_string(member));
        return tar_writer_add_data(tar, member, data, size, 0600);
}

static int config_backup(JobContext *ctx, Manifest *m) {
        const ConfigJobConfig *cc = &ctx->config->config;
        _cleanup_(store_writer_freep) StoreWriter *w = NULL;
        _cleanup_(tar_writer_freep) TarWriter *tar = NULL;
        _cleanup_strv_free_ char **prefixes = NULL;
        _cleanup_free_ uint8_t *secrets = NULL;
        _cleanup_free_ char *name = NULL, *server = NULL;
        json_object *extra_members = NULL, *details, *contents;
        Digest stored = {}, raw = {};
        size_t secrets_size = 0, n_secrets = 0;
        uint64_t estimate = 0;
        Sink *chain, *stage;
        int r;

        if (strv_isempty(cc->recipients))
                return err_set(-ENOKEY, EX_CONFIG,
                               "[config] has no recipients; the Secrets export is always encrypted: add "
                               "recipients = age1... (skyforge-agent keygen makes a key pair); nothing was "
                               "stored");
        r = manifest_prefixes(cc->manifests, &prefixes, &estimate);
        if (r < 0)
                return r;

        progress_init(&ctx->progress, "exporting Secrets", 0, ctx->config->agent.state_dir, ctx->state);
        progress_flush(&ctx->progress);
        r = export_secrets(cc, &secrets, &secrets_size, &n_secrets, &server);
        progress_done(&ctx->progress);
        if (r < 0)
                return r;
        log_info("Exported %zu Secrets from %s, encrypted to %zu recipient(s).", n_secrets, server,
                 strv_length(cc->recipients));

        name = xasprintf("%s.tar.zst", ctx->id);
        r = store_writer_open(ctx->store, name, &w);
        if (r < 0)
                return r;
        chain = sink_digest_new(sink_store_new(w), &stored);
        stage = sink_zstd_new(chain, cc->compression_level, 0, &r);
        if (!stage) {
                sink_free(chain);
                return r;
        }
        progress_init(&ctx->progress, "archiving", estimate + secrets_size, ctx->config->agent.state_dir,
                      ctx->state);
        chain = sink_progress_new(sink_digest_new(stage, &raw), &ctx->progress);
        r = tar_writer_new(chain, &tar);
        if (r < 0) {
                progress_done(&ctx->progress);
                return r;
        }

        extra_members = json_object_new_array();
        for (size_t i = 0; prefixes[i] && r >= 0; i++)
                r = tar_writer_add_tree(tar, cc->manifests[i], prefixes[i]);
        if (r >= 0)
                r = tar_writer_add_data(tar, CONFIG_SECRETS_MEMBER, secrets, secrets_size, 0600);
        STRV_FOREACH(f, cc->extra_secret_files)
                if (r >= 0)
                        r = add_extra_secret_file(tar, *f, cc->recipients, extra_members);
        if (r >= 0 && job_cancel_requested)
                r = err_set(-ECANCELED, EX_TEMPFAIL, "job config was cancelled; no backup was written");
        if (r >= 0)
                r = tar_writer_finish(tar);
        progress_done(&ctx->progress);
        if (r >= 0)
                r = store_writer_commit(w);
        if (r < 0) {
                json_object_put(extra_members);
                return r;
        }

        manifest_add_object(m, name, stored.bytes, stored.sha256_hex);
        m->raw_bytes = raw.bytes;
        m->compression = xstrdup("zstd");
        m->compression_level = cc->compression_level;
        /* The archive itself is plain tar.zst; its secrets/ members are age files to these recipients. */
        m->recipients = strv_copy(cc->recipients);
        m->tool = xstrdup("libarchive");
        m->tool_version = xstrdup(archive_version_string());
        details = json_object_new_object();
        contents = json_object_new_array();
        STRV_FOREACH(e, (char **) tar_writer_entries(tar))
                json_object_array_add(contents, json_object_new_string(*e));
        json_object_object_add(details, "contents", contents);
        json_object *encrypted = json_object_new_array();
        json_object_array_add(encrypted, json_object_new_string(CONFIG_SECRETS_MEMBER));
        for (size_t i = 0; i < json_object_array_length(extra_members); i++) {
                json_object *member = json_object_array_get_idx(extra_members, i);
                json_object_array_add(encrypted, json_object_get(member));
        }
        json_object_put(extra_members);
        json_object_object_add(details, "encrypted_members", encrypted);
        json_object_object_add(details, "secrets", json_object_new_uint64(n_secrets));
        json_object_object_add(details, "kubernetes_server", json_object_new_string(server));
        json_object *dirs = json_object_new_array();
        STRV_FOREACH(d, cc->manifests)
                json_object_array_add(dirs, json_object_new_string(*d));
        json_object_object_add(details, "manifests", dirs);
        m->extra = details;
        return 0;
}

const JobDefinition job_config = {
        .cluster_wide = true,
        .name = "config",
        .has_retention = true,
        .object_suffixes = (const char *const[]){ ".tar.zst", NULL },
        .backup = config_backup,
};

/* Checks every object of backup m first, then opens its archive for reading. */
static int archive_open(Store *s, const Manifest *m, TarReader **ret) {
        const ManifestObject *o = NULL;
        StoreReader *rd = NULL;
        int r;

        for (size_t i = 0; i < m->n_objects; i++)
                if (endswith(m->objects[i].name, ".tar.zst"))
                        o = m->objects + i;
        if (!o)
                return err_set(-ENOENT, EX_DATAERR, "backup %s has no archive (.tar.zst)", m->id);
        r = backup_verify_objects(s, m, false);
        if (r < 0)
                return r;
        r = store_reader_open(s, o->name, 0, &rd);
        if (r < 0)
                return r;
        return tar_reader_new(source_zstd_new(source_store_new(rd)), ret);
}

int config_restore_to(const Config *c, Store *s, const Manifest *m, const char *dir, FILE *out) {
        _cleanup_(tar_reader_freep) TarReader *tar = NULL;
        _cleanup_strv_free_ char **entries = NULL;
        int r;

        r = archive_open(s, m, &tar);
        if (r < 0)
                return r;
        r = tar_reader_extract(tar, dir, &entries);
        if (r < 0)
                return r;
        STRV_FOREACH(e, entries)
                fprintf(out, "%s/%s\n", dir, *e);
        if (strv_contains(entries, CONFIG_SECRETS_MEMBER))
                fprintf(out, "%s/%s is still encrypted: apply it with skyforge-agent restore config "
                             "--apply-secrets %s, or by hand with\n"
                             "  age -d -i KEY %s/%s | kubectl apply -f -\n",
                        dir, CONFIG_SECRETS_MEMBER, m->id, dir, CONFIG_SECRETS_MEMBER);
        return 0;
}

/* Decrypts the Secrets export of backup m into a parsed List. */
static int secrets_load(const Config *c, Store *s, const Manifest *m, json_object **ret) {
        _cleanup_(tar_reader_freep) TarReader *tar = NULL;
        _cleanup_(source_freep) Source *src = NULL;
        _cleanup_(sink_freep) Sink *mem = sink_memory_new();
        _cleanup_free_ uint8_t *cipher = NULL, *plain = NULL;
        json_tokener *tok;
        json_object *list, *items;
        size_t cipher_size, plain_size;
        int r;

        r = archive_open(s, m, &tar);
        if (r < 0)
                return r;
        r = tar_reader_read_member(tar, CONFIG_SECRETS_MEMBER, SECRETS_MAX, &cipher, &cipher_size);
        if (r == -ENOENT)
                return err_set(r, EX_DATAERR, "backup %s has no %s", m->id, CONFIG_SECRETS_MEMBER);
        if (r < 0)
                return r;
        r = job_source_decrypt(source_memory_new(cipher, cipher_size), m, c->config.identity_file, "config",
                               &src);
        if (r < 0)
                return r;
        r = pipe_pump(src, mem);
        if (r < 0)
                return r;
        sink_memory_take(mem, &plain, &plain_size);
        tok = json_tokener_new();
        list = json_tokener_parse_ex(tok, (const char *) plain, (int) plain_size);
        json_tokener_free(tok);
        OPENSSL_cleanse(plain, plain_size);
        if (!list || !json_object_object_get_ex(list, "items", &items) ||
            !json_object_is_type(items, json_type_array)) {
                json_object_put(list);
                return err_set(-EBADMSG, EX_DATAERR, "the Secrets export of backup %s is not a v1 List",
                               m->id);
        }
        *ret = list;
        return 0;
}

static const char *secret_field(json_object *secret, const char *key) {
        json_object *meta = NULL, *v = NULL;

        json_object_object_get_ex(secret, "metadata", &meta);
        json_object_object_get_ex(meta, key, &v);
        return json_object_get_string(v) ?: "?";
}

int config_apply_secrets(const Config *c, Store *s, const Manifest *m, bool dry_run, FILE *out) {
        _cleanup_(kube_client_freep) KubeClient *client = NULL;
        _cleanup_(failure_done) Failure first = {};
        json_object *list = NULL, *items;
        size_t n, failed = 0;
        int r;

        r = secrets_load(c, s, m, &list);
        if (r < 0)
                return r;
        r = kube_client_open(c->config.kubeconfig, &client);
        if (r < 0) {
                json_object_put(list);
                return r;
        }
        json_object_object_get_ex(list, "items", &items);
        n = json_object_array_length(items);
        for (size_t i = 0; i < n; i++) {
                json_object *secret = json_object_array_get_idx(items, i);
                KubeApplyResult res;

                r = kube_apply_secret(client, secret, dry_run, &res);
                if (r < 0) {
                        fprintf(out, "failed    %s/%s: %s\n", secret_field(secret, "namespace"),
                                secret_field(secret, "name"), err_message() ?: strerror(-r));
                        failed++;
                        failure_capture(&first, r); /* keeps the first */
                        continue;
                }
                fprintf(out, "%-9s %s/%s%s\n", kube_apply_result_to_string(res),
                        secret_field(secret, "namespace"), secret_field(secret, "name"),
                        dry_run ? " (dry run)" : "");
        }
        json_object_put(list);
        if (failed > 0)
                return err_set(first.error, first.exit_code,
                               "%zu of %zu Secrets of backup %s could not be applied; the first: %s",
                               failed, n, m->id, failure_message(&first));
        return (int) n;
}
