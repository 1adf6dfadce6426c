/* SPDX-License-Identifier: GPL-2.0-or-later */
/* skyforge-wal-fetch: PostgreSQL's restore_command during a restore to a moment (`restore postgres
 * --to-datadir`, `recover`). Recovery runs it once per WAL file, hundreds of times, as the data directory's
 * owner; it only moves a file out of the spool the agent fills (jobs/wal-spool-take.c, shared with
 * `skyforge-agent wal-fetch --spool`). It links against libc alone: the full agent maps 53 libraries and
 * takes 0.05-0.09 s to start on a small VM, which is most of the time recovery spends per WAL file.
 *
 *   skyforge-wal-fetch --spool DIR FILE PATH   restore_command: FILE into PATH
 *   skyforge-wal-fetch --spool DIR --clean     recovery_end_command: remove a complete spool
 *
 * Exit status as `skyforge-agent wal-fetch`: 0 done, 1 the store does not hold FILE (recovery ends there),
 * 126 anything else (PostgreSQL then stops instead of taking it for the end of WAL), usage errors too. */
#include <getopt.h>

#include "jobs/wal-spool-take.h"
#include "log/log.h"

static int usage(const char *why) {
        fprintf(stderr,
                "skyforge-wal-fetch: %s\n"
                "usage: skyforge-wal-fetch --spool DIR FILE PATH    (restore_command, with %%f %%p)\n"
                "       skyforge-wal-fetch --spool DIR --clean      (recovery_end_command)\n"
                "`skyforge-agent restore postgres --to-datadir` writes these lines into "
                "postgresql.auto.conf.\n",
                why);
        return WAL_FETCH_EXIT_FAILED;
}

static int fail(const char *what, int r) {
        fprintf(stderr, "skyforge-wal-fetch: %s: %s\n", what, err_message() ?: strerror(-r));
        return WAL_FETCH_EXIT_FAILED;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = { { "spool", required_argument, NULL, 's' },
                                                  { "clean", no_argument, NULL, 'C' },
                                                  {} };
        const char *spool = NULL;
        bool clean = false;
        int o, r;

        while ((o = getopt_long(argc, argv, "", options, NULL)) >= 0)
                if (o == 's')
                        spool = optarg;
                else if (o == 'C')
                        clean = true;
                else
                        return usage("unknown option");
        if (!spool)
                return usage("--spool DIR is required");
        if (clean) {
                if (optind != argc)
                        return usage("--clean takes no FILE or PATH");
                r = wal_spool_clean(spool);
                return r < 0 ? fail("wal-fetch --clean failed", r) : 0;
        }
        if (argc - optind != 2)
                return usage("give the WAL file name and the path to write it to");

        r = wal_spool_take(spool, argv[optind], argv[optind + 1]);
        if (r == -ENOENT && !err_message())
                return WAL_FETCH_EXIT_NOT_FOUND;
        if (r < 0) {
                _cleanup_free_ char *what = xasprintf("WAL file %s", argv[optind]);
                return fail(what, r);
        }
        return 0;
}
