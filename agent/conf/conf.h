/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

#include "shared/util.h"

#define CONFIG_DEFAULT_PATH SYSCONFDIR "/skyforge/agent.conf"

typedef struct RemoteConfig {
        char *name; /* from [remote.NAME] */
        char *endpoint;
        char *region;
        char *access_key_id;
        char *secret_access_key_file; /* NULL: $CREDENTIALS_DIRECTORY/<name>, then AWS_SECRET_ACCESS_KEY */
        bool path_style;
        char *ca_file;
        bool tls_verify;
        bool create_bucket;
        unsigned max_attempts;
        uint64_t timeout_usec;
        uint64_t retry_time_usec; /* how long one request keeps being retried */
} RemoteConfig;

typedef struct AgentConfig {
        char *state_dir;
        char *work_dir;
        char *log_level;
        char *healthz_url;     /* the cluster's /healthz, polled by recovery */
        char *healthcheck_url; /* healthchecks.io-style pings of each job, optional */
        char *metrics_file; /* Prometheus textfile, optional */
        /* More than one node: cluster-wide jobs take a coordination.k8s.io/v1 Lease (jobs/lease-guard.c). */
        char *node_name;       /* NULL: the host name */
        char *kubeconfig;      /* the cluster the Leases live in */
        char *leader_election; /* "auto", "yes" or "no" */
        char *lease_namespace;
        uint64_t lease_duration_usec;
        uint64_t min_interval_usec; /* skip when another node succeeded this recently; 0: never */
} AgentConfig;

typedef struct PostgresConfig {
        bool present; /* the section was written */
        char *conninfo;
        char *destination;
        unsigned retention_days;
        unsigned keep_min;
        int compression_level;
        unsigned compression_threads; /* 0: one per CPU */
        char **recipients;
        char *identity_file;
        bool per_database;
        char *pg_bindir; /* force a client directory */
        char *replication_slot;  /* physical slot of the WAL stream */
        char *wal_destination;   /* NULL: "wal/" beside the dumps in destination */
        uint64_t wal_flush_usec; /* how often the partial segment is uploaded (the RPO) */
        uint64_t wal_warn_bytes; /* WAL the slot retains before wal-stream warns */
        char *data_directory;    /* the server's data directory on this node: recover's physical path */
        char *workload;          /* NAMESPACE/deployment|statefulset/NAME running the server, or NULL */
        unsigned wal_prefetch;   /* WAL segments a restore fetches ahead of PostgreSQL's replay */
} PostgresConfig;

typedef struct MirrorConfig {
        bool present;
        char *source;      /* a remote name */
        char **buckets;    /* NULL: all buckets of the source */
        char *destination; /* REMOTE:bucket/prefix */
        bool delete;
        unsigned transfers;
        uint64_t multipart_threshold;
        bool keep_etags; /* from multipart_threshold up, copy a multipart object in its source part sizes */
        char **include; /* globs on the key (or bucket/key); NULL: everything */
        char **exclude;
} MirrorConfig;

typedef struct ConfigJobConfig {
        bool present;
        char **manifests;
        char *kubeconfig;
        char **namespaces; /* NULL: all */
        char **recipients;
        char *identity_file;
        char **extra_secret_files;
        char *destination;
        unsigned retention_days;
        unsigned keep_min;
        int compression_level;
} ConfigJobConfig;

typedef struct VolumesConfig {
        bool present;
        char **claims;  /* NAMESPACE/PVC globs; NULL: all */
        bool claims_set; /* claims = was written: without a Kubernetes API the job fails */
        char **exclude; /* NAMESPACE/PVC globs */
        char **paths;   /* absolute host directories */
        char *kubeconfig;
        char *destination;
        char **recipients;
        char *identity_file;
        unsigned retention_days;
        unsigned keep_min;
        unsigned full_every_days;
        int compression_level;
        unsigned compression_threads;
        char *pre_command;
        char *post_command;
        uint64_t command_timeout_usec;
} VolumesConfig;

typedef struct Config {
        char *path;
        bool from_file; /* false when the default file does not exist and built-in defaults apply */
        AgentConfig agent;
        RemoteConfig *remotes;
        size_t n_remotes;
        PostgresConfig postgres;
        MirrorConfig mirror;
        ConfigJobConfig config;
        VolumesConfig volumes;
} Config;

typedef enum ConfigSeverity {
        CONFIG_ERROR = 0, /* the configuration is not usable */
        CONFIG_WARNING,   /* printed, but does not fail config_load() or `config check` */
} ConfigSeverity;

typedef struct ConfigProblem {
        unsigned line; /* 0: not tied to one line */
        ConfigSeverity severity;
        /* An error in a file that only the commands using it read (a secret file of one remote, an
         * identity_file, a passfile): it fails `config check` and those commands when they open the file,
         * but not config_load(), so `status` or a job on another remote still work. */
        bool deferred;
        char *message;
} ConfigProblem;

typedef struct ConfigProblems {
        ConfigProblem *items;
        size_t n;
} ConfigProblems;

void config_problems_done(ConfigProblems *p);
/* Prints each problem as "FILE:LINE: message" to f ("FILE:LINE: warning: message" for warnings). */
void config_problems_print(const ConfigProblems *p, const char *path, FILE *f);
size_t config_problems_count(const ConfigProblems *p, ConfigSeverity severity);
/* How many errors are deferred (see ConfigProblem.deferred). */
size_t config_problems_count_deferred(const ConfigProblems *p);

/* Loads and validates. A missing file is a problem when explicit, built-in defaults otherwise.
 * Returns 0 when the configuration is usable (deferred errors aside), -EINVAL with every problem in
 * ret_problems otherwise.
 * ret_config is set either way when the file could be parsed at all. */
int config_load(const char *path, bool explicit, Config **ret_config, ConfigProblems *ret_problems);
/* Same, from an in-memory text (tests). */
int config_load_string(const char *text, const char *path_for_messages, Config **ret_config,
                       ConfigProblems *ret_problems);
void config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);

const RemoteConfig *config_find_remote(const Config *c, const char *name);

/* The destination of a job, with the built-in default applied: "minio:skyforge-backups/<job>/" when a
 * remote "minio" is configured, "<state_dir>/backups/<job>" otherwise. */
char *config_job_destination(const Config *c, const char *job);

/* Whether the configuration enables a job: postgres always (its defaults work: the local socket and the
 * local store), the others when their section is written. What `run all` runs and `status` shows. */
bool config_job_configured(const Config *c, const char *job);

/* Reads a secret from a file that must not be readable by group or others. */
int config_read_secret_file(const char *path, char **ret);
/* The passfile= of a libpq conninfo, if any, checked like a secret file (libpq silently ignores one that
 * group or others can read); err_set() naming the file and the fix. */
int config_check_passfile(const char *conninfo);

/* Prints the effective configuration, defaults applied, in INI form. Secrets are never inline in a
 * valid configuration; only the files holding them are shown. */
void config_show(const Config *c, FILE *f);
