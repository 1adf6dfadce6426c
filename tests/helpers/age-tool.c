/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test helper: drives the age pipe stages from the command line, so the integration tests can check
 * interoperability with the age CLI before (and independently of) the agent's own commands.
 *   age-tool -r RECIPIENT [-r RECIPIENT...]   encrypt stdin to stdout
 *   age-tool -d -i IDENTITY_FILE              decrypt stdin to stdout
 * It links only the age and fd stages (no CLI, no store): bench/age times it against the age CLI, and
 * loading all of the agent's libraries cost more than a tenth of the time of encrypting 1 GiB. */
#include <getopt.h>
#include <sysexits.h>
#include <systemd/sd-journal.h>

#include "log/log.h"
#include "pipe/pipe.h"

/* Nor does it load libsystemd and the six libraries libsystemd loads (7 ms of the 25 ms it takes to start)
 * for the journal calls in log/: these definitions take their place. log/ calls them only when stderr is
 * connected to the journal, which it never is for this helper; should it be, the message goes to stderr. */
int sd_journal_send_with_location(const char *file, const char *line, const char *func, const char *format,
                                  ...) {
        va_list ap;

        va_start(ap, format);
        vfprintf(stderr, format, ap); /* the first field, MESSAGE= */
        va_end(ap);
        fputc('\n', stderr);
        return 0;
}

int sd_journal_sendv_with_location(const char *file, const char *line, const char *func,
                                   const struct iovec *iov, int n) {
        return 0;
}

static int fail(int r, const char *what) {
        fprintf(stderr, "age-tool: %s: %s\n", what, err_message() ?: strerror(-r));
        return err_exit_code(r);
}

int main(int argc, char *argv[]) {
        _cleanup_strv_free_ char **recipients = NULL;
        const char *identity = NULL;
        bool decrypt = false;
        int c, r;

        while ((c = getopt(argc, argv, "r:di:")) >= 0)
                switch (c) {
                case 'r':
                        strv_push(&recipients, xstrdup(optarg));
                        break;
                case 'd':
                        decrypt = true;
                        break;
                case 'i':
                        identity = optarg;
                        break;
                default:
                        return EX_USAGE;
                }

        if (decrypt) {
                _cleanup_(source_freep) Source *in = source_fd_new(STDIN_FILENO), *src = NULL;
                _cleanup_(sink_freep) Sink *out = sink_fd_new(STDOUT_FILENO);
                if (!identity)
                        return EX_USAGE;
                src = source_age_new(in, identity, &r);
                if (!src)
                        return fail(r, "decrypt");
                in = NULL; /* src owns it now */
                r = pipe_pump(src, out);
                return r < 0 ? fail(r, "decrypt") : 0;
        } else {
                _cleanup_(source_freep) Source *in = source_fd_new(STDIN_FILENO);
                _cleanup_(sink_freep) Sink *out = sink_fd_new(STDOUT_FILENO), *sink = NULL;
                sink = sink_age_new(out, recipients, &r);
                if (!sink)
                        return fail(r, "encrypt");
                out = NULL; /* sink owns it now */
                r = pipe_pump(in, sink);
                return r < 0 ? fail(r, "encrypt") : 0;
        }
}
