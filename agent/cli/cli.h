/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <sysexits.h>

#include "conf/conf.h"

/* Global options shared by every command. */
typedef struct CliContext {
        const char *config_path;
        bool config_explicit;
        bool json;
        bool quiet;
} CliContext;

/* One command: verbs[] in cli/main.c lists them. argv[0] is the command name; options after it are the
 * command's own (getopt_long from optind = 1). Returns a sysexits code. */
typedef struct Verb {
        const char *name;
        const char *args;    /* for usage */
        const char *summary; /* one line */
        const char *help;    /* the per-command --help text, after the usage line */
        int (*run)(CliContext *ctx, int argc, char *argv[]);
} Verb;

int cli_main(int argc, char *argv[]);

/* Loads the configuration; on problems prints them all and returns EX_CONFIG. */
int cli_load_config(CliContext *ctx, Config **ret);
/* Prints the error recorded with err_set() (or strerror) for a failed operation and returns its
 * sysexits code. */
int cli_fail(int r, const char *what);
/* Parses the options of a command whose only option is --json; returns 0 or EX_USAGE. */
int cli_parse_json_option(int argc, char *argv[], bool *ret_json);
/* For getopt_long()'s '?' (with opterr = 0): says which option of command (NULL: the global ones) is
 * unknown, with the closest known one, or which needs an argument; returns EX_USAGE. */
struct option;
int cli_bad_option(const char *command, const char *shortopts, const struct option *options, int argc,
                   char *argv[]);
/* An argument beyond those command takes: says so with its usage line(s); returns EX_USAGE. */
int cli_unexpected_argument(const char *command, const char *arg);
/* Prints one JSON document (pretty, no escaped slashes) to stdout, then frees it. */
struct json_object;
void cli_json_print(struct json_object *o);
/* "--help" handling for a command: prints the usage and help text. */
void cli_verb_help(const Verb *v, FILE *f);

extern const Verb verb_config, verb_run, verb_list, verb_status, verb_restore, verb_prune, verb_version;
extern const Verb verb_keygen;
extern const Verb verb_daemon;
extern const Verb verb_verify;
extern const Verb verb_recover;
extern const Verb verb_wal_stream, verb_wal_fetch;
