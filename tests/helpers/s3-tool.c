/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test driver for the S3 backend, used by tests/integration/test_s3.py (not installed).
 *
 *   s3-tool CONFIG BUCKET PREFIX COMMAND [ARGS]
 *
 * CONFIG is a tiny "key = value" file with the [remote.NAME] keys (name, endpoint, region,
 * access_key_id, secret_access_key_file, path_style, tls_verify, ca_file, create_bucket, max_attempts,
 * timeout_usec, retry_time_usec).
 * Store commands: put NAME (stdin), put-abort NAME (stdin, then free without commit), get NAME [OFFSET],
 * list [PREFIX], stat NAME, rm NAME, cleanup MIN_AGE_SEC.
 * Client commands: buckets, cat KEY [OFFSET] (GetObject into a sink), head KEY,
 * put-meta KEY CONTENT_TYPE [NAME=VALUE...] (stdin), delete-many (keys on stdin, one a line).
 * Errors print err_message() and exit with its sysexits code. */
#include <inttypes.h>
#include <sysexits.h>

#include "log/log.h"
#include "store/s3/s3.h"
#include "store/store.h"

static void remote_done(RemoteConfig *r) {
        free(r->name);
        free(r->endpoint);
        free(r->region);
        free(r->access_key_id);
        free(r->secret_access_key_file);
        free(r->ca_file);
}

static int load_remote(const char *path, RemoteConfig *ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        RemoteConfig r = { .tls_verify = true, .path_style = true };
        char line[4096];

        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                char *eq = strchr(line, '='), *k, *v;
                uint64_t u;

                if (!eq || line[0] == '#' || line[0] == ';')
                        continue;
                *eq = 0;
                k = strstrip(line);
                v = strstrip(eq + 1);
                if (streq(k, "name"))
                        r.name = xstrdup(v);
                else if (streq(k, "endpoint"))
                        r.endpoint = xstrdup(v);
                else if (streq(k, "region"))
                        r.region = xstrdup(v);
                else if (streq(k, "access_key_id"))
                        r.access_key_id = xstrdup(v);
                else if (streq(k, "secret_access_key_file"))
                        r.secret_access_key_file = xstrdup(v);
                else if (streq(k, "ca_file"))
                        r.ca_file = xstrdup(v);
                else if (streq(k, "path_style"))
                        r.path_style = parse_bool(v) > 0;
                else if (streq(k, "tls_verify"))
                        r.tls_verify = parse_bool(v) > 0;
                else if (streq(k, "create_bucket"))
                        r.create_bucket = parse_bool(v) > 0;
                else if (streq(k, "max_attempts") && parse_uint64(v, &u) >= 0)
                        r.max_attempts = (unsigned) u;
                else if (streq(k, "timeout_usec") && parse_uint64(v, &u) >= 0)
                        r.timeout_usec = u;
                else if (streq(k, "retry_time_usec") && parse_uint64(v, &u) >= 0)
                        r.retry_time_usec = u;
        }
        if (!r.name)
                r.name = xstrdup("test");
        *ret = r;
        return 0;
}

static int print_entry(const StoreEntry *e, void *userdata) {
        printf("%s\t%" PRIu64 "\t%s\n", e->name, e->size, strempty(e->etag));
        return 0;
}

static int cmd_put(Store *s, const char *name, bool commit) {
        StoreWriter *w = NULL;
        static uint8_t buf[256 * 1024];
        int r;

        r = store_writer_open(s, name, &w);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                r = store_write(w, buf, (size_t) n);
                if (r < 0)
                        break;
        }
        if (r >= 0 && commit)
                r = store_writer_commit(w);
        store_writer_free(w);
        return r;
}

static int cmd_get(Store *s, const char *name, uint64_t offset) {
        StoreReader *rd = NULL;
        static uint8_t buf[256 * 1024];
        int r;

        r = store_reader_open(s, name, offset, &rd);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = store_read(rd, buf, sizeof buf);
                if (n <= 0) {
                        r = (int) n;
                        break;
                }
                r = write_full(STDOUT_FILENO, buf, (size_t) n);
                if (r < 0)
                        break;
        }
        store_reader_free(rd);
        return r;
}

static int stdout_write(Sink *s, const void *buf, size_t n) {
        return write_full(STDOUT_FILENO, buf, n);
}

typedef struct FdSource {
        Source source;
        int fd;
} FdSource;

static ssize_t fd_read(Source *s, void *buf, size_t n) {
        ssize_t k = read(((FdSource *) s)->fd, buf, n);
        return k < 0 ? -errno : k;
}

static int run_client(S3Client *c, const char *bucket, char **argv, int argc) {
        const char *cmd = argv[0];
        int r;

        if (streq(cmd, "buckets")) {
                _cleanup_strv_free_ char **names = NULL;
                r = s3_list_buckets(c, &names);
                STRV_FOREACH(n, names)
                        printf("%s\n", *n);
                return r;
        }
        if (streq(cmd, "cat") && argc >= 2) {
                Sink out = { .write = stdout_write };
                uint64_t off = 0;
                if (argc >= 3)
                        (void) parse_uint64(argv[2], &off);
                return s3_get_object(c, bucket, argv[1], off, UINT64_MAX, NULL, &out);
        }
        if (streq(cmd, "head") && argc >= 2) {
                _cleanup_(s3_object_info_done) S3ObjectInfo i = {};
                r = s3_head_object(c, bucket, argv[1], &i);
                if (r < 0)
                        return r;
                printf("size=%" PRIu64 "\netag=%s\ncontent-type=%s\n", i.size, strempty(i.etag),
                       strempty(i.content_type));
                for (size_t k = 0; i.metadata && i.metadata[k] && i.metadata[k + 1]; k += 2)
                        printf("meta:%s=%s\n", i.metadata[k], i.metadata[k + 1]);
                return 0;
        }
        if (streq(cmd, "put-meta") && argc >= 3) {
                _cleanup_strv_free_ char **meta = NULL;
                _cleanup_free_ char *etag = NULL;
                FdSource src = { .source = { .read = fd_read }, .fd = STDIN_FILENO };
                for (int k = 3; k < argc; k++) {
                        const char *eq = strchr(argv[k], '=');
                        if (!eq)
                                continue;
                        strv_push(&meta, xstrndup(argv[k], (size_t) (eq - argv[k])));
                        strv_push(&meta, xstrdup(eq + 1));
                }
                S3PutOptions o = { .content_type = argv[2], .cache_control = "no-cache", .metadata = meta };
                r = s3_put_source(c, bucket, argv[1], &src.source, &o, &etag);
                if (r >= 0)
                        printf("%s\n", etag);
                return r;
        }
        if (streq(cmd, "delete-many")) {
                _cleanup_strv_free_ char **keys = NULL;
                char line[4096];
                while (fgets(line, sizeof line, stdin)) {
                        line[strcspn(line, "\n")] = 0;
                        if (*line)
                                strv_push(&keys, xstrdup(line));
                }
                return s3_delete_objects(c, bucket, keys, strv_length(keys));
        }
        return -EUCLEAN; /* unknown command */
}

int main(int argc, char **argv) {
        _cleanup_(remote_done) RemoteConfig remote = {};
        Store *s = NULL;
        const char *cmd;
        int r;

        log_setup();
        if (argc < 5) {
                fprintf(stderr, "usage: s3-tool CONFIG BUCKET PREFIX COMMAND [ARGS]\n");
                return EX_USAGE;
        }
        r = load_remote(argv[1], &remote);
        if (r < 0) {
                fprintf(stderr, "s3-tool: cannot read %s: %s\n", argv[1], strerror(-r));
                return EX_NOINPUT;
        }
        cmd = argv[4];

        {
                _cleanup_(s3_client_freep) S3Client *c = NULL;
                if (streq(cmd, "create-bucket") || streq(cmd, "buckets") || streq(cmd, "cat") ||
                    streq(cmd, "head") || streq(cmd, "put-meta") || streq(cmd, "delete-many")) {
                        r = s3_client_new(&remote, &c);
                        if (r >= 0)
                                r = streq(cmd, "create-bucket") ? s3_create_bucket(c, argv[2])
                                                                : run_client(c, argv[2], argv + 4, argc - 4);
                        goto finish;
                }
        }

        r = store_s3_open(&remote, argv[2], argv[3], true, &s);
        if (r < 0)
                goto finish;
        if (streq(cmd, "put") && argc >= 6)
                r = cmd_put(s, argv[5], true);
        else if (streq(cmd, "put-abort") && argc >= 6)
                r = cmd_put(s, argv[5], false);
        else if (streq(cmd, "get") && argc >= 6) {
                uint64_t off = 0;
                if (argc >= 7)
                        (void) parse_uint64(argv[6], &off);
                r = cmd_get(s, argv[5], off);
        } else if (streq(cmd, "list"))
                r = store_list(s, argc >= 6 ? argv[5] : "", print_entry, NULL);
        else if (streq(cmd, "stat") && argc >= 6) {
                StoreEntry e = {};
                r = store_stat(s, argv[5], &e);
                if (r >= 0)
                        printf("%s\t%" PRIu64 "\t%s\n", e.name, e.size, strempty(e.etag));
                store_entry_done(&e);
        } else if (streq(cmd, "rm") && argc >= 6)
                r = store_remove(s, argv[5]);
        else if (streq(cmd, "cleanup") && argc >= 6) {
                uint64_t age = 0;
                (void) parse_uint64(argv[5], &age);
                r = store_cleanup(s, age * USEC_PER_SEC);
                if (r >= 0)
                        printf("%d\n", r);
        } else {
                fprintf(stderr, "s3-tool: unknown command %s\n", cmd);
                store_free(s);
                return EX_USAGE;
        }
        store_free(s);

finish:
        fflush(stdout);
        if (r == -EUCLEAN) {
                fprintf(stderr, "s3-tool: unknown command %s\n", cmd);
                return EX_USAGE;
        }
        if (r < 0) {
                fprintf(stderr, "s3-tool: %s\n", err_message() ?: strerror(-r));
                return err_exit_code(r);
        }
        return 0;
}
