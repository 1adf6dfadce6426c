/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "jobs/wal.h"
#include "jobs/wal-status.h"
#include "jobs/wal-spool.h"
#include "log/log.h"
#include "sys/process.h"

static int run_wal_stream(CliContext *ctx, int argc, char *argv[]) {
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        if (argc > 1)
                return cli_unexpected_argument(argv[0], argv[1]);
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;
        job_install_signal_handlers();
        child_cancel_flag = &job_cancel_requested;
        wal_status_begin(c);
        r = wal_stream(c);
        wal_status_end(c, r);
        if (r < 0)
                return cli_fail(r, "wal-stream failed");
        return 0;
}

const Verb verb_wal_stream = {
        .name = "wal-stream",
        .args = "",
        .summary = "Stream WAL into the store (skyforge-wal.service).",
        .help = "Connects to [postgres] conninfo as a physical replication client, creates or reuses the "
                "slot\n"
                "[postgres] replication_slot, and stores each completed 16 MiB WAL segment (zstd, then age "
                "with\n"
                "[postgres] recipients) under [postgres] wal_destination. The segment being written is "
                "stored\n"
                "as a .partial object every wal_flush_seconds. The server is told that WAL is safe only "
                "once\n"
                "its segment is committed in the store. SIGTERM stores the partial segment, then exits 0.\n",
        .run = run_wal_stream,
};

/* restore_command through the spool the restore fills (jobs/wal-spool.h): no configuration is read, so it
 * runs as the data directory's owner, who cannot read agent.conf, the identity or the store. */
static int wal_fetch_spool(const char *spool, bool clean, int argc, char *argv[]) {
        int r;

        if (clean) {
                if (argc != 0) {
                        fputs("skyforge-agent wal-fetch: --clean takes no FILE or PATH.\n", stderr);
                        return WAL_FETCH_EXIT_FAILED;
                }
                r = wal_spool_clean(spool);
                if (r < 0) {
                        (void) cli_fail(r, "wal-fetch --clean failed");
                        return WAL_FETCH_EXIT_FAILED;
                }
                return 0;
        }
        r = wal_spool_take(spool, argv[0], argv[1]);
        if (r == -ENOENT && !err_message()) {
                log_debug("WAL file %s is not in the store.", argv[0]);
                return WAL_FETCH_EXIT_NOT_FOUND;
        }
        if (r < 0) {
                if (err_message())
                        log_error("WAL file %s: %s", argv[0], err_message());
                else
                        log_error_errno(r, "WAL file %s: %m", argv[0]);
                return WAL_FETCH_EXIT_FAILED;
        }
        return 0;
}

static int run_wal_fetch(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = { { "spool", required_argument, NULL, 's' },
                                                  { "clean", no_argument, NULL, 'C' },
                                                  {} };
        _cleanup_(config_freep) Config *c = NULL;
        const char *spool = NULL;
        bool clean = false;
        int r, o;

        /* Every usage error exits 126 as well: PostgreSQL would take a lower status for "no such file". */
        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0)
                if (o == 's')
                        spool = optarg;
                else if (o == 'C')
                        clean = true;
                else {
                        (void) cli_bad_option(argv[0], "", options, argc, argv);
                        return WAL_FETCH_EXIT_FAILED;
                }
        if (clean && !spool) {
                fputs("skyforge-agent wal-fetch: --clean goes with --spool DIR.\n", stderr);
                return WAL_FETCH_EXIT_FAILED;
        }
        if (spool && clean)
                return wal_fetch_spool(spool, true, argc - optind, argv + optind);
        if (argc - optind != 2) {
                fputs("skyforge-agent wal-fetch: give the WAL file name and the path to write it to "
                      "(restore_command = 'skyforge-agent wal-fetch [--spool DIR] %f %p').\n",
                      stderr);
                return WAL_FETCH_EXIT_FAILED;
        }
        if (spool)
                return wal_fetch_spool(spool, false, argc - optind, argv + optind);
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return WAL_FETCH_EXIT_FAILED;
        job_install_signal_handlers();
        r = wal_fetch(c, argv[optind], argv[optind + 1]);
        if (r == -ENOENT && !err_message()) {
                log_debug("WAL file %s is not in the store.", argv[optind]);
                return WAL_FETCH_EXIT_NOT_FOUND;
        }
        if (r < 0) {
                (void) cli_fail(r, "wal-fetch failed");
                return WAL_FETCH_EXIT_FAILED;
        }
        return 0;
}

const Verb verb_wal_fetch = {
        .name = "wal-fetch",
        .args = "[--spool DIR] FILE PATH",
        .summary = "Fetch one WAL file (PostgreSQL's restore_command).",
        .help = "Writes WAL file FILE (a segment or a timeline history file) to PATH. Without --spool: from "
                "the\n"
                "store, decrypted with [postgres] identity_file and decompressed; a segment that is only "
                "stored\n"
                "as .partial is served from it. With --spool DIR (what `restore postgres --to-datadir` "
                "sets as\n"
                "restore_command): from the spool that restore fills, reading no configuration, so it "
                "runs as\n"
                "the server's user; it waits while the agent fetches FILE.\n"
                "  --spool DIR  take FILE from the spool DIR (the data directory's skyforge-wal)\n"
                "  --clean      with --spool: remove the spool (recovery_end_command)\n"
                "Exit status 1 when the store does not hold FILE (recovery ends there); 126 on any other\n"
                "failure, which makes PostgreSQL stop rather than take it for the end of WAL.\n",
        .run = run_wal_fetch,
};
