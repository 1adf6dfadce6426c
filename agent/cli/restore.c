/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>

#include "cli/cli.h"
#include "cli/restore-pitr.h"
#include "jobs/config.h"
#include "jobs/job.h"
#include "jobs/mirror.h"
#include "jobs/postgres-db.h"
#include "jobs/postgres.h"
#include "jobs/volumes.h"
#include "jobs/volumes-nodes.h"
#include "log/log.h"
#include "pg/pg.h"
#include "sys/process.h"

typedef enum RestoreAction {
        RESTORE_POSTGRES,
        RESTORE_POSTGRES_DATABASE,
        RESTORE_CONFIG_TO,
        RESTORE_CONFIG_SECRETS,
        RESTORE_VOLUMES,
} RestoreAction;

typedef struct RestoreArgs {
        const char *id;
        const char *to;
        bool dry_run;
        const char *database; /* RESTORE_POSTGRES_DATABASE */
        unsigned jobs;
        const char *volume; /* RESTORE_VOLUMES */
        const char *node; /* RESTORE_VOLUMES: another node's folder, "." the shared one; NULL: found by id */
} RestoreArgs;

/* What a restore did: rendered as the lines on stdout and stderr, or (--json) as one object
 * {job, action, id, target, database, dry_run, count, output, result, error, exit_code}. */
typedef struct RestoreResult {
        const char *job;
        const char *action;
        const char *id; /* the backup restored (resolved from latest), or what was asked for */
        char *target;   /* conninfo without its password, or the directory */
        const char *database;
        const char *bucket;
        bool dry_run;
        int count; /* Secrets applied or checked */
        char *output;  /* what the restore printed on stdout (file names, per-Secret lines, mirror stats) */
        size_t output_size;
        Failure failure;
} RestoreResult;

static void restore_result_done(RestoreResult *res) {
        free(res->target);
        free(res->output);
        failure_done(&res->failure);
}

static json_object *restore_result_to_json(const RestoreResult *res) {
        json_object *o = json_object_new_object(), *lines = json_object_new_array();
        _cleanup_strv_free_ char **l = strv_split(strempty(res->output), "\n");

        json_object_object_add(o, "job", json_object_new_string(res->job));
        json_object_object_add(o, "action", json_object_new_string(res->action));
        json_object_object_add(o, "result",
                               json_object_new_string(res->failure.error < 0 ? "failed" : "ok"));
        if (res->failure.error < 0) {
                json_object_object_add(o, "error", json_object_new_string(failure_message(&res->failure)));
                json_object_object_add(o, "exit_code", json_object_new_int(res->failure.exit_code));
        }
        if (res->id)
                json_object_object_add(o, "id", json_object_new_string(res->id));
        if (res->target)
                json_object_object_add(o, "target", json_object_new_string(res->target));
        if (res->database)
                json_object_object_add(o, "database", json_object_new_string(res->database));
        if (res->bucket)
                json_object_object_add(o, "bucket", json_object_new_string(res->bucket));
        json_object_object_add(o, "dry_run", json_object_new_boolean(res->dry_run));
        if (streq(res->action, "apply-secrets"))
                json_object_object_add(o, "secrets", json_object_new_int(res->count));
        STRV_FOREACH(line, l)
                json_object_array_add(lines, json_object_new_string(*line));
        json_object_object_add(o, "output", lines);
        return o;
}

/* With --json the text a restore prints on stdout goes into the result instead. */
static FILE *restore_output_open(CliContext *ctx, RestoreResult *res) {
        FILE *f;

        if (!ctx->json)
                return stdout;
        f = open_memstream(&res->output, &res->output_size);
        if (!f)
                abort(); /* like any allocation failure */
        return f;
}

static int restore_result_finish(CliContext *ctx, RestoreResult *res, FILE *out, int r) {
        failure_capture(&res->failure, r);
        if (out && out != stdout) {
                ERR_KEEP_SCOPE();
                fclose(out);
        }
        if (ctx->json)
                cli_json_print(restore_result_to_json(res));
        if (r < 0) {
                (void) failure_raise(&res->failure);
                return cli_fail(r, "restore failed");
        }
        return 0;
}

static int restore_backup(CliContext *ctx, const char *job, RestoreAction action, const RestoreArgs *a) {
        const char *id = a->id, *to = a->to;
        bool dry_run = a->dry_run;
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(backup_list_done) BackupList l = {};
        _cleanup_free_ char *dest = NULL;
        _cleanup_close_ int read_fd = -EBADF;
        _cleanup_(restore_result_done) RestoreResult res = {
                .job = job,
                .action = action == RESTORE_POSTGRES            ? "postgres"
                          : action == RESTORE_POSTGRES_DATABASE ? "database"
                          : action == RESTORE_CONFIG_TO         ? "config-files"
                          : action == RESTORE_VOLUMES           ? "volumes"
                                                                : "apply-secrets",
                .id = id,
                .target = to ? xstrdup(to) : NULL,
                .database = a->database,
                .dry_run = dry_run,
        };
        const Manifest *m = NULL;
        FILE *out;
        int r;

        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        if (res.target && job && streq(job, "postgres"))
                (void) pg_conninfo_hide_password(res.target);
        out = restore_output_open(ctx, &res);
        dest = config_job_destination(c, job);
        /* Shared with verify: prune and retention wait until the restore has read the backup. */
        r = job_read_lock(c->agent.state_dir, job, false, JOB_READ_LOCK_TIMEOUT_USEC, &read_fd);
        if (r >= 0 && action == RESTORE_VOLUMES) {
                /* From the node folders (volumes-nodes.h): this node's, another's with --node. */
                _cleanup_free_ char *vid = NULL;
                job_install_signal_handlers();
                r = volumes_restore_from_folders(c, a->node, id,
                                                 &(VolumesRestoreOptions){ .volume = a->volume, .to = to,
                                                                           .dry_run = dry_run, .out = stdout },
                                                 &vid);
                res.id = vid;
                r = restore_result_finish(ctx, &res, out, r);
                if (r == 0 && !ctx->json)
                        fprintf(stderr, "%s volumes backup %s into %s.\n",
                                dry_run ? "Checked (dry run)" : "Restored", vid, to);
                return r;
        }
        if (r >= 0)
                r = store_open_location(c, dest, &s);
        if (r >= 0)
                r = backup_list_load(s, job, &l);
        if (r >= 0)
                r = backup_list_find(&l, id, &m);
        if (r >= 0)
                switch (action) {
                case RESTORE_POSTGRES:
                        r = postgres_restore(c, s, m, to);
                        break;
                case RESTORE_POSTGRES_DATABASE:
                        job_install_signal_handlers();
                        child_cancel_flag = &job_cancel_requested;
                        r = postgres_restore_database(c, s, m, a->database, to, a->jobs);
                        break;
                case RESTORE_CONFIG_TO:
                        r = config_restore_to(c, s, m, to, out);
                        break;
                case RESTORE_CONFIG_SECRETS:
                        r = config_apply_secrets(c, s, m, dry_run, out);
                        break;
                case RESTORE_VOLUMES:
                        job_install_signal_handlers();
                        r = volumes_restore(c, s, &l, m,
                                            &(VolumesRestoreOptions){ .volume = a->volume, .to = to,
                                                                      .dry_run = dry_run, .out = stdout });
                        break;
                }
        if (m)
                res.id = m->id;
        if (r >= 0 && action == RESTORE_CONFIG_SECRETS)
                res.count = r;
        r = restore_result_finish(ctx, &res, out, r);
        if (r != 0 || ctx->json)
                return r;
        if (action == RESTORE_CONFIG_SECRETS)
                fprintf(stderr, "%s %d Secrets of config backup %s.\n",
                        dry_run ? "Checked (dry run)" : "Applied", res.count, m->id);
        else if (action == RESTORE_POSTGRES_DATABASE)
                fprintf(stderr, "Restored database \"%s\" of postgres backup %s.\n", a->database, m->id);
        else if (action == RESTORE_CONFIG_TO)
                fprintf(stderr, "Restored config backup %s into %s.\n", m->id, to);
        else if (action == RESTORE_VOLUMES)
                fprintf(stderr, "%s volumes backup %s into %s.\n", dry_run ? "Checked (dry run)" : "Restored",
                        m->id, to);
        else
                fprintf(stderr, "Restored %s backup %s.\n", job, m->id);
        return 0;
}

/* The mirror engine in reverse: offsite -> the [mirror] source remote, creating buckets where that remote
 * says create_bucket = yes. */
static int restore_mirror(CliContext *ctx, const char *bucket, bool dry_run) {
        _cleanup_(config_freep) Config *c = NULL;
        MirrorOptions o = { .direction = MIRROR_REVERSE, .dry_run = dry_run, .bucket = bucket };
        _cleanup_(restore_result_done) RestoreResult res = { .job = "mirror", .action = "mirror",
                                                             .bucket = bucket, .dry_run = dry_run };
        MirrorStats s = {};
        Progress p;
        FILE *out;
        int r;

        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        out = restore_output_open(ctx, &res);
        job_install_signal_handlers();
        progress_init(&p, "restoring", 0, NULL, NULL);
        p.count_objects = true;
        r = mirror_run(c, &o, &p, &s);
        progress_done(&p);
        mirror_stats_print(&s, dry_run, out);
        return restore_result_finish(ctx, &res, out, r);
}

static int run_restore(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "to", required_argument, NULL, 't' },
                { "bucket", required_argument, NULL, 'b' },
                { "dry-run", no_argument, NULL, 'n' },
                { "apply-secrets", no_argument, NULL, 'a' },
                { "database", required_argument, NULL, 'd' },
                { "jobs", required_argument, NULL, 'j' },
                { "json", no_argument, NULL, 'J' },
                { "volume", required_argument, NULL, 'V' },
                { "node", required_argument, NULL, 'N' },
                /* Point-in-time restore (cli/restore-pitr.c). */
                { "to-datadir", required_argument, NULL, 'D' },
                { "time", required_argument, NULL, 'T' },
                { "lsn", required_argument, NULL, 'L' },
                { "start", no_argument, NULL, 'S' },
                { "set", required_argument, NULL, 'O' },
                {},
        };
        RestorePitrArgs pitr = {};
        const char *to = NULL, *bucket = NULL, *what, *id, *database = NULL, *volume = NULL, *node = NULL;
        _cleanup_free_ char *conninfo = NULL;
        bool apply_secrets = false, dry_run = false;
        uint64_t jobs = 2;
        int o;

        while ((o = getopt_long(argc, argv, "t:b:nd:j:", options, NULL)) >= 0)
                switch (o) {
                case 't':
                        to = optarg;
                        break;
                case 'b':
                        bucket = optarg;
                        break;
                case 'n':
                        dry_run = true;
                        break;
                case 'a':
                        apply_secrets = true;
                        break;
                case 'd':
                        database = optarg;
                        break;
                case 'J':
                        ctx->json = true;
                        break;
                case 'V':
                        volume = optarg;
                        break;
                case 'N':
                        node = optarg;
                        break;
                case 'j':
                        if (parse_uint64(optarg, &jobs) < 0 || jobs < 1 || jobs > 64) {
                                fprintf(stderr, "skyforge-agent restore: --jobs takes 1..64, not \"%s\".\n",
                                        optarg);
                                return EX_USAGE;
                        }
                        break;
                case 'D':
                case 'T':
                case 'L':
                case 'S':
                case 'O':
                        if (restore_pitr_option(&pitr, o, optarg) < 0)
                                return EX_USAGE;
                        break;
                default:
                        return cli_bad_option(argv[0], "t:b:nd:j:", options, argc, argv);
                }
        if (optind >= argc) {
                fputs("skyforge-agent restore: name what to restore (postgres, config, mirror or volumes).\n", stderr);
                return EX_USAGE;
        }
        what = argv[optind];
        if (streq(what, "mirror")) {
                if (optind + 1 < argc) {
                        fputs("skyforge-agent restore mirror: takes no ID (use --bucket B for one bucket).\n",
                              stderr);
                        return EX_USAGE;
                }
                return restore_mirror(ctx, bucket, dry_run);
        }
        if (optind + 2 < argc)
                return cli_unexpected_argument(argv[0], argv[optind + 2]);
        id = optind + 1 < argc ? argv[optind + 1] : "latest";
        if (streq(what, "postgres") && restore_pitr_wanted(&pitr)) {
                if (to || database || apply_secrets || dry_run || bucket) {
                        fputs("skyforge-agent restore postgres --to-datadir: --to, --database, "
                              "--apply-secrets, --dry-run and --bucket do not apply.\n",
                              stderr);
                        return EX_USAGE;
                }
                return restore_pitr(ctx, id, &pitr);
        }
        if (restore_pitr_wanted(&pitr)) {
                fputs("skyforge-agent restore: --to-datadir, --time, --lsn, --start and --set are for "
                      "postgres.\n",
                      stderr);
                return EX_USAGE;
        }
        if (streq(what, "postgres")) {
                if (!to) {
                        fputs("skyforge-agent restore postgres: --to CONNINFO is required (where to restore, e.g.\n"
                              "  --to 'host=127.0.0.1 port=5432 user=postgres'); restoring over the live server is\n"
                              "  never implied.\n", stderr);
                        return EX_USAGE;
                }
                if (apply_secrets || dry_run) {
                        fputs("skyforge-agent restore postgres: --apply-secrets and --dry-run are for "
                              "config (and --dry-run for mirror).\n", stderr);
                        return EX_USAGE;
                }
                /* optarg points into our argv: a password in it is blanked there. */
                conninfo = postgres_conninfo_from_argv((char *) to);
                return restore_backup(ctx, "postgres", database ? RESTORE_POSTGRES_DATABASE : RESTORE_POSTGRES,
                                      &(RestoreArgs){ .id = id, .to = conninfo, .database = database,
                                                      .jobs = (unsigned) jobs });
        }
        if (streq(what, "config")) {
                if (apply_secrets == !!to) {
                        fputs("skyforge-agent restore config: give either --to DIR (extract the\n"
                              "  manifests and the still-encrypted Secrets) or --apply-secrets [--dry-run]\n"
                              "  (decrypt and apply the Secrets through the Kubernetes API).\n", stderr);
                        return EX_USAGE;
                }
                if (dry_run && !apply_secrets) {
                        fputs("skyforge-agent restore config: --dry-run goes with --apply-secrets.\n",
                              stderr);
                        return EX_USAGE;
                }
                if (database) {
                        fputs("skyforge-agent restore config: --database is for postgres.\n", stderr);
                        return EX_USAGE;
                }
                return restore_backup(ctx, "config",
                                      apply_secrets ? RESTORE_CONFIG_SECRETS : RESTORE_CONFIG_TO,
                                      &(RestoreArgs){ .id = id, .to = to, .dry_run = dry_run });
        }
        if (streq(what, "volumes")) {
                if (!to || apply_secrets || database) {
                        fputs("skyforge-agent restore volumes: [ID|latest] [--volume NAME] --to DIR [--dry-run]; "
                              "--to is required (each volume goes to DIR/NAME, or with --volume into DIR).\n",
                              stderr);
                        return EX_USAGE;
                }
                return restore_backup(ctx, "volumes", RESTORE_VOLUMES,
                                      &(RestoreArgs){ .id = id, .to = to, .dry_run = dry_run, .volume = volume,
                                                      .node = node });
        }
        if (volume || node) {
                fprintf(stderr, "skyforge-agent restore: --%s is for volumes.\n", volume ? "volume" : "node");
                return EX_USAGE;
        }
        fprintf(stderr, "skyforge-agent restore: cannot restore \"%s\" (postgres, config, mirror, volumes).\n", what);
        return EX_USAGE;
}

const Verb verb_restore = {
        .name = "restore",
        .args = "postgres [ID|latest] --to CONNINFO [--database NAME [--jobs N]] | "
                "postgres [BASE_ID|latest] --to-datadir DIR [--time TS | --lsn LSN] [--start] [--set NAME=VALUE] | "
                "config [ID|latest] --to DIR | config --apply-secrets [--dry-run] [ID|latest] | "
                "mirror [--bucket B] [--dry-run] | volumes [ID|latest] [--volume NAME] [--node NODE] --to DIR "
                "[--dry-run] | ... [--json]",
        .summary = "Restore a backup.",
        .help = "postgres and config check every object of the backup against the SHA-256 in its manifest\n"
                "first: a damaged backup is refused before anything is restored. ID defaults to latest.\n"
                "postgres: streams the dump (decrypted with [postgres] identity_file when it is encrypted)\n"
                "through psql into the server named by --to.\n"
                "postgres --database NAME: restores only that database from the per-database dumps\n"
                "(per_database = yes) with pg_restore; it is created on the target and must not exist there;\n"
                "roles it needs that the target lacks are created from the backup's globals first.\n"
                "config --to DIR: extracts the manifests and the still-encrypted secrets/ files into DIR\n"
                "(no absolute paths, no .., nothing written through symlinks, existing files are kept).\n"
                "config --apply-secrets: decrypts the Secrets export with [config] identity_file and\n"
                "creates or replaces each Secret through the API of [config] kubeconfig, printing created,\n"
                "replaced or unchanged for each; with --dry-run the API server checks and stores nothing.\n"
                "mirror: copies the offsite buckets back to the [mirror] source remote (MinIO), creating\n"
                "buckets, with the mirror engine in reverse; objects already equal are skipped, nothing is\n"
                "deleted unless [mirror] delete = yes.\n"
                "volumes --to DIR: rebuilds each volume as of the backup (its full, then its incrementals in\n"
                "order, deletions honoured) under DIR/NAME (a path volume without its leading /), or with\n"
                "--volume NAME into DIR itself; DIR (or DIR/NAME) must be new or empty. Every object of the\n"
                "chain is checked first; the tree is built beside the target and renamed into place.\n"
                "Each node keeps its volumes backups in DEST/NODE/: latest is this node's newest; an ID is\n"
                "looked for in every node's folder (this node's wins; in several others: pick with --node).\n"
                "  -t, --to CONNINFO|DIR   postgres: libpq connection string of the target; config: a directory\n"
                "      --apply-secrets     config: apply the Secrets instead of extracting\n"
                "  -d, --database NAME     postgres: restore only this database\n"
                "  -j, --jobs N            postgres --database: parallel pg_restore jobs (default 2; fewer\n"
                "                          when the server has fewer free connections)\n"
                "  -b, --bucket B          restore mirror: only bucket B\n"
                "  -V, --volume NAME       volumes: only this volume\n"
                "      --node NODE         volumes: from NODE's folder (a rebuilt node restoring its old\n"
                "                          name's backups); \".\" the backups made before node folders\n"
                "  -n, --dry-run           config --apply-secrets, mirror, volumes: change nothing (volumes:\n"
                "                          list what would be written)\n"
                "      --json              print one JSON object (job, action, id, target, result, error,\n"
                "                          output: the lines otherwise printed on stdout)\n"
                RESTORE_PITR_HELP,
        .run = run_restore,
};
