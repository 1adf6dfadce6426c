/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "jobs/wal.h"
#include "jobs/wal-status.h"
#include "log/log.h"
#include "sys/process.h"

/* PostgreSQL takes any exit status up to 125 from restore_command for "no such file" and ends recovery
 * there; above 125 it stops instead. A store it cannot reach must never look like the end of WAL. */
#define WAL_FETCH_EXIT_NOT_FOUND 1
#define WAL_FETCH_EXIT_FAILED    126

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

static int run_wal_fetch(CliContext *ctx, int argc, char *argv[]) {
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        if (argc != 3) {
                fputs("skyforge-agent wal-fetch: give the WAL file name and the path to write it to "
                      "(restore_command = 'skyforge-agent wal-fetch %f %p').\n",
                      stderr);
                return EX_USAGE;
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return WAL_FETCH_EXIT_FAILED;
        job_install_signal_handlers();
        r = wal_fetch(c, argv[1], argv[2]);
        if (r == -ENOENT && !err_message()) {
                log_debug("WAL file %s is not in the store.", argv[1]);
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
        .args = "FILE PATH",
        .summary = "Fetch one WAL file from the store (PostgreSQL's restore_command).",
        .help = "Writes WAL file FILE (a segment or a timeline history file) to PATH, decrypted with\n"
                "[postgres] identity_file and decompressed; a segment that is only stored as .partial is "
                "served\n"
                "from it. Exit status 1 when the store does not hold FILE (recovery ends there); 126 on "
                "any\n"
                "other failure, which makes PostgreSQL stop rather than take it for the end of WAL.\n",
        .run = run_wal_fetch,
};
