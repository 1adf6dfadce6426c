/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "jobs/mirror.h"
#include "jobs/postgres-db.h"
#include "jobs/postgres.h"
#include "log/log.h"
#include "shared/process.h"

static int restore_postgres(CliContext *ctx, const char *id, const char *to, const char *database,
                            unsigned jobs) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(backup_list_done) BackupList l = {};
        _cleanup_free_ char *dest = NULL;
        const Manifest *m;
        int r;

        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        dest = config_job_destination(c, "postgres");
        r = store_open_location(c, dest, &s);
        if (r >= 0)
                r = backup_list_load(s, &l);
        if (r >= 0)
                r = backup_list_find(&l, id, &m);
        if (r >= 0 && database) {
                job_install_signal_handlers();
                child_cancel_flag = &job_cancel_requested;
                r = postgres_restore_database(c, s, m, database, to, jobs);
        } else if (r >= 0)
                r = postgres_restore(c, s, m, to);
        if (r < 0)
                return cli_fail(r, "restore failed");
        if (database)
                fprintf(stderr, "Restored database \"%s\" of postgres backup %s.\n", database, m->id);
        else
                fprintf(stderr, "Restored postgres backup %s.\n", m->id);
        return 0;
}

/* The mirror engine in reverse: offsite -> the [mirror] source remote, creating buckets. */
static int restore_mirror(CliContext *ctx, const char *bucket, bool dry_run) {
        _cleanup_(config_freep) Config *c = NULL;
        MirrorOptions o = { .direction = MIRROR_REVERSE, .dry_run = dry_run, .bucket = bucket };
        MirrorStats s = {};
        Progress p;
        int r;

        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        job_install_signal_handlers();
        progress_init(&p, "restoring", 0, NULL, NULL);
        p.count_objects = true;
        r = mirror_run(c, &o, &p, &s);
        progress_done(&p);
        mirror_stats_print(&s, dry_run, stdout);
        if (r < 0)
                return cli_fail(r, "restore mirror failed");
        return 0;
}

static int run_restore(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "to", required_argument, NULL, 't' },
                { "bucket", required_argument, NULL, 'b' },
                { "dry-run", no_argument, NULL, 'n' },
                { "database", required_argument, NULL, 'd' },
                { "jobs", required_argument, NULL, 'j' },
                {},
        };
        const char *to = NULL, *bucket = NULL, *what, *id, *database = NULL;
        bool dry_run = false;
        uint64_t jobs = 2;
        int o;

        while ((o = getopt_long(argc, argv, "t:b:nd:j:", options, NULL)) >= 0)
                if (o == 't')
                        to = optarg;
                else if (o == 'b')
                        bucket = optarg;
                else if (o == 'n')
                        dry_run = true;
                else if (o == 'd')
                        database = optarg;
                else if (o == 'j') {
                        if (parse_uint64(optarg, &jobs) < 0 || jobs < 1 || jobs > 64) {
                                fprintf(stderr, "skyforge-agent restore: --jobs takes 1..64, not \"%s\".\n",
                                        optarg);
                                return EX_USAGE;
                        }
                } else
                        return EX_USAGE;
        if (optind >= argc) {
                fputs("skyforge-agent restore: name what to restore (postgres).\n", stderr);
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
        id = optind + 1 < argc ? argv[optind + 1] : "latest";
        if (streq(what, "postgres")) {
                if (!to) {
                        fputs("skyforge-agent restore postgres: --to CONNINFO is required (where to restore, e.g.\n"
                              "  --to 'host=127.0.0.1 port=5432 user=postgres'); restoring over the live server is\n"
                              "  never implied.\n", stderr);
                        return EX_USAGE;
                }
                return restore_postgres(ctx, id, to, database, (unsigned) jobs);
        }
        fprintf(stderr, "skyforge-agent restore: cannot restore \"%s\" (postgres, mirror).\n", what);
        return EX_USAGE;
}

const Verb verb_restore = {
        .name = "restore",
        .args = "postgres [ID|latest] --to CONNINFO [--database NAME [--jobs N]] | "
                "mirror [--bucket B] [--dry-run]",
        .summary = "Restore a backup.",
        .help = "postgres: checks the SHA-256 of every object of the backup against its manifest first (a damaged\n"
                "backup is refused before anything reaches the server), then streams the dump through psql into\n"
                "the server named by --to. ID defaults to latest.\n"
                "mirror: copies the offsite buckets back to the [mirror] source remote (MinIO), creating buckets,\n"
                "with the mirror engine in reverse; objects already equal are skipped, nothing is deleted unless\n"
                "[mirror] delete = yes.\n"
                "  -t, --to CONNINFO   libpq connection string of the target server\n"
                "  -d, --database NAME restore postgres: only this database, from the per-database\n"
                "                      dumps (per_database = yes) with pg_restore; it is created on the\n"
                "                      target and must not exist there; missing roles come from globals\n"
                "  -j, --jobs N        restore postgres --database: parallel pg_restore jobs (default 2;\n"
                "                      fewer when the server has fewer free connections)\n"
                "  -b, --bucket B      restore mirror: only bucket B\n"
                "  -n, --dry-run       restore mirror: print what would be copied; change nothing\n",
        .run = run_restore,
};
