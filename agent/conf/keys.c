/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The key table: every key of agent.conf, its type, bounds, default and help line. */
#include <stddef.h>
#include <stdint.h>

#include "conf/conf-internal.h"

#define A(f) offsetof(AgentConfig, f)
#define R(f) offsetof(RemoteConfig, f)
#define P(f) offsetof(PostgresConfig, f)
#define M(f) offsetof(MirrorConfig, f)
#define C(f) offsetof(ConfigJobConfig, f)
#define V(f) offsetof(VolumesConfig, f)

/* The one list of every key the agent knows: parsing, defaults, checking, `config show` and the
 * did-you-mean suggestions all walk it. Key names are an interface (PRODUCT.md §5): add, never rename. */
const ConfKey conf_keys[] = {
        { CONF_SECTION_AGENT, "state_dir", CONF_ABS_PATH, A(state_dir), .def = STATEDIR,
          .help = "job state; the default local store is <state_dir>/backups" },
        { CONF_SECTION_AGENT, "work_dir", CONF_ABS_PATH, A(work_dir), .def = "/var/tmp/skyforge-agent",
          .help = "scratch space (never plaintext secrets)" },
        { CONF_SECTION_AGENT, "log_level", CONF_LOG_LEVEL, A(log_level), .def = "info",
          .help = "debug, info, notice, warning or err" },
        { CONF_SECTION_AGENT, "healthz_url", CONF_URL, A(healthz_url),
          .help = "the cluster's health URL that recover waits for" },
        { CONF_SECTION_AGENT, "healthcheck_url", CONF_URL, A(healthcheck_url),
          .help = "pinged by each job: URL/start, URL on success, URL/fail; %j is the job's name" },
        { CONF_SECTION_AGENT, "metrics_file", CONF_ABS_PATH, A(metrics_file),
          .help = "Prometheus textfile written after each job" },
        { CONF_SECTION_AGENT, "node_name", CONF_NODE_NAME, A(node_name),
          .help = "this node's name in Leases and PV node affinities; unset: the host name" },
        { CONF_SECTION_AGENT, "kubeconfig", CONF_ABS_PATH, A(kubeconfig), .def = "/etc/rancher/k3s/k3s.yaml",
          .help = "the cluster holding the Leases (and the config and volumes jobs', unless overridden)" },
        { CONF_SECTION_AGENT, "leader_election", CONF_LEADER_ELECTION, A(leader_election), .def = "auto",
          .help = "auto (Leases when the cluster has more than one node), yes (always; fail without the "
                  "API) or no" },
        { CONF_SECTION_AGENT, "lease_namespace", CONF_NAMESPACE, A(lease_namespace), .def = "kube-system" },
        { CONF_SECTION_AGENT, "lease_duration", CONF_SECONDS, A(lease_duration_usec), 2, 3600, .def = "60",
          .help = "seconds a Lease stays valid without renewal; renewed every third of it" },
        { CONF_SECTION_AGENT, "min_interval", CONF_SECONDS, A(min_interval_usec), 0, 7 * 86400, .def = "3600",
          .help = "skip a cluster-wide job that succeeded on another node this recently; 0: never" },

        { CONF_SECTION_REMOTE, "endpoint", CONF_URL, R(endpoint),
          .help = "http(s)://HOST[:PORT] (required)" },
        { CONF_SECTION_REMOTE, "region", CONF_STRING, R(region), .def = "us-east-1" },
        { CONF_SECTION_REMOTE, "access_key_id", CONF_STRING, R(access_key_id), .help = "(required)" },
        { CONF_SECTION_REMOTE, "secret_access_key_file", CONF_SECRET_FILE, R(secret_access_key_file),
          .help = "unset: credential NAME in $CREDENTIALS_DIRECTORY, then $AWS_SECRET_ACCESS_KEY" },
        { CONF_SECTION_REMOTE, "path_style", CONF_BOOL, R(path_style), .def = "no",
          .help = "yes for MinIO: http://HOST/bucket/key instead of http://bucket.HOST/key" },
        { CONF_SECTION_REMOTE, "ca_file", CONF_ABS_PATH, R(ca_file), .flags = CONF_F_EXISTS,
          .help = "PEM bundle to verify the endpoint's certificate" },
        { CONF_SECTION_REMOTE, "tls_verify", CONF_BOOL, R(tls_verify), .def = "yes" },
        { CONF_SECTION_REMOTE, "create_bucket", CONF_BOOL, R(create_bucket), .def = "no" },
        { CONF_SECTION_REMOTE, "max_attempts", CONF_UINT, R(max_attempts), 1, 100, .def = "5" },
        { CONF_SECTION_REMOTE, "timeout", CONF_SECONDS, R(timeout_usec), 1, 3600, .def = "60",
          .help = "seconds without progress before a request is retried" },
        { CONF_SECTION_REMOTE, "retry_time", CONF_SECONDS, R(retry_time_usec), 1, 86400, .def = "300",
          .help = "seconds one request keeps being retried before the job fails" },

        { CONF_SECTION_POSTGRES, "conninfo", CONF_CONNINFO, P(conninfo),
          .help = "libpq connection string; unset: libpq defaults and PG* variables" },
        { CONF_SECTION_POSTGRES, "destination", CONF_LOCATION, P(destination),
          .help = "unset: minio:skyforge-backups/postgres/ with a [remote.minio], else STATE_DIR/backups/" },
        { CONF_SECTION_POSTGRES, "retention_days", CONF_UINT, P(retention_days), 0, 36500, .def = "30" },
        { CONF_SECTION_POSTGRES, "keep_min", CONF_UINT, P(keep_min), 1, 100000, .def = "3" },
        { CONF_SECTION_POSTGRES, "compression_level", CONF_INT, P(compression_level), 1, 19, .def = "3" },
        { CONF_SECTION_POSTGRES, "compression_threads", CONF_UINT, P(compression_threads), 0, 256,
          .def = "0", .help = "0: one per CPU" },
        { CONF_SECTION_POSTGRES, "recipients", CONF_RECIPIENTS, P(recipients),
          .help = "age1... recipients; set: dumps are encrypted" },
        { CONF_SECTION_POSTGRES, "identity_file", CONF_SECRET_FILE, P(identity_file),
          .help = "age identity for restore and verify" },
        { CONF_SECTION_POSTGRES, "per_database", CONF_BOOL, P(per_database), .def = "no",
          .help = "also pg_dump -Fc each database" },
        { CONF_SECTION_POSTGRES, "pg_bindir", CONF_ABS_PATH, P(pg_bindir),
          .flags = CONF_F_EXISTS | CONF_F_DIRECTORY,
          .help = "unset: the newest fitting /usr/lib/postgresql/N/bin, then PATH" },
        { CONF_SECTION_POSTGRES, "replication_slot", CONF_STRING, P(replication_slot), .def = "skyforge",
          .help = "physical replication slot of wal-stream" },
        { CONF_SECTION_POSTGRES, "wal_destination", CONF_LOCATION, P(wal_destination),
          .help = "unset: wal/ inside destination" },
        { CONF_SECTION_POSTGRES, "wal_flush_seconds", CONF_SECONDS, P(wal_flush_usec), 1, 3600, .def = "60",
          .help = "the partial WAL segment is uploaded this often (the recovery point objective)" },
        { CONF_SECTION_POSTGRES, "wal_warn_bytes", CONF_SIZE, P(wal_warn_bytes), 16 * MIB, UINT64_C(1) << 50,
          .def = "4GiB", .help = "warn when the replication slot retains more WAL than this" },
        { CONF_SECTION_POSTGRES, "data_directory", CONF_ABS_PATH, P(data_directory),
          .help = "the server's PGDATA on this node (its volume's directory): recover may restore a base "
                  "backup + WAL there" },
        { CONF_SECTION_POSTGRES, "workload", CONF_STRING, P(workload),
          .help = "NAMESPACE/deployment/NAME or NAMESPACE/statefulset/NAME: scaled to 0 while recover "
                  "restores data_directory" },
        { CONF_SECTION_POSTGRES, "wal_prefetch", CONF_UINT, P(wal_prefetch), 1, 1024, .def = "8",
          .help = "WAL segments (16 MiB each) a point-in-time restore fetches ahead of the replay" },

        { CONF_SECTION_MIRROR, "source", CONF_REMOTE, M(source), .def = "minio",
          .flags = CONF_F_OR_PATH | CONF_F_EXISTS_WARN | CONF_F_DIRECTORY,
          .help = "a remote, or a directory whose subdirectories are the buckets" },
        { CONF_SECTION_MIRROR, "buckets", CONF_STAR_LIST, M(buckets), .def = "*", .flags = CONF_F_BUCKETS,
          .help = "* (all buckets of the source) or a list" },
        { CONF_SECTION_MIRROR, "destination", CONF_LOCATION, M(destination),
          .def = "offsite:skyforge-offsite/" },
        { CONF_SECTION_MIRROR, "delete", CONF_BOOL, M(delete), .def = "no",
          .help = "remove destination objects gone at the source" },
        { CONF_SECTION_MIRROR, "transfers", CONF_UINT, M(transfers), 1, 64, .def = "8" },
        { CONF_SECTION_MIRROR, "multipart_threshold", CONF_SIZE, M(multipart_threshold), 5 * MIB, 5 * GIB,
          .def = "256MiB" },
        { CONF_SECTION_MIRROR, "keep_etags", CONF_BOOL, M(keep_etags), .def = "yes",
          .help = "copy objects that are multipart at the source in its part sizes, so that the copies keep "
                  "their ETags and later runs compare them by listing alone" },
        { CONF_SECTION_MIRROR, "include", CONF_LIST, M(include),
          .help = "globs (fnmatch) on KEY or BUCKET/KEY; set: only matching objects are mirrored" },
        { CONF_SECTION_MIRROR, "exclude", CONF_LIST, M(exclude),
          .help = "globs on KEY or BUCKET/KEY never mirrored nor deleted" },

        { CONF_SECTION_CONFIG, "manifests", CONF_LIST, C(manifests), .def = "/opt/skyforge/k8s",
          .flags = CONF_F_ABSOLUTE | CONF_F_EXISTS_WARN | CONF_F_DIRECTORY },
        { CONF_SECTION_CONFIG, "kubeconfig", CONF_ABS_PATH, C(kubeconfig),
          .def = "/etc/rancher/k3s/k3s.yaml", .flags = CONF_F_EXISTS_WARN },
        { CONF_SECTION_CONFIG, "namespaces", CONF_STAR_LIST, C(namespaces), .def = "*",
          .flags = CONF_F_NAMESPACES, .help = "* (all) or a list" },
        { CONF_SECTION_CONFIG, "recipients", CONF_RECIPIENTS, C(recipients),
          .help = "age1... recipients of the Secrets export (required)" },
        { CONF_SECTION_CONFIG, "identity_file", CONF_SECRET_FILE, C(identity_file),
          .help = "age identity for restore config" },
        { CONF_SECTION_CONFIG, "extra_secret_files", CONF_LIST, C(extra_secret_files),
          .flags = CONF_F_ABSOLUTE | CONF_F_EXISTS_WARN,
          .help = "more files to encrypt, e.g. the k3s token" },
        { CONF_SECTION_CONFIG, "destination", CONF_LOCATION, C(destination),
          .help = "unset: minio:skyforge-backups/config/ with a [remote.minio], else STATE_DIR/backups/" },
        { CONF_SECTION_CONFIG, "retention_days", CONF_UINT, C(retention_days), 0, 36500, .def = "30" },
        { CONF_SECTION_CONFIG, "keep_min", CONF_UINT, C(keep_min), 1, 100000, .def = "3" },
        { CONF_SECTION_CONFIG, "compression_level", CONF_INT, C(compression_level), 1, 19, .def = "3" },

        { CONF_SECTION_VOLUMES, "paths", CONF_LIST, V(paths),
          .flags = CONF_F_ABSOLUTE | CONF_F_EXISTS_WARN | CONF_F_DIRECTORY,
          .help = "absolute host directories, each backed up as a volume named by its path" },
        { CONF_SECTION_VOLUMES, "claims", CONF_STAR_LIST, V(claims), .def = "*", .flags = CONF_F_CLAIMS,
          .help = "NAMESPACE/PVC globs of bound PVCs whose PV is a directory on this node" },
        { CONF_SECTION_VOLUMES, "exclude", CONF_LIST, V(exclude), .flags = CONF_F_CLAIMS,
          .help = "NAMESPACE/PVC globs left out (the PostgreSQL and MinIO volumes have their own jobs)" },
        { CONF_SECTION_VOLUMES, "kubeconfig", CONF_ABS_PATH, V(kubeconfig),
          .def = "/etc/rancher/k3s/k3s.yaml", .help = "the cluster the claims are resolved in; unset: "
                                                      "[agent] kubeconfig" },
        { CONF_SECTION_VOLUMES, "destination", CONF_LOCATION, V(destination),
          .help = "unset: minio:skyforge-backups/volumes/ with a [remote.minio], else STATE_DIR/backups/" },
        { CONF_SECTION_VOLUMES, "recipients", CONF_RECIPIENTS, V(recipients),
          .help = "age1... recipients; set: archives and catalogs are encrypted" },
        { CONF_SECTION_VOLUMES, "identity_file", CONF_SECRET_FILE, V(identity_file),
          .help = "age identity for restore, verify and a catalog not cached in state_dir" },
        { CONF_SECTION_VOLUMES, "retention_days", CONF_UINT, V(retention_days), 0, 36500, .def = "30" },
        { CONF_SECTION_VOLUMES, "keep_min", CONF_UINT, V(keep_min), 1, 100000, .def = "3" },
        { CONF_SECTION_VOLUMES, "full_every_days", CONF_UINT, V(full_every_days), 0, 3650, .def = "7",
          .help = "a full backup after this many days of incrementals; 0: every run is full" },
        { CONF_SECTION_VOLUMES, "compression_level", CONF_INT, V(compression_level), 1, 19, .def = "3" },
        { CONF_SECTION_VOLUMES, "compression_threads", CONF_UINT, V(compression_threads), 0, 256,
          .def = "0", .help = "0: one per CPU" },
        { CONF_SECTION_VOLUMES, "pre_command", CONF_STRING, V(pre_command),
          .help = "run by /bin/sh before each volume (VOLUME and VOLUME_PATH set); failing skips it" },
        { CONF_SECTION_VOLUMES, "post_command", CONF_STRING, V(post_command),
          .help = "run after each volume, also after a failure" },
        { CONF_SECTION_VOLUMES, "command_timeout", CONF_SECONDS, V(command_timeout_usec), 1, 86400,
          .def = "300", .help = "seconds pre_command and post_command may take" },
};
const size_t conf_n_keys = ELEMENTSOF(conf_keys);

const char *const conf_section_names[_CONF_SECTION_MAX] = {
        [CONF_SECTION_AGENT] = "agent",       [CONF_SECTION_REMOTE] = "remote",
        [CONF_SECTION_POSTGRES] = "postgres", [CONF_SECTION_MIRROR] = "mirror",
        [CONF_SECTION_CONFIG] = "config",     [CONF_SECTION_VOLUMES] = "volumes",
};

const ConfKey *conf_key_find(ConfSection section, const char *name) {
        for (size_t i = 0; i < conf_n_keys; i++)
                if (conf_keys[i].section == section && streq(conf_keys[i].name, name))
                        return &conf_keys[i];
        return NULL;
}

char *conf_section_id(ConfSection section, const char *remote_name) {
        if (section == CONF_SECTION_REMOTE)
                return xasprintf("remote.%s", remote_name);
        return xstrdup(conf_section_names[section]);
}

/* ---- problems ---- */
