/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "conf/conf-internal.h"
#include "conf/conf.h"
#include "log/log.h"

#define R62 "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

static char tmpdir[] = "/tmp/test-conf-XXXXXX";

/* ---- helpers ---- */

typedef struct Loaded {
        int r;
        Config *c;
        ConfigProblems p;
} Loaded;

static Loaded load(const char *text) {
        Loaded l = {};
        l.r = config_load_string(text, "agent.conf", &l.c, &l.p);
        return l;
}

static void loaded_done(Loaded *l) {
        config_free(l->c);
        config_problems_done(&l->p);
}

static void dump(const Loaded *l) {
        config_problems_print(&l->p, "agent.conf", stderr);
}

/* Asserts one problem on that line with that severity whose message contains needle. */
static void expect(const Loaded *l, unsigned line, ConfigSeverity sev, const char *needle) {
        for (size_t i = 0; i < l->p.n; i++)
                if (l->p.items[i].line == line && l->p.items[i].severity == sev &&
                    strstr(l->p.items[i].message, needle))
                        return;
        dump(l);
        fail_msg("no %s on line %u containing '%s'", sev == CONFIG_ERROR ? "error" : "warning", line,
                 needle);
}

static void expect_only(const Loaded *l, unsigned line, ConfigSeverity sev, const char *needle) {
        if (l->p.n != 1) {
                dump(l);
                fail_msg("expected exactly one problem, got %zu", l->p.n);
        }
        expect(l, line, sev, needle);
        /* A deferred error (a secret file) fails only the commands that use it, not the load. */
        assert_int_equal(l->r, sev == CONFIG_ERROR && !l->p.items[0].deferred ? -EINVAL : 0);
}

static void expect_clean(const Loaded *l) {
        if (l->p.n != 0 || l->r != 0) {
                dump(l);
                fail_msg("expected no problems (r=%d)", l->r);
        }
}

static char *tmpfile_with(const char *name, const char *content, mode_t mode) {
        char *p = xasprintf("%s/%s", tmpdir, name);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write_full(fd, content, strlen(content)), 0);
        assert_int_equal(fchmod(fd, mode), 0);
        return p;
}

/* ---- defaults ---- */

static void conf_missing_default_file_gives_defaults(void **state) {
        Config *c = NULL;
        ConfigProblems p = { .n = 99 };
        _cleanup_free_ char *path = xasprintf("%s/no-such-agent.conf", tmpdir), *dest = NULL;

        assert_int_equal(config_load(path, false, &c, &p), 0);
        assert_int_equal(p.n, 0);
        assert_false(c->from_file);
        assert_string_equal(c->agent.state_dir, STATEDIR);
        assert_string_equal(c->agent.work_dir, "/var/tmp/skyforge-agent");
        assert_string_equal(c->agent.log_level, "info");
        assert_null(c->agent.healthz_url);
        assert_int_equal(c->n_remotes, 0);
        assert_false(c->postgres.present);
        assert_null(c->postgres.conninfo);
        assert_null(c->postgres.destination);
        assert_int_equal(c->postgres.retention_days, 30);
        assert_int_equal(c->postgres.keep_min, 3);
        assert_int_equal(c->postgres.compression_level, 3);
        assert_int_equal(c->postgres.compression_threads, 0);
        assert_false(c->postgres.per_database);
        assert_null(c->postgres.recipients);
        assert_string_equal(c->mirror.source, "minio");
        assert_null(c->mirror.buckets);
        assert_string_equal(c->mirror.destination, "offsite:skyforge-offsite/");
        assert_false(c->mirror.delete);
        assert_int_equal(c->mirror.transfers, 8);
        assert_true(c->mirror.multipart_threshold == 256 * 1024 * 1024);
        assert_string_equal(c->config.kubeconfig, "/etc/rancher/k3s/k3s.yaml");
        assert_int_equal(strv_length(c->config.manifests), 1);
        assert_string_equal(c->config.manifests[0], "/opt/skyforge/k8s");
        assert_null(c->config.namespaces);
        assert_int_equal(c->config.retention_days, 30);
        assert_int_equal(c->config.keep_min, 3);
        assert_int_equal(c->config.compression_level, 3);

        dest = config_job_destination(c, "postgres");
        assert_string_equal(dest, STATEDIR "/backups/postgres");
        config_free(c);
}

static void conf_missing_explicit_file_is_a_problem(void **state) {
        Config *c = NULL;
        ConfigProblems p = {};
        _cleanup_free_ char *path = xasprintf("%s/no-such-agent.conf", tmpdir);
        _cleanup_free_ char *want = xasprintf("cannot read %s: No such file or directory", path);

        assert_int_equal(config_load(path, true, &c, &p), -EINVAL);
        assert_null(c);
        assert_int_equal(p.n, 1);
        assert_int_equal(p.items[0].line, 0);
        assert_string_equal(p.items[0].message, want);
        config_problems_done(&p);
}

static void conf_remote_defaults_and_job_destination(void **state) {
        Loaded l = load("[remote.minio]\n"
                        "endpoint = http://127.0.0.1:9000\n"
                        "access_key_id = backup\n"
                        "[config]\n"
                        "recipients = " R62 "\n"
                        "manifests = /\n"
                        "kubeconfig = /dev/null\n"
                        "destination = /srv/config-backups/\n");
        const RemoteConfig *r;
        _cleanup_free_ char *pg = NULL, *cf = NULL, *mi = NULL;

        expect_clean(&l);
        r = config_find_remote(l.c, "minio");
        assert_non_null(r);
        assert_null(config_find_remote(l.c, "offsite"));
        assert_string_equal(r->region, "us-east-1");
        assert_false(r->path_style);
        assert_true(r->tls_verify);
        assert_false(r->create_bucket);
        assert_int_equal(r->max_attempts, 5);
        assert_true(r->timeout_usec == 60 * USEC_PER_SEC);
        assert_null(r->secret_access_key_file);
        assert_null(r->ca_file);

        pg = config_job_destination(l.c, "postgres");
        cf = config_job_destination(l.c, "config");
        mi = config_job_destination(l.c, "mirror");
        assert_string_equal(pg, "minio:skyforge-backups/postgres/");
        assert_string_equal(cf, "/srv/config-backups/");
        assert_string_equal(mi, "offsite:skyforge-offsite/");
        assert_true(l.c->config.present);
        assert_false(l.c->mirror.present);
        loaded_done(&l);
}

static void conf_values_and_lists_parse(void **state) {
        Loaded l = load("[agent]\n"
                        "log_level = debug\n"
                        "[remote.offsite]\n"
                        "endpoint = https://s3.eu-central-1.amazonaws.com\n"
                        "region = eu-central-1\n"
                        "access_key_id = AKIAEXAMPLE\n"
                        "path_style = yes\n"
                        "max_attempts = 7\n"
                        "timeout = 15\n"
                        "[remote.minio]\n"
                        "endpoint = http://127.0.0.1:9000\n"
                        "access_key_id = backup\n"
                        "[postgres]\n"
                        "conninfo = host=127.0.0.1 port=5432 user=postgres\n"
                        "recipients = " R62 ", " R62 "\n"
                        "compression_level = 19\n"
                        "compression_threads = 4\n"
                        "per_database = on\n"
                        "retention_days = 0\n"
                        "[mirror]\n"
                        "buckets = skyforge-backups,artifacts  terraform-state\n"
                        "transfers = 64\n"
                        "multipart_threshold = 1GiB\n"
                        "delete = true\n"
                        "[config]\n"
                        "recipients = " R62 "\n"
                        "namespaces = default kube-system\n"
                        "manifests = / /tmp\n"
                        "kubeconfig = /dev/null\n");
        const RemoteConfig *r;

        expect_clean(&l);
        assert_string_equal(l.c->agent.log_level, "debug");
        r = config_find_remote(l.c, "offsite");
        assert_non_null(r);
        assert_string_equal(r->region, "eu-central-1");
        assert_true(r->path_style);
        assert_int_equal(r->max_attempts, 7);
        assert_true(r->timeout_usec == 15 * USEC_PER_SEC);
        assert_int_equal(l.c->n_remotes, 2);
        assert_int_equal(strv_length(l.c->postgres.recipients), 2);
        assert_int_equal(l.c->postgres.compression_level, 19);
        assert_int_equal(l.c->postgres.compression_threads, 4);
        assert_true(l.c->postgres.per_database);
        assert_int_equal(l.c->postgres.retention_days, 0);
        assert_int_equal(strv_length(l.c->mirror.buckets), 3);
        assert_string_equal(l.c->mirror.buckets[2], "terraform-state");
        assert_int_equal(l.c->mirror.transfers, 64);
        assert_true(l.c->mirror.multipart_threshold == 1ULL << 30);
        assert_true(l.c->mirror.delete);
        assert_int_equal(strv_length(l.c->config.namespaces), 2);
        assert_int_equal(strv_length(l.c->config.manifests), 2);
        loaded_done(&l);
}

static void conf_names_are_case_insensitive(void **state) {
        /* iniparser lowercases section and key names: [Remote.MinIO] is remote "minio". */
        Loaded l = load("[Remote.MinIO]\n"
                        "Endpoint = http://127.0.0.1:9000\n"
                        "ACCESS_KEY_ID = Backup\n"
                        "[POSTGRES]\n"
                        "Retention_Days = 9\n");

        expect_clean(&l);
        assert_non_null(config_find_remote(l.c, "minio"));
        assert_string_equal(config_find_remote(l.c, "minio")->access_key_id, "Backup");
        assert_int_equal(l.c->postgres.retention_days, 9);
        loaded_done(&l);
}

static void conf_empty_value_means_default(void **state) {
        Loaded l = load("[postgres]\nretention_days =\nkeep_min = \"\"\n[mirror]\nsource = minio\n"
                        "destination = minio:offsite-copy/\nbuckets =\n"
                        "[remote.minio]\nendpoint = http://127.0.0.1:9000\naccess_key_id = k\n");

        expect_clean(&l);
        assert_int_equal(l.c->postgres.retention_days, 30);
        assert_int_equal(l.c->postgres.keep_min, 3);
        assert_null(l.c->mirror.buckets);
        loaded_done(&l);
}

static void conf_quoted_values_keep_comment_characters(void **state) {
        Loaded l = load("[agent]\n"
                        "healthz_url = \"https://hc.example/ping#frag\"\n"
                        "metrics_file = /var/lib/x#y.prom\n");

        /* Quoted: kept whole. Unquoted: iniparser cuts at '#', which deserves a warning. */
        expect_only(&l, 3, CONFIG_WARNING, "metrics_file: the value is cut at '#'");
        assert_string_equal(l.c->agent.healthz_url, "https://hc.example/ping#frag");
        assert_string_equal(l.c->agent.metrics_file, "/var/lib/x");
        loaded_done(&l);
}

/* ---- problem classes ---- */

static void conf_unknown_section_suggests(void **state) {
        Loaded l = load("; comment\n"
                        "\n"
                        "[postgress]\n"
                        "retention_days = 3\n"
                        "[remotes.minio]\n"
                        "endpoint = http://x\n"
                        "[backup]\n");

        expect(&l, 3, CONFIG_ERROR, "unknown section [postgress]; did you mean [postgres]?");
        expect(&l, 5, CONFIG_ERROR, "unknown section [remotes.minio]; did you mean [remote.minio]?");
        expect(&l, 7, CONFIG_ERROR, "unknown section [backup] (known: [agent], [remote.NAME]");
        /* Keys of an unknown section are not reported one by one. */
        assert_int_equal(l.p.n, 3);
        assert_int_equal(l.r, -EINVAL);
        loaded_done(&l);
}

static void conf_unknown_key_suggests(void **state) {
        Loaded l = load("[postgres]\n"
                        "retention_dys = 7\n"
                        "transfers = 4\n"
                        "colour = blue\n"
                        "[agent]\n"
                        "statedir = /x\n");

        expect(&l, 2, CONFIG_ERROR,
               "unknown key 'retention_dys' in [postgres]; did you mean 'retention_days'?");
        expect(&l, 3, CONFIG_ERROR, "unknown key 'transfers' in [postgres]; transfers belongs in [mirror]");
        expect(&l, 4, CONFIG_ERROR, "unknown key 'colour' in [postgres]");
        expect(&l, 6, CONFIG_ERROR, "did you mean 'state_dir'?");
        assert_int_equal(l.p.n, 4);
        for (size_t i = 0; i < l.p.n; i++)
                if (l.p.items[i].line == 4)
                        assert_null(strstr(l.p.items[i].message, "did you mean"));
        loaded_done(&l);
}

static void conf_bad_numbers_and_ranges(void **state) {
        Loaded l = load("[postgres]\n"
                        "retention_days = 3O\n"
                        "compression_level = 20\n"
                        "keep_min = 0\n"
                        "compression_threads = -1\n"
                        "[mirror]\n"
                        "transfers = 65\n"
                        "source = minio\n"
                        "destination = /srv/mirror\n"
                        "[remote.minio]\n"
                        "endpoint = http://127.0.0.1:9000\n"
                        "access_key_id = k\n"
                        "timeout = 99999999999999999999999\n"
                        "max_attempts = 0x10\n");

        expect(&l, 2, CONFIG_ERROR, "retention_days: '3O' is not a number (expected 0..36500)");
        expect(&l, 3, CONFIG_ERROR, "compression_level: 20 is out of range (1..19)");
        expect(&l, 4, CONFIG_ERROR, "keep_min: 0 is out of range (1..100000)");
        expect(&l, 5, CONFIG_ERROR, "compression_threads: '-1' is not a number");
        expect(&l, 7, CONFIG_ERROR, "transfers: 65 is out of range (1..64)");
        expect(&l, 13, CONFIG_ERROR, "timeout: 99999999999999999999999 is out of range (1..3600)");
        expect(&l, 14, CONFIG_ERROR, "max_attempts: '0x10' is not a number");
        assert_int_equal(l.p.n, 7);
        /* A bad value leaves the default in place. */
        assert_int_equal(l.c->postgres.retention_days, 30);
        assert_int_equal(l.c->mirror.transfers, 8);
        loaded_done(&l);
}

static void conf_bad_bool_and_size(void **state) {
        Loaded l = load("[mirror]\n"
                        "destination = /srv/m\n"
                        "source = minio\n"
                        "delete = maybe\n"
                        "multipart_threshold = 12 parsecs\n"
                        "[remote.minio]\n"
                        "endpoint = http://127.0.0.1:9000\n"
                        "access_key_id = k\n"
                        "path_style = yess\n"
                        "[postgres]\n"
                        "[mirror]\n"
                        "multipart_threshold = 1M\n");

        expect(&l, 4, CONFIG_ERROR, "delete: 'maybe' is not a boolean");
        expect(&l, 9, CONFIG_ERROR, "path_style: 'yess' is not a boolean");
        /* Same key again under a repeated section header: a duplicate, and out of range. iniparser keeps
         * only the last value, so the first one is never seen. */
        expect(&l, 12, CONFIG_ERROR, "multipart_threshold is set twice in [mirror] (also on line 5)");
        expect(&l, 12, CONFIG_ERROR, "multipart_threshold: 1M is out of range (5.0 MiB..5.0 GiB)");
        assert_int_equal(l.p.n, 4);
        {
                Loaded size = load("[mirror]\nsource=m\ndestination=/m\nmultipart_threshold = 12 parsecs\n"
                                   "[remote.m]\nendpoint=http://h\naccess_key_id=k\n");
                expect_only(&size, 4, CONFIG_ERROR, "multipart_threshold: '12 parsecs' is not a size");
                loaded_done(&size);
        }
        loaded_done(&l);
}

static void conf_bad_location_syntax(void **state) {
        Loaded l = load("[postgres]\n"
                        "destination = backups/postgres\n"
                        "[config]\n"
                        "recipients = " R62 "\n"
                        "manifests = /\n"
                        "kubeconfig = /dev/null\n"
                        "destination = minio:Skyforge_Backups/config/\n"
                        "[mirror]\n"
                        "source = minio\n"
                        "destination = s3://offsite/x\n"
                        "[remote.minio]\n"
                        "endpoint = http://127.0.0.1:9000\n"
                        "access_key_id = k\n");

        expect(&l, 2, CONFIG_ERROR,
               "destination: location 'backups/postgres' is neither REMOTE:bucket/prefix");
        expect(&l, 7, CONFIG_ERROR, "'Skyforge_Backups' is not a valid bucket name (3..63 characters");
        expect(&l, 10, CONFIG_ERROR, "destination: location 's3://offsite/x' is a URL");
        /* The field kept its default ("offsite:..." names no remote here), but one problem per key is
         * enough. */
        assert_int_equal(l.p.n, 3);
        loaded_done(&l);
}

static void conf_destination_names_undefined_remote(void **state) {
        Loaded l = load("[remote.minio]\n"
                        "endpoint = http://127.0.0.1:9000\n"
                        "access_key_id = k\n"
                        "[remote.backup2]\n"
                        "endpoint = https://s3.example\n"
                        "access_key_id = k\n"
                        "[postgres]\n"
                        "destination = offsite:skyforge-backups/postgres/\n");
        Loaded none = load("[postgres]\ndestination = minio:skyforge-backups/postgres/\n");

        expect_only(&l, 8, CONFIG_ERROR,
                    "destination: remote 'offsite' is not defined; add a [remote.offsite] section or use "
                    "one of the defined remotes: minio, backup2");
        expect_only(&none, 2, CONFIG_ERROR,
                    "destination: remote 'minio' is not defined; add a [remote.minio] section "
                    "(none is defined)");
        loaded_done(&l);
        loaded_done(&none);
}

static void conf_mirror_source_undefined(void **state) {
        Loaded l = load("[remote.offsite]\n"
                        "endpoint = https://s3.example\n"
                        "access_key_id = k\n"
                        "[mirror]\n"
                        "buckets = *\n"
                        "[remote.x]\n"
                        "endpoint = https://s3.example\n"
                        "access_key_id = k\n"
                        "[mirror]\n"
                        "source = mino\n");
        Loaded dflt = load("[remote.offsite]\n"
                           "endpoint = https://s3.example\n"
                           "access_key_id = k\n"
                           "\n"
                           "[mirror]\n");

        expect_only(&l, 10, CONFIG_ERROR, "source: remote 'mino' is not defined");
        /* Not written: the default source "minio" is checked against the section header. */
        expect_only(&dflt, 5, CONFIG_ERROR, "source: remote 'minio' (the default) is not defined");
        loaded_done(&l);
        loaded_done(&dflt);
}

static void conf_remote_endpoint_and_tls(void **state) {
        _cleanup_free_ char *ca = xasprintf("%s/missing-ca.pem", tmpdir), *text = NULL;
        Loaded l, warn;

        text = xasprintf("[remote.a]\n"
                         "endpoint = ftp://10.0.0.1\n"
                         "access_key_id = k\n"
                         "ca_file = %s\n"
                         "[remote.b]\n"
                         "region = x\n",
                         ca);
        l = load(text);
        expect(&l, 2, CONFIG_ERROR, "endpoint: 'ftp://10.0.0.1' is not an http:// or https:// URL");
        expect(&l, 4, CONFIG_ERROR, "ca_file: ");
        expect(&l, 4, CONFIG_ERROR, "No such file or directory");
        expect(&l, 5, CONFIG_ERROR, "[remote.b] has no endpoint");
        expect(&l, 5, CONFIG_ERROR, "[remote.b] has no access_key_id");
        assert_int_equal(l.p.n, 4);
        loaded_done(&l);

        /* Verification off is allowed but loud: a warning, and the configuration is usable. */
        warn = load("[remote.minio]\nendpoint = https://10.0.0.1\naccess_key_id = k\n\ntls_verify = no\n");
        expect_only(&warn, 5, CONFIG_WARNING, "tls_verify = no: [remote.minio] accepts any certificate");
        assert_false(config_find_remote(warn.c, "minio")->tls_verify);
        loaded_done(&warn);
}

static void conf_secret_files_are_checked(void **state) {
        _cleanup_free_ char *good = tmpfile_with("good.secret", "s3cr3t\n", 0600);
        _cleanup_free_ char *open_ = tmpfile_with("open.secret", "s3cr3t\n", 0644);
        _cleanup_free_ char *group = tmpfile_with("group.secret", "s3cr3t\n", 0640);
        _cleanup_free_ char *missing = xasprintf("%s/missing.secret", tmpdir);
        _cleanup_free_ char *text = NULL, *want = NULL;
        Loaded l;

        text = xasprintf("[remote.a]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n"
                         "[remote.b]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n"
                         "[remote.c]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n"
                         "[remote.d]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n"
                         "[remote.e]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n",
                         good, open_, group, missing, tmpdir);
        l = load(text);
        want = xasprintf("secret_access_key_file: secret file %s is accessible by group or others "
                         "(mode 0644); run chmod 600 %s",
                         open_, open_);
        expect(&l, 8, CONFIG_ERROR, want);
        expect(&l, 12, CONFIG_ERROR, "(mode 0640); run chmod 600");
        expect(&l, 16, CONFIG_ERROR, "does not exist");
        expect(&l, 20, CONFIG_ERROR, "is not a regular file");
        assert_int_equal(l.p.n, 4);
        /* Only the commands that use one of these remotes fail on them (config check too). */
        assert_int_equal(l.r, 0);
        assert_int_equal(config_problems_count_deferred(&l.p), 4);
        loaded_done(&l);
}

/* A deferred error beside an ordinary one: the load fails on the ordinary one. */
static void conf_deferred_errors_alone_do_not_fail_the_load(void **state) {
        _cleanup_free_ char *missing = xasprintf("%s/nope.secret", tmpdir), *text = NULL;
        Loaded l;

        text = xasprintf("[remote.a]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n"
                         "[postgres]\nconninfo = host=h passfile=%s\n",
                         missing, missing);
        l = load(text);
        assert_int_equal(l.r, 0);
        assert_int_equal(l.p.n, 2);
        assert_true(l.p.items[0].deferred && l.p.items[1].deferred);
        loaded_done(&l);

        free(text);
        text = xasprintf("[remote.a]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n"
                         "[postgres]\nretention_days = many\n",
                         missing);
        l = load(text);
        assert_int_equal(l.r, -EINVAL);
        assert_int_equal(config_problems_count_deferred(&l.p), 1);
        assert_int_equal(config_problems_count(&l.p, CONFIG_ERROR), 2);
        loaded_done(&l);

        assert_int_equal(config_check_passfile("host=h"), 0);
        free(text);
        text = xasprintf("host=h passfile=%s", missing);
        assert_int_equal(config_check_passfile(text), -ENOENT);
        assert_non_null(strstr(err_message(), "[postgres] conninfo passfile: secret file"));
}

/* Root reads everything, so an unreadable file needs an unprivileged child to show. */
static void conf_unreadable_secret_file_is_reported(void **state) {
        _cleanup_free_ char *secret = tmpfile_with("root.secret", "x\n", 0600), *text = NULL;
        pid_t pid;
        int status;

        if (geteuid() != 0)
                skip();
        assert_int_equal(chmod(tmpdir, 0755), 0);
        text = xasprintf("[remote.a]\nendpoint = http://h\naccess_key_id = k\nsecret_access_key_file = %s\n",
                         secret);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                Loaded l;
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(2);
                l = load(text);
                _exit(l.p.n == 1 && l.p.items[0].line == 4 &&
                                      strstr(l.p.items[0].message, "Permission denied (run as root")
                              ? 0
                              : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void conf_identity_file_missing(void **state) {
        _cleanup_free_ char *text = xasprintf("[postgres]\n"
                                              "recipients = " R62 "\n"
                                              "identity_file = %s/age.key\n"
                                              "[config]\n"
                                              "recipients = " R62 "\n"
                                              "manifests = /\n"
                                              "kubeconfig = /dev/null\n"
                                              "identity_file = relative/age.key\n",
                                              tmpdir);
        Loaded l = load(text);

        expect(&l, 3, CONFIG_ERROR, "identity_file: secret file /tmp/");
        expect(&l, 3, CONFIG_ERROR, "age.key does not exist");
        expect(&l, 8, CONFIG_ERROR, "identity_file: 'relative/age.key' is not an absolute path");
        assert_int_equal(l.p.n, 2);
        loaded_done(&l);
}

static void conf_conninfo_secrets(void **state) {
        _cleanup_free_ char *pass_open = tmpfile_with("pgpass-open", "*:*:*:*:x\n", 0644);
        _cleanup_free_ char *pass_ok = tmpfile_with("pgpass-ok", "*:*:*:*:x\n", 0600);
        _cleanup_free_ char *t1 = xasprintf("[postgres]\nconninfo = host=h user=u passfile=%s\n", pass_open);
        _cleanup_free_ char *t2 = xasprintf("[postgres]\nconninfo = host=h user=u passfile=%s\n", pass_ok);
        Loaded bad = load(t1), ok = load(t2);
        Loaded pw = load("[postgres]\n\nconninfo = host=h password=hunter2\n");
        Loaded uri = load("[postgres]\nconninfo = postgresql://u:hunter2@h:5432/postgres\n");
        Loaded broken = load("[postgres]\nconninfo = host='unterminated\n");

        expect_only(&bad, 2, CONFIG_ERROR, "(mode 0644); run chmod 600");
        expect(&bad, 2, CONFIG_ERROR, "libpq would ignore it");
        expect_clean(&ok);
        expect_only(&pw, 3, CONFIG_ERROR, "conninfo: contains a password; secrets are never written");
        assert_null(strstr(pw.p.items[0].message, "hunter2"));
        expect_only(&uri, 2, CONFIG_ERROR, "conninfo: contains a password");
        expect_only(&broken, 2, CONFIG_ERROR, "conninfo: ");
        loaded_done(&bad);
        loaded_done(&ok);
        loaded_done(&pw);
        loaded_done(&uri);
        loaded_done(&broken);
}

static void conf_inline_secrets_are_refused(void **state) {
        Loaded l = load("[remote.minio]\n"
                        "endpoint = http://127.0.0.1:9000\n"
                        "access_key_id = k\n"
                        "secret_access_key = hunter2\n"
                        "[postgres]\n"
                        "password = hunter2\n"
                        "api_token = abc\n");

        expect(&l, 4, CONFIG_ERROR, "secret_access_key: secrets are never written in this file");
        expect(&l, 4, CONFIG_ERROR, "secret_access_key_file = FILE, or use a systemd credential");
        expect(&l, 6, CONFIG_ERROR, "password: passwords are never written in this file");
        expect(&l, 6, CONFIG_ERROR, "passfile=FILE");
        expect(&l, 7, CONFIG_ERROR, "api_token: secrets are never written");
        assert_int_equal(l.p.n, 3);
        for (size_t i = 0; i < l.p.n; i++) {
                assert_null(strstr(l.p.items[i].message, "hunter2"));
                assert_null(strstr(l.p.items[i].message, "unknown key"));
        }
        loaded_done(&l);
}

static void conf_recipients_syntax(void **state) {
        Loaded l = load("[postgres]\n"
                        "recipients = age1short\n"
                        "[config]\n"
                        "manifests = /\n"
                        "kubeconfig = /dev/null\n"
                        "recipients = AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
                        "QQQQQQQQQQQQQQQQQQQQ\n"
                        "[postgres]\n"
                        "identity_file =\n");
        Loaded ssh = load("[postgres]\nrecipients = ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n");
        Loaded b = load("[postgres]\n"
                        "recipients = age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8b\n");
        Loaded n = load("[postgres]\nrecipients = " R62 " npub1xyz\n");

        expect(&l, 2, CONFIG_ERROR, "recipients: 'age1short' has 9 characters, an age recipient has 62");
        expect(&l, 6, CONFIG_ERROR, "is an identity (a secret key), not a recipient");
        assert_null(strstr(l.p.items[1].message, "QQQQ"));
        /* [config] is then without recipients, but the one problem with them was said already. */
        assert_int_equal(l.p.n, 2);
        expect_only(&ssh, 2, CONFIG_ERROR, "is an SSH key; only X25519 age1... recipients");
        expect_only(&b, 2, CONFIG_ERROR, "contains 'b', which bech32 does not use");
        expect_only(&n, 2, CONFIG_ERROR, "'npub1xyz' is not an age recipient");
        loaded_done(&l);
        loaded_done(&ssh);
        loaded_done(&b);
        loaded_done(&n);
}

static void conf_other_value_types(void **state) {
        Loaded l = load("[agent]\n"
                        "state_dir = var/lib/x\n"
                        "log_level = verbose\n"
                        "healthz_url = hc.example/ping\n"
                        "[config]\n"
                        "recipients = " R62 "\n"
                        "kubeconfig = /dev/null\n"
                        "manifests = /opt/k8s k8s\n"
                        "namespaces = default, Kube_System\n"
                        "[mirror]\n"
                        "source = MinIO\n"
                        "buckets = *, artifacts\n"
                        "destination = /srv/mirror\n"
                        "[remote.minio]\nendpoint = http://h\naccess_key_id = k\n");

        expect(&l, 2, CONFIG_ERROR, "state_dir: 'var/lib/x' is not an absolute path");
        expect(&l, 3, CONFIG_ERROR,
               "log_level: 'verbose' is not a log level (debug, info, notice, warning, err)");
        expect(&l, 4, CONFIG_ERROR, "healthz_url: 'hc.example/ping' is not an http:// or https:// URL");
        expect(&l, 8, CONFIG_ERROR, "manifests: 'k8s' is not an absolute path");
        expect(&l, 9, CONFIG_ERROR, "namespaces: 'Kube_System' is not a Kubernetes namespace name");
        expect(&l, 11, CONFIG_ERROR, "source: 'MinIO' is not a remote name");
        expect(&l, 12, CONFIG_ERROR, "buckets: '*' (all) cannot be combined with names");
        assert_int_equal(l.p.n, 7);
        loaded_done(&l);
}

static void conf_missing_job_inputs_are_warnings(void **state) {
        _cleanup_free_ char *text = xasprintf("[config]\n"
                                              "recipients = " R62 "\n"
                                              "manifests = %s/k8s\n"
                                              "kubeconfig = %s/k3s.yaml\n"
                                              "extra_secret_files = %s/token\n"
                                              "[postgres]\n"
                                              "pg_bindir = %s/bin\n",
                                              tmpdir, tmpdir, tmpdir, tmpdir);
        Loaded l = load(text);

        /* k3s is installed after the agent: missing cluster files only warn; a forced pg_bindir must
         * exist. */
        expect(&l, 3, CONFIG_WARNING, "manifests: ");
        expect(&l, 4, CONFIG_WARNING, "kubeconfig: ");
        expect(&l, 5, CONFIG_WARNING, "extra_secret_files: ");
        expect(&l, 7, CONFIG_ERROR, "pg_bindir: ");
        assert_int_equal(l.p.n, 4);
        assert_int_equal(l.r, -EINVAL);
        loaded_done(&l);
}

/* ---- syntax the second pass catches ---- */

static void conf_syntax_problems_keep_going(void **state) {
        Loaded l = load("top = 1\n"
                        "[agent]\n"
                        "work_dir = /srv/work\n"
                        "this is not ini\n"
                        "= orphan\n"
                        "[postgres] ; the database\n"
                        "keep_min = 5\n"
                        "[broken\n"
                        "retention_days = x\n"
                        "[mirror]\n"
                        "transfers = \\\n"
                        "   99\n"
                        "delete = yes\n"
                        "delete = no\n"
                        "destination = /srv/m\n"
                        "source = \n");

        expect(&l, 1, CONFIG_ERROR, "'top' comes before any [section]");
        expect(&l, 4, CONFIG_ERROR, "cannot parse 'this is not ini': expected 'key = value'");
        expect(&l, 5, CONFIG_ERROR, "a value without a key name before '='");
        expect(&l, 6, CONFIG_ERROR, "text after the section header '[postgres]'");
        expect(&l, 8, CONFIG_ERROR, "section header '[broken' lacks its closing ']'");
        /* A continued line counts from its first physical line; the next key keeps its own number. */
        expect(&l, 11, CONFIG_ERROR, "transfers: 99 is out of range (1..64)");
        expect(&l, 14, CONFIG_ERROR, "delete is set twice in [mirror] (also on line 13)");
        expect(&l, 16, CONFIG_ERROR, "source: remote 'minio' is not defined");
        assert_int_equal(l.p.n, 8);
        /* The rest of the file still counts. */
        assert_string_equal(l.c->agent.work_dir, "/srv/work");
        assert_int_equal(l.c->postgres.keep_min, 5);
        assert_int_equal(l.c->postgres.retention_days, 30);
        assert_false(l.c->mirror.delete);
        loaded_done(&l);
}

#define RECIPIENT "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

static size_t count_containing(const Loaded *l, const char *needle) {
        size_t n = 0;

        for (size_t i = 0; i < l->p.n; i++)
                n += !!strstr(l->p.items[i].message, needle);
        return n;
}

/* Two jobs in one location would list, count and prune each other's backups: refused with the fix. */
static void conf_jobs_sharing_a_location_are_refused(void **state) {
        Loaded same = load("[postgres]\n"
                           "destination = /srv/backups\n"
                           "[config]\n"
                           "recipients = " RECIPIENT "\n"
                           "destination = /srv//backups/./\n");
        /* The bucket root contains every prefix; two remote names for one endpoint are one server. */
        Loaded nested = load("[remote.minio]\n"
                             "endpoint = http://10.43.0.20:9000\n"
                             "access_key_id = k\n"
                             "[remote.alias]\n"
                             "endpoint = http://10.43.0.20:9000/\n"
                             "access_key_id = k\n"
                             "[postgres]\n"
                             "destination = minio:skyforge-backups\n"
                             "[config]\n"
                             "recipients = " RECIPIENT "\n"
                             "destination = alias:skyforge-backups/config/\n");
        /* The mirror writes DEST/<bucket>/<key>: all of DEST is its. */
        Loaded mirror = load("[remote.minio]\n"
                             "endpoint = http://10.43.0.20:9000\n"
                             "access_key_id = k\n"
                             "[remote.offsite]\n"
                             "endpoint = https://s3.example\n"
                             "access_key_id = k\n"
                             "[postgres]\n"
                             "destination = offsite:skyforge-offsite/skyforge-backups/postgres/\n"
                             "[mirror]\n"
                             "destination = offsite:skyforge-offsite/\n");
        /* Neighbours are fine: one name a prefix of the other is no overlap, nor another bucket or server.
         */
        Loaded apart = load("[remote.minio]\n"
                            "endpoint = http://10.43.0.20:9000\n"
                            "access_key_id = k\n"
                            "[remote.offsite]\n"
                            "endpoint = https://s3.example\n"
                            "access_key_id = k\n"
                            "[postgres]\n"
                            "destination = minio:skyforge-backups/pg/\n"
                            "[config]\n"
                            "recipients = " RECIPIENT "\n"
                            "destination = minio:skyforge-backups/pg2/\n"
                            "[mirror]\n"
                            "destination = offsite:skyforge-backups/pg/\n");

        expect(&same, 5, CONFIG_ERROR,
               "destination: config's destination /srv//backups/./ is also postgres's (/srv/backups); each "
               "job "
               "would list, count toward keep_min and delete the other's backups");
        expect(&same, 5, CONFIG_ERROR,
               "Give [config] a destination of its own that neither contains nor lies "
               "inside another job's, e.g. destination = /srv/config");
        assert_int_equal(count_containing(&same, "destination: "), 1);
        assert_int_equal(same.r, -EINVAL);

        expect(&nested, 8, CONFIG_ERROR,
               "postgres's destination minio:skyforge-backups contains config's "
               "(alias:skyforge-backups/config/)");
        expect(&nested, 8, CONFIG_ERROR, "e.g. destination = minio:skyforge-backups/postgres/");
        assert_int_equal(count_containing(&nested, "destination: "), 1);

        expect(&mirror, 10, CONFIG_ERROR,
               "mirror's destination offsite:skyforge-offsite/ contains postgres's "
               "(offsite:skyforge-offsite/skyforge-backups/postgres/)");
        assert_int_equal(count_containing(&mirror, "destination: "), 1);

        assert_int_equal(count_containing(&apart, "destination: "), 0);

        /* Through a symbolic link to a directory that exists, into a part that does not yet. */
        _cleanup_free_ char *real = xasprintf("%s/real", tmpdir), *link = xasprintf("%s/link", tmpdir),
                            *text = NULL;
        assert_int_equal(mkdir(real, 0755), 0);
        assert_int_equal(symlink(real, link), 0);
        text = xasprintf("[postgres]\ndestination = %s/backups/\n[config]\nrecipients = " RECIPIENT
                         "\ndestination = %s/backups/config\n",
                         link, real);
        Loaded linked = load(text);
        expect(&linked, 2, CONFIG_ERROR, "contains config's");
        loaded_done(&linked);
        loaded_done(&same);
        loaded_done(&nested);
        loaded_done(&mirror);
        loaded_done(&apart);
}

static void conf_long_line_is_refused(void **state) {
        _cleanup_free_ char *text = NULL, *big = xmalloc(1200);
        Loaded l;

        memset(big, 'a', 1199);
        big[1199] = 0;
        text = xasprintf("[agent]\nwork_dir = /%s\nlog_level = debug\n", big);
        l = load(text);
        expect_only(&l, 2, CONFIG_ERROR, "line longer than 1000 characters");
        assert_string_equal(l.c->agent.log_level, "debug");
        loaded_done(&l);
}

static void conf_every_problem_in_one_pass_sorted(void **state) {
        _cleanup_free_ char *open_ = tmpfile_with("open2.secret", "x\n", 0604), *text = NULL;
        Loaded l;

        text = xasprintf("[agent]\n"
                         "log_level = loud\n"                      /* 2 */
                         "[remote.minio]\n"
                         "endpoint = minio:9000\n"                 /* 4 */
                         "access_key_id = k\n"
                         "secret_access_key_file = %s\n"           /* 6 */
                         "[postgres]\n"
                         "destination = offsite:b-u-c/p\n"         /* 8 */
                         "keep_mn = 2\n"                           /* 9 */
                         "[mirorr]\n",                             /* 10 */
                         open_);
        l = load(text);
        assert_int_equal(l.r, -EINVAL);
        assert_int_equal(l.p.n, 6);
        assert_int_equal(l.p.items[0].line, 2);
        assert_int_equal(l.p.items[1].line, 4);
        assert_int_equal(l.p.items[2].line, 6);
        assert_int_equal(l.p.items[3].line, 8);
        assert_int_equal(l.p.items[4].line, 9);
        assert_int_equal(l.p.items[5].line, 10);
        expect(&l, 9, CONFIG_ERROR, "did you mean 'keep_min'?");
        expect(&l, 10, CONFIG_ERROR, "did you mean [mirror]?");
        assert_int_equal(config_problems_count(&l.p, CONFIG_ERROR), 6);
        loaded_done(&l);
}

static void conf_problems_print_format(void **state) {
        Loaded l = load("[agent]\nlog_level = x\n[remote.a]\nendpoint = http://h\naccess_key_id = k\n"
                        "tls_verify = off\n");
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        config_problems_print(&l.p, "/etc/skyforge/agent.conf", f);
        fclose(f);
        assert_string_equal(buf, "/etc/skyforge/agent.conf:2: log_level: 'x' is not a log level (debug, "
                                 "info, notice, warning, err)\n"
                                 "/etc/skyforge/agent.conf:6: warning: tls_verify = no: [remote.a] accepts "
                                 "any certificate, so anyone on the path can read and change backups; give "
                                 "the endpoint's CA with ca_file = instead\n");
        loaded_done(&l);
}

/* ---- secrets ---- */

static void conf_read_secret_file_checks_and_trims(void **state) {
        _cleanup_free_ char *good = tmpfile_with("read.secret", "abc def\r\n\n", 0600);
        _cleanup_free_ char *open_ = tmpfile_with("read-open.secret", "abc\n", 0660);
        _cleanup_free_ char *empty = tmpfile_with("empty.secret", "\n", 0400);
        _cleanup_free_ char *missing = xasprintf("%s/nope.secret", tmpdir);
        _cleanup_free_ char *s = NULL, *want = NULL;

        assert_int_equal(config_read_secret_file(good, &s), 0);
        assert_string_equal(s, "abc def");

        err_clear();
        assert_int_equal(config_read_secret_file(open_, &s), -EPERM);
        want = xasprintf("secret file %s is accessible by group or others (mode 0660); run chmod 600 %s",
                         open_, open_);
        assert_string_equal(err_message(), want);
        assert_int_equal(err_exit_code(-EPERM), EX_CONFIG);

        assert_int_equal(config_read_secret_file(missing, &s), -ENOENT);
        assert_non_null(strstr(err_message(), "does not exist"));
        assert_int_equal(config_read_secret_file(empty, &s), -EINVAL);
        assert_non_null(strstr(err_message(), "is empty"));
        assert_string_equal(s, "abc def"); /* ret untouched on failure */
}

/* ---- show and the verb ---- */

static void conf_show_prints_paths_not_secrets(void **state) {
        _cleanup_free_ char *secret = tmpfile_with("show.secret", "TOPSECRETVALUE\n", 0600), *text = NULL;
        _cleanup_free_ char *buf = NULL, *want = NULL;
        size_t len = 0;
        FILE *f;
        Loaded l;

        text = xasprintf("[remote.minio]\nendpoint = http://127.0.0.1:9000\naccess_key_id = k\n"
                         "secret_access_key_file = %s\n"
                         "[mirror]\ndestination = minio:copy/\nbuckets = a-b c-d\n",
                         secret);
        l = load(text);
        expect_clean(&l);
        f = open_memstream(&buf, &len);
        config_show(l.c, f);
        fclose(f);
        want = xasprintf("secret_access_key_file = %s\n", secret);
        assert_non_null(strstr(buf, want));
        assert_null(strstr(buf, "TOPSECRETVALUE"));
        assert_non_null(strstr(buf, "[remote.minio]\nendpoint = http://127.0.0.1:9000\n"));
        assert_non_null(strstr(buf, "region = us-east-1\n"));
        assert_non_null(strstr(buf, "timeout = 60\n"));
        assert_non_null(strstr(buf, "buckets = a-b c-d\n"));
        assert_non_null(strstr(buf, "multipart_threshold = 256MiB\n"));
        assert_non_null(strstr(buf, "destination = minio:skyforge-backups/postgres/\n"));

        /* What show prints loads back to the same configuration. */
        {
                Loaded again = load(buf);
                expect_clean(&again);
                assert_int_equal(again.c->n_remotes, 1);
                assert_int_equal(strv_length(again.c->mirror.buckets), 2);
                loaded_done(&again);
        }
        loaded_done(&l);
}

static int run_verb(const char *path, const char *sub, char **ret_out, char **ret_err) {
        _cleanup_free_ char *out_path = xasprintf("%s/verb.out", tmpdir);
        _cleanup_free_ char *err_path = xasprintf("%s/verb.err", tmpdir);
        CliContext ctx = { .config_path = path, .config_explicit = true };
        char *argv[] = { (char *) "config", (char *) sub, NULL };
        int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO), o, e, rc;

        fflush(stdout);
        fflush(stderr);
        o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        rc = verb_config.run(&ctx, 2, argv);
        fflush(stdout);
        fflush(stderr);
        dup2(saved_out, STDOUT_FILENO);
        dup2(saved_err, STDERR_FILENO);
        close(o);
        close(e);
        close(saved_out);
        close(saved_err);
        assert_true(read_file_string(out_path, 1 << 20, ret_out) >= 0);
        assert_true(read_file_string(err_path, 1 << 20, ret_err) >= 0);
        return rc;
}

static void conf_verb_check_exit_codes(void **state) {
        _cleanup_free_ char *bad = tmpfile_with("bad.conf", "[postgres]\nretention_days = x\nkeep_mn = 1\n",
                                                0644);
        _cleanup_free_ char *warn = tmpfile_with("warn.conf",
                                                 "[remote.m]\nendpoint = https://h\naccess_key_id = k\n"
                                                 "tls_verify = no\n",
                                                 0644);
        _cleanup_free_ char *good = tmpfile_with("good.conf", "[postgres]\nkeep_min = 4\n", 0644);
        _cleanup_free_ char *out = NULL, *err = NULL, *want = NULL;

        assert_int_equal(run_verb(bad, "check", &out, &err), EX_CONFIG);
        want = xasprintf("%s:2: retention_days: 'x' is not a number (expected 0..36500)\n"
                         "%s:3: unknown key 'keep_mn' in [postgres]; did you mean 'keep_min'?\n",
                         bad, bad);
        assert_string_equal(err, want);
        assert_string_equal(out, "");
        free(out), free(err), free(want);

        assert_int_equal(run_verb(warn, "check", &out, &err), EX_OK);
        want = xasprintf("%s: OK (1 warning)\n", warn);
        assert_string_equal(out, want);
        assert_non_null(strstr(err, ":4: warning: tls_verify = no"));
        free(out), free(err), free(want);

        assert_int_equal(run_verb(good, "check", &out, &err), EX_OK);
        want = xasprintf("%s: OK\n", good);
        assert_string_equal(out, want);
        assert_string_equal(err, "");
        free(out), free(err);

        assert_int_equal(run_verb(good, "show", &out, &err), EX_OK);
        assert_non_null(strstr(out, "[postgres]\nconninfo") ? out : strstr(out, "keep_min = 4\n"));
        free(out), free(err);

        assert_int_equal(run_verb(bad, "show", &out, &err), EX_CONFIG);
        assert_string_equal(out, "");
        free(out), free(err);

        assert_int_equal(run_verb(good, "frobnicate", &out, &err), EX_USAGE);
        assert_non_null(strstr(err, "unknown subcommand 'frobnicate'"));
        free(out), free(err);
        out = err = NULL;
}

/* ---- documentation matches the table ---- */

static void conf_example_file_loads_and_documents_every_key(void **state) {
        _cleanup_free_ char *path = xstrdup(TOP_SRCDIR "/conf/agent.conf");
        _cleanup_free_ char *text = NULL, *uncommented = NULL;
        _cleanup_free_ char *man = NULL;
        Config *c = NULL;
        ConfigProblems p = {};

        /* Shipped as /etc/skyforge/agent.conf, everything commented: it must load as the defaults. */
        assert_int_equal(config_load(path, true, &c, &p), 0);
        if (p.n)
                config_problems_print(&p, path, stderr);
        assert_int_equal(p.n, 0);
        config_free(c);
        config_problems_done(&p);

        assert_true(read_file_string(path, 1 << 20, &text) >= 0);
        assert_true(read_file_string(TOP_SRCDIR "/man/skyforge-agent.conf.5", 1 << 20, &man) >= 0);

        /* Every example value is valid: uncommented, only files absent on this machine are reported. */
        uncommented = xstrdup(text);
        for (char *q = uncommented; q; q = strchr(q, '\n') ? strchr(q, '\n') + 1 : NULL)
                if (q[0] == ';')
                        q[0] = ' ';
        {
                Loaded all = load(uncommented);
                for (size_t i = 0; i < all.p.n; i++)
                        if (!strstr(all.p.items[i].message, "does not exist") &&
                            !strstr(all.p.items[i].message, "No such file or directory")) {
                                dump(&all);
                                fail_msg("the uncommented example has a problem on line %u",
                                         all.p.items[i].line);
                        }
                assert_non_null(config_find_remote(all.c, "offsite"));
                assert_true(all.c->config.present);
                loaded_done(&all);
        }
        for (size_t i = 0; i < conf_n_keys; i++) {
                _cleanup_free_ char *ini = xasprintf("\n;%s = ", conf_keys[i].name);
                _cleanup_free_ char *roff = xasprintf("\n.It %s", conf_keys[i].name);
                _cleanup_free_ char *roff2 = xasprintf("\n.B %s\n", conf_keys[i].name);
                if (!strstr(text, ini))
                        fail_msg("conf/agent.conf does not show '%s' as ';%s = ...'", conf_keys[i].name,
                                 conf_keys[i].name);
                if (!strstr(man, roff) && !strstr(man, roff2))
                        fail_msg("man/skyforge-agent.conf.5 does not document '%s'", conf_keys[i].name);
        }
}

static int setup(void **state) {
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static void conf_leader_election_keys(void **state) {
        Loaded d = load("[agent]\n");
        Loaded l = load("[agent]\n"
                        "node_name = node-b\n"
                        "kubeconfig = /etc/skyforge/cluster.yaml\n"
                        "leader_election = yes\n"
                        "lease_namespace = skyforge\n"
                        "lease_duration = 15\n"
                        "min_interval = 0\n");
        Loaded over = load("[agent]\nkubeconfig = /etc/skyforge/cluster.yaml\n"
                           "[config]\nkubeconfig = /etc/skyforge/other.yaml\nrecipients = " R62 "\n");
        Loaded bad = load("[agent]\nleader_election = maybe\nlease_namespace = Kube_System\n"
                          "lease_duration = 1\nnode_name = ../node-a\n");
        Loaded id = load("[agent]\nnode_name = 20261202T050000Z\n");

        (void) state;
        expect_clean(&d);
        assert_null(d.c->agent.node_name); /* the host name, resolved when used */
        assert_string_equal(d.c->agent.kubeconfig, "/etc/rancher/k3s/k3s.yaml");
        assert_string_equal(d.c->agent.leader_election, "auto");
        assert_string_equal(d.c->agent.lease_namespace, "kube-system");
        assert_true(d.c->agent.lease_duration_usec == 60 * USEC_PER_SEC);
        assert_true(d.c->agent.min_interval_usec == 3600 * USEC_PER_SEC);
        assert_string_equal(d.c->config.kubeconfig, "/etc/rancher/k3s/k3s.yaml");

        expect_clean(&l);
        assert_string_equal(l.c->agent.node_name, "node-b");
        assert_string_equal(l.c->agent.leader_election, "yes");
        assert_string_equal(l.c->agent.lease_namespace, "skyforge");
        assert_true(l.c->agent.lease_duration_usec == 15 * USEC_PER_SEC);
        assert_true(l.c->agent.min_interval_usec == 0);
        /* [agent] kubeconfig is the config job's too, unless [config] kubeconfig overrides it. */
        assert_string_equal(l.c->config.kubeconfig, "/etc/skyforge/cluster.yaml");
        assert_string_equal(over.c->config.kubeconfig, "/etc/skyforge/other.yaml");
        assert_string_equal(over.c->agent.kubeconfig, "/etc/skyforge/cluster.yaml");

        expect(&bad, 2, CONFIG_ERROR, "leader_election: 'maybe' is not auto, yes or no");
        expect(&bad, 3, CONFIG_ERROR, "lease_namespace:");
        expect(&bad, 4, CONFIG_ERROR, "lease_duration: 1 is out of range");
        /* It names a folder and a Lease holder: never a path, never a backup id. */
        expect(&bad, 5, CONFIG_ERROR, "node_name: '../node-a' is not a node name (1 to 253 of the letters");
        assert_null(bad.c->agent.node_name);
        expect(&id, 2, CONFIG_ERROR, "node_name: '20261202T050000Z' is not a node name");
        loaded_done(&d);
        loaded_done(&l);
        loaded_done(&over);
        loaded_done(&bad);
        loaded_done(&id);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(conf_missing_default_file_gives_defaults),
                cmocka_unit_test(conf_missing_explicit_file_is_a_problem),
                cmocka_unit_test(conf_remote_defaults_and_job_destination),
                cmocka_unit_test(conf_values_and_lists_parse),
                cmocka_unit_test(conf_names_are_case_insensitive),
                cmocka_unit_test(conf_empty_value_means_default),
                cmocka_unit_test(conf_quoted_values_keep_comment_characters),
                cmocka_unit_test(conf_unknown_section_suggests),
                cmocka_unit_test(conf_unknown_key_suggests),
                cmocka_unit_test(conf_bad_numbers_and_ranges),
                cmocka_unit_test(conf_bad_bool_and_size),
                cmocka_unit_test(conf_leader_election_keys),
                cmocka_unit_test(conf_bad_location_syntax),
                cmocka_unit_test(conf_destination_names_undefined_remote),
                cmocka_unit_test(conf_mirror_source_undefined),
                cmocka_unit_test(conf_remote_endpoint_and_tls),
                cmocka_unit_test(conf_secret_files_are_checked),
                cmocka_unit_test(conf_deferred_errors_alone_do_not_fail_the_load),
                cmocka_unit_test(conf_unreadable_secret_file_is_reported),
                cmocka_unit_test(conf_identity_file_missing),
                cmocka_unit_test(conf_conninfo_secrets),
                cmocka_unit_test(conf_inline_secrets_are_refused),
                cmocka_unit_test(conf_recipients_syntax),
                cmocka_unit_test(conf_other_value_types),
                cmocka_unit_test(conf_missing_job_inputs_are_warnings),
                cmocka_unit_test(conf_syntax_problems_keep_going),
                cmocka_unit_test(conf_long_line_is_refused),
                cmocka_unit_test(conf_every_problem_in_one_pass_sorted),
                cmocka_unit_test(conf_problems_print_format),
                cmocka_unit_test(conf_read_secret_file_checks_and_trims),
                cmocka_unit_test(conf_show_prints_paths_not_secrets),
                cmocka_unit_test(conf_verb_check_exit_codes),
                cmocka_unit_test(conf_jobs_sharing_a_location_are_refused),
                cmocka_unit_test(conf_example_file_loads_and_documents_every_key),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
