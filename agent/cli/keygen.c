/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "crypto/age.h"
#include "log/log.h"

/* The failure path of this command; prints the recorded reason like the other commands do. */
static int keygen_fail(int r, const char *what) {
        if (err_message())
                log_error("%s", err_message());
        else
                log_error_errno(r, "%s: %m", what);
        return err_exit_code(r);
}

/* RFC 3339 local time as age-keygen writes it: "2026-11-25T15:25:46+01:00", or "...Z" in UTC. */
static void format_created(char *buf, size_t len) {
        time_t t = time(NULL);
        struct tm tm;
        long off;
        size_t k;

        localtime_r(&t, &tm);
        k = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
        off = tm.tm_gmtoff / 60;
        if (off == 0)
                snprintf(buf + k, len - k, "Z");
        else
                snprintf(buf + k, len - k, "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
                         labs(off) % 60);
}

/* Like age-keygen: never overwrites, and the file is private from the first byte. */
static int open_output(const char *path, int *ret_fd) {
        int fd;

        if (!path) {
                *ret_fd = STDOUT_FILENO;
                return 0;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return err_set(-errno, errno == EEXIST ? EX_CANTCREAT : 0,
                               errno == EEXIST ? "%s already exists; refusing to overwrite it (an identity "
                                                 "file may be the only key to existing backups)"
                                               : "cannot create %s: %m",
                               path);
        *ret_fd = fd;
        return 0;
}

static int close_output(int fd, const char *path, int r) {
        if (fd == STDOUT_FILENO)
                return r;
        if (r >= 0 && fsync(fd) < 0)
                r = err_set(-errno, 0, "cannot write %s: %m", path);
        if (close(fd) < 0 && r >= 0)
                r = err_set(-errno, 0, "cannot write %s: %m", path);
        if (r < 0)
                unlink(path);
        return r;
}

static int keygen_generate(const char *output) {
        _cleanup_free_ char *identity = NULL, *recipient = NULL, *text = NULL;
        uint8_t secret[AGE_KEY_SIZE], public[AGE_KEY_SIZE];
        char created[64];
        int r, fd;

        r = age_identity_generate(secret);
        if (r < 0)
                return r;
        r = age_x25519_public(secret, public);
        if (r >= 0)
                r = age_identity_format(secret, &identity);
        OPENSSL_cleanse(secret, sizeof secret);
        if (r >= 0)
                r = age_recipient_format(public, &recipient);
        if (r < 0)
                return err_set(r, EX_SOFTWARE, "cannot generate an age identity: OpenSSL failed");

        r = open_output(output, &fd);
        if (r < 0)
                return r;
        if (!isatty(fd))
                fprintf(stderr, "Public key: %s\n", recipient);
        format_created(created, sizeof created);
        text = xasprintf("# created: %s\n# public key: %s\n%s\n", created, recipient, identity);
        r = write_full(fd, text, strlen(text));
        if (r < 0)
                r = err_set(r, 0, "cannot write the identity to %s: %s", output ?: "standard output",
                            strerror(-r));
        OPENSSL_cleanse(text, strlen(text));
        OPENSSL_cleanse(identity, strlen(identity));
        return close_output(fd, output, r);
}

static int keygen_convert(const char *input, const char *output) {
        _cleanup_(age_identities_freep) AgeIdentities *ids = NULL;
        _cleanup_free_ char *text = NULL;
        int r, fd;

        r = read_file_string(input ?: "/dev/stdin", 1024 * 1024, &text);
        if (r < 0)
                return err_set(r, r == -ENOENT ? EX_NOINPUT : 0, "cannot read the identity file %s: %s",
                               input ?: "from standard input", strerror(-r));
        r = age_identities_parse(text, input ?: "standard input", &ids);
        OPENSSL_cleanse(text, strlen(text));
        if (r < 0)
                return r;

        r = open_output(output, &fd);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ids->n && r >= 0; i++) {
                _cleanup_free_ char *recipient = NULL, *line = NULL;
                uint8_t public[AGE_KEY_SIZE];
                r = age_x25519_public(ids->secret[i], public);
                if (r >= 0)
                        r = age_recipient_format(public, &recipient);
                if (r < 0) {
                        r = err_set(r, EX_SOFTWARE, "cannot derive a public key: OpenSSL failed");
                        break;
                }
                line = xasprintf("%s\n", recipient);
                r = write_full(fd, line, strlen(line));
                if (r < 0)
                        r = err_set(r, 0, "cannot write to %s: %s", output ?: "standard output",
                                    strerror(-r));
        }
        return close_output(fd, output, r);
}

static int verb_keygen_run(CliContext *ctx, int argc, char *argv[]) {
        static const struct option options[] = {
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *output = NULL;
        bool convert = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+o:yh", options, NULL)) >= 0)
                switch (c) {
                case 'o':
                        output = optarg;
                        break;
                case 'y':
                        convert = true;
                        break;
                case 'h':
                        printf("Usage: skyforge-agent keygen %s\n\n%s", verb_keygen.args, verb_keygen.help);
                        return EX_OK;
                default:
                        return cli_bad_option(argv[0], "o:yh", options, argc, argv);
                }

        if (convert) {
                if (argc - optind > 1) {
                        log_error("keygen -y takes at most one identity file");
                        return EX_USAGE;
                }
                r = keygen_convert(optind < argc ? argv[optind] : NULL, output);
                return r < 0 ? keygen_fail(r, "keygen -y") : EX_OK;
        }
        if (optind < argc) {
                log_error("keygen takes no arguments (did you mean -o %s?)", argv[optind]);
                return EX_USAGE;
        }
        r = keygen_generate(output);
        return r < 0 ? keygen_fail(r, "keygen") : EX_OK;
}

const Verb verb_keygen = {
        .name = "keygen",
        .args = "[-o FILE] | -y [-o FILE] [IDENTITY_FILE]",
        .summary = "Create an age identity for encrypted backups, or print an identity's recipient",
        .help = "Writes a new age X25519 identity (AGE-SECRET-KEY-1...) in age-keygen's format to FILE\n"
                "(created with mode 0600, never overwritten) or to standard output, and prints its\n"
                "public key (the recipient, age1...) on standard error. Put the recipient into\n"
                "'recipients =' and keep the identity file off the backed-up node: it is the only way\n"
                "to read the encrypted backups.\n"
                "\n"
                "  -o, --output FILE  write to FILE instead of standard output\n"
                "  -y                 print the recipient of each identity in IDENTITY_FILE (or stdin)\n",
        .run = verb_keygen_run,
};
