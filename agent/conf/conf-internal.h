/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Shared between conf.c (loading) and check.c (validation); not for the rest of the agent. */

#include <stddef.h>

#include "conf/conf.h"

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

/* keys.c: the key table. */
typedef enum ConfSection {
        CONF_SECTION_AGENT,
        CONF_SECTION_REMOTE, /* [remote.NAME] */
        CONF_SECTION_POSTGRES,
        CONF_SECTION_MIRROR,
        CONF_SECTION_CONFIG,
        CONF_SECTION_VOLUMES,
        _CONF_SECTION_MAX,
} ConfSection;

typedef enum ConfType {
        CONF_STRING,      /* char * */
        CONF_ABS_PATH,    /* char *, must start with '/' */
        CONF_SECRET_FILE, /* char *, absolute, checked: exists, readable, mode & 077 == 0 */
        CONF_URL,         /* char *, http:// or https:// */
        CONF_BOOL,        /* bool */
        CONF_UINT,        /* unsigned, min..max */
        CONF_INT,         /* int, min..max */
        CONF_SECONDS,     /* uint64_t in usec, min..max seconds */
        CONF_SIZE,        /* uint64_t bytes, min..max: "64M", "1GiB" */
        CONF_LOCATION,    /* char *, REMOTE:bucket/prefix or an absolute path */
        CONF_REMOTE,      /* char *, the name of a [remote.NAME] */
        CONF_LIST,        /* char **, whitespace/comma separated */
        CONF_STAR_LIST,   /* char **, NULL for "*" (all) */
        CONF_RECIPIENTS,  /* char **, age1... */
        CONF_LOG_LEVEL,   /* char *: debug|info|notice|warning|err */
        CONF_CONNINFO,    /* char *, a libpq connection string */
        CONF_LEADER_ELECTION, /* char *: auto|yes|no */
        CONF_NAMESPACE,   /* char *, a Kubernetes namespace name */
        CONF_NODE_NAME,   /* char *, a node name (node_name_valid()) */
} ConfType;

/* What the file-system check wants of a path (or of every item of a list). */
typedef enum ConfFlags {
        CONF_F_EXISTS = 1 << 0, /* missing is an error */
        CONF_F_EXISTS_WARN =
                1 << 1, /* missing is a warning: the job fails until it appears (k3s not yet up) */
        CONF_F_DIRECTORY = 1 << 2,
        CONF_F_ABSOLUTE = 1 << 3,   /* list items are absolute paths */
        CONF_F_BUCKETS = 1 << 4,    /* list items are bucket names */
        CONF_F_NAMESPACES = 1 << 5, /* list items are Kubernetes namespace names */
        CONF_F_OR_PATH = 1 << 6,    /* a remote name, or an absolute local directory */
        CONF_F_CLAIMS = 1 << 7,     /* list items are NAMESPACE/PVC glob patterns */
} ConfFlags;

typedef struct ConfKey {
        ConfSection section;
        const char *name;
        ConfType type;
        size_t offset;
        uint64_t min, max;
        const char *def; /* parsed like a written value; NULL: unset */
        unsigned flags;
        const char *help; /* one line, for `config show` */
} ConfKey;

extern const ConfKey conf_keys[];
extern const size_t conf_n_keys;
extern const char *const conf_section_names[_CONF_SECTION_MAX];

const ConfKey *conf_key_find(ConfSection section, const char *name);

/* Problems with their line numbers, collected over one load. */
typedef struct ConfLoader {
        ConfigProblems *problems;
        /* (section, key) -> line from the second pass over the text; key NULL for a section header. */
        struct ConfLine {
                char *section;
                char *key;
                unsigned line;
                bool bad; /* the value did not parse: the field holds the default, check nothing more */
        } * lines;
        size_t n_lines;
} ConfLoader;

/* problems.c */
void conf_problem(ConfLoader *l, ConfigSeverity severity, unsigned line, const char *fmt, ...)
        _printf_(4, 5);
/* An error that fails only `config check` and the commands that use the file (ConfigProblem.deferred). */
void conf_problem_deferred(ConfLoader *l, unsigned line, const char *fmt, ...) _printf_(3, 4);
/* The line of the last "key =" in [section]; the section's first header line when the key was not written;
 * 0 when neither is known. */
unsigned conf_line(const ConfLoader *l, const char *section, const char *key);
/* The last "key =" line of [section], or NULL when the key was not written. */
struct ConfLine *conf_key_line(const ConfLoader *l, const char *section, const char *key);
/* Stable by line: problems on one line stay in the order they were found. */
void conf_problems_sort(ConfigProblems *p);

/* check.c: value syntax, used while parsing. Return NULL when fine, else a message (to free). */
char *conf_check_url(const char *value);
char *conf_check_recipient(const char *value);
char *conf_check_log_level(const char *value);
char *conf_check_namespace(const char *value);
char *conf_check_leader_election(const char *value);
char *conf_check_claim_pattern(const char *value);
/* A key that looks like a secret written inline: a message saying where the secret goes instead. */
char *conf_inline_secret_message(const char *key);

/* check.c: opens a secret file after checking it is a regular file that group and others cannot access
 * (libpq and ssh refuse such files too); err_set() on failure. */
#define CONF_SECRET_MAX (64 * 1024)
int conf_secret_file_open(const char *path, int *ret_fd);

/* check.c: everything across keys and against the file system, on the parsed configuration. */
/* check.c: the checks that span keys and sections, run by the loader (load.c) after parsing. */
void conf_check(ConfLoader *l, const Config *c);

/* The section name a problem refers to: "postgres", "remote.minio". */
char *conf_section_id(ConfSection section, const char *remote_name);
