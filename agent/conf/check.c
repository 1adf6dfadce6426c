/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "conf/conf-internal.h"
#include "conf/location.h"
#include "log/log.h"

/* ---- value syntax (called while parsing) ---- */

char *conf_check_url(const char *value) {
        const char *host = startswith(value, "https://") ?: startswith(value, "http://");

        if (!host)
                return xasprintf("'%s' is not an http:// or https:// URL", value);
        if (!*host || *host == '/' || *host == ':')
                return xasprintf("'%s' names no host", value);
        if (strpbrk(value, " \t"))
                return xasprintf("'%s' contains blanks", value);
        return NULL;
}

/* age X25519 recipients: "age1" + 58 bech32 characters (32 bytes of key, 6 of checksum). The checksum
 * itself is verified by the age module when the key is used; a syntax check catches pasted fragments,
 * secret keys and SSH keys here. */
#define AGE_RECIPIENT_LEN 62

char *conf_check_recipient(const char *value) {
        static const char bech32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        size_t n = strlen(value);

        if (startswith(value, "AGE-SECRET-KEY-"))
                /* Never echo a secret key back into logs. */
                return xstrdup("an AGE-SECRET-KEY-... is an identity (a secret key), not a recipient; move "
                               "it "
                               "into identity_file (chmod 600) and list its public key here (age-keygen -y "
                               "FILE)");
        if (startswith(value, "ssh-"))
                return xasprintf("'%.16s...' is an SSH key; only X25519 age1... recipients are supported "
                                 "(make one with skyforge-agent keygen or age-keygen)",
                                 value);
        if (!startswith(value, "age1"))
                return xasprintf("'%s' is not an age recipient (age1..., as printed by age-keygen)", value);
        if (n != AGE_RECIPIENT_LEN)
                return xasprintf("'%s' has %zu characters, an age recipient has %d; was it cut when pasted?",
                                 value, n, AGE_RECIPIENT_LEN);
        for (const char *p = value + 4; *p; p++)
                if (!strchr(bech32, *p))
                        return xasprintf("'%s' contains '%c', which bech32 does not use", value, *p);
        return NULL;
}

char *conf_check_log_level(const char *value) {
        static const char *const levels[] = { "debug", "info", "notice", "warning", "err" };

        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                if (streq(value, levels[i]))
                        return NULL;
        return xasprintf("'%s' is not a log level (debug, info, notice, warning, err)", value);
}

char *conf_check_leader_election(const char *value) {
        if (streq(value, "auto") || streq(value, "yes") || streq(value, "no"))
                return NULL;
        return xasprintf("'%s' is not auto, yes or no", value);
}

/* RFC 1123 label, as Kubernetes requires for namespace names. */
char *conf_check_claim_pattern(const char *value) {
        const char *slash = strchr(value, '/');

        if (!slash || slash == value || !slash[1] || strchr(slash + 1, '/'))
                return xasprintf("'%s' is not a NAMESPACE/PVC pattern (globs allowed: apps/*, */gitea-data)",
                                 value);
        return NULL;
}

char *conf_check_namespace(const char *value) {
        size_t n = strlen(value);
        bool ok = n >= 1 && n <= 63 && isalnum((unsigned char) value[0]) &&
                  isalnum((unsigned char) value[n - 1]);

        for (size_t i = 0; ok && i < n; i++)
                ok = islower((unsigned char) value[i]) || isdigit((unsigned char) value[i]) ||
                     value[i] == '-';
        if (!ok)
                return xasprintf("'%s' is not a Kubernetes namespace name (lowercase letters, digits and "
                                 "'-')",
                                 value);
        return NULL;
}

char *conf_inline_secret_message(const char *key) {
        if (endswith(key, "_file"))
                return NULL;
        if (strstr(key, "password") || strstr(key, "passwd"))
                return xasprintf("%s: passwords are never written in this file; put it in a pgpass file "
                                 "(chmod 600) and add passfile=FILE to conninfo, or use a systemd "
                                 "credential",
                                 key);
        if (strstr(key, "secret_access_key") || strstr(key, "secret_key"))
                return xasprintf("%s: secrets are never written in this file; put it in a file only root "
                                 "can "
                                 "read (chmod 600) and set secret_access_key_file = FILE, or use a systemd "
                                 "credential (LoadCredential=NAME:FILE)",
                                 key);
        if (strstr(key, "secret") || strstr(key, "token") || strstr(key, "private_key"))
                return xasprintf("%s: secrets are never written in this file; put it in a file only root "
                                 "can read (chmod 600) and name that file, or use a systemd credential",
                                 key);
        return NULL;
}

/* ---- files ---- */

int conf_secret_file_open(const char *path, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        /* O_NONBLOCK: a FIFO in the wrong place must not hang `config check`. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return err_set(-ENOENT, EX_CONFIG,
                                       "secret file %s does not exist; create it readable only by root "
                                       "(install -m 600 /dev/null %s, then write the secret into it)",
                                       path, path);
                if (errno == EACCES)
                        return err_set(-EACCES, EX_NOPERM,
                                       "cannot read secret file %s: %s (run as root, like the agent's "
                                       "units)",
                                       path, strerror(errno));
                return err_set(-errno, EX_CONFIG, "cannot open secret file %s: %s", path, strerror(errno));
        }
        if (fstat(fd, &st) < 0)
                return err_set(-errno, EX_IOERR, "cannot stat secret file %s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return err_set(-EINVAL, EX_CONFIG, "secret file %s is not a regular file", path);
        if (st.st_mode & 077)
                return err_set(-EPERM, EX_CONFIG,
                               "secret file %s is accessible by group or others (mode %04o); run chmod 600 "
                               "%s",
                               path, (unsigned) (st.st_mode & 07777), path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void check_secret(ConfLoader *l, unsigned line, const char *key, const char *path) {
        _cleanup_close_ int fd = -EBADF;

        if (conf_secret_file_open(path, &fd) < 0)
                conf_problem_deferred(l, line, "%s: %s", key, err_message());
}

static void check_path(ConfLoader *l, unsigned line, const ConfKey *k, const char *path) {
        ConfigSeverity sev = (k->flags & CONF_F_EXISTS) ? CONFIG_ERROR : CONFIG_WARNING;
        struct stat st;

        if (!(k->flags & (CONF_F_EXISTS | CONF_F_EXISTS_WARN)))
                return;
        if (stat(path, &st) < 0)
                conf_problem(l, sev, line, "%s: %s: %s%s", k->name, path, strerror(errno),
                             sev == CONFIG_WARNING ? " (the job fails until it exists)" : "");
        else if ((k->flags & CONF_F_DIRECTORY) && !S_ISDIR(st.st_mode))
                conf_problem(l, sev, line, "%s: %s is not a directory", k->name, path);
        else if (!(k->flags & CONF_F_DIRECTORY) && S_ISDIR(st.st_mode))
                conf_problem(l, sev, line, "%s: %s is a directory, not a file", k->name, path);
        else if (access(path, R_OK) < 0)
                conf_problem(l, sev, line, "%s: cannot read %s: %s", k->name, path, strerror(errno));
}

/* ---- references to remotes ---- */

static char *remote_names(const Config *c) {
        char *s = xstrdup("");

        for (size_t i = 0; i < c->n_remotes; i++) {
                char *n = xasprintf("%s%s%s", s, i > 0 ? ", " : "", c->remotes[i].name);
                free(s);
                s = n;
        }
        return s;
}

static void check_remote_ref(ConfLoader *l, const Config *c, unsigned line, const char *key,
                             const char *name, bool written) {
        _cleanup_free_ char *names = NULL;

        if (config_find_remote(c, name))
                return;
        names = remote_names(c);
        if (*names)
                conf_problem(l, CONFIG_ERROR, line,
                             "%s: remote '%s'%s is not defined; add a [remote.%s] section or use one of the "
                             "defined remotes: %s",
                             key, name, written ? "" : " (the default)", name, names);
        else
                conf_problem(l, CONFIG_ERROR, line,
                             "%s: remote '%s'%s is not defined; add a [remote.%s] section (none is defined)",
                             key, name, written ? "" : " (the default)", name);
}

static void check_location(ConfLoader *l, const Config *c, unsigned line, const char *key, const char *value,
                           bool written) {
        Location loc = {};

        /* Syntax problems were reported while parsing; the field then holds the default. */
        if (!value || location_parse(value, &loc) < 0)
                return;
        if (loc.type == LOCATION_REMOTE)
                check_remote_ref(l, c, line, key, loc.remote, written);
        location_done(&loc);
}

/* ---- sections ---- */

static unsigned key_line(const ConfLoader *l, const char *sid, const char *key, bool *ret_written,
                         bool *ret_bad) {
        const struct ConfLine *e = conf_key_line(l, sid, key);

        *ret_written = e;
        *ret_bad = e && e->bad;
        return e ? e->line : conf_line(l, sid, NULL);
}

/* The checks every key of a type gets, wherever it appears. */
static void check_section_keys(ConfLoader *l, const Config *c, ConfSection section, const void *base,
                               const char *sid) {
        for (size_t i = 0; i < conf_n_keys; i++) {
                const ConfKey *k = &conf_keys[i];
                const void *field = (const uint8_t *) base + k->offset;
                bool written, bad;
                unsigned line;

                if (k->section != section)
                        continue;
                line = key_line(l, sid, k->name, &written, &bad);
                if (bad)
                        continue; /* said once is enough */

                switch (k->type) {
                case CONF_SECRET_FILE:
                        if (*(char *const *) field)
                                check_secret(l, line, k->name, *(char *const *) field);
                        break;
                case CONF_ABS_PATH:
                        if (*(char *const *) field)
                                check_path(l, line, k, *(char *const *) field);
                        break;
                case CONF_LIST:
                        STRV_FOREACH(p, *(char **const *) field)
                                check_path(l, line, k, *p);
                        break;
                case CONF_LOCATION:
                        check_location(l, c, line, k->name, *(char *const *) field, written);
                        break;
                case CONF_REMOTE:
                        if (*(char *const *) field && (k->flags & CONF_F_OR_PATH) &&
                            (*(char *const *) field)[0] == '/')
                                check_path(l, line, k, *(char *const *) field);
                        else if (*(char *const *) field)
                                check_remote_ref(l, c, line, k->name, *(char *const *) field, written);
                        break;
                default:
                        break;
                }
        }
}

static void check_remote(ConfLoader *l, const Config *c, const RemoteConfig *r) {
        _cleanup_free_ char *sid = conf_section_id(CONF_SECTION_REMOTE, r->name);
        check_section_keys(l, c, CONF_SECTION_REMOTE, r, sid);

        /* A written but invalid value was reported while parsing. */
        if (!r->endpoint && !conf_key_line(l, sid, "endpoint"))
                conf_problem(l, CONFIG_ERROR, conf_line(l, sid, NULL),
                             "[%s] has no endpoint; add endpoint = http(s)://HOST[:PORT]", sid);
        if (!r->access_key_id)
                conf_problem(l, CONFIG_ERROR, conf_line(l, sid, NULL),
                             "[%s] has no access_key_id; add access_key_id = ... (its secret goes into "
                             "secret_access_key_file)",
                             sid);
        if (!r->tls_verify)
                conf_problem(l, CONFIG_WARNING, conf_line(l, sid, "tls_verify"),
                             "tls_verify = no: [%s] accepts any certificate, so anyone on the path can read "
                             "and change backups; give the endpoint's CA with ca_file = instead",
                             sid);
}

static void check_conninfo(ConfLoader *l, const char *conninfo) {
        unsigned line = conf_line(l, "postgres", "conninfo");
        PQconninfoOption *opts;
        char *errmsg = NULL;

        opts = PQconninfoParse(conninfo, &errmsg);
        if (!opts) {
                if (errmsg) {
                        errmsg[strcspn(errmsg, "\n")] = 0;
                        conf_problem(l, CONFIG_ERROR, line, "conninfo: %s", errmsg);
                        PQfreemem(errmsg);
                } else
                        conf_problem(l, CONFIG_ERROR, line, "conninfo: cannot parse (out of memory?)");
                return;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                _cleanup_close_ int fd = -EBADF;

                if (isempty(o->val))
                        continue;
                if (streq(o->keyword, "password"))
                        conf_problem(l, CONFIG_ERROR, line,
                                     "conninfo: contains a password; secrets are never written in this "
                                     "file: put it in a pgpass file (chmod 600) and write passfile=FILE in "
                                     "conninfo, or use a systemd credential");
                else if (streq(o->keyword, "passfile") && conf_secret_file_open(o->val, &fd) < 0)
                        /* libpq skips a passfile with group or other access, with at most a warning on a
                         * terminal, and the login then fails for a reason nobody sees. */
                        conf_problem_deferred(l, line, "conninfo passfile: %s (libpq would ignore it)",
                                              err_message());
        }
        PQconninfoFree(opts);
}

/* ---- jobs sharing a location ---- */

/* Two jobs whose locations are the same, or one inside the other, would each list, count and prune the
 * other's backups, and clean up its uploads in flight. A job's location as a key that is a prefix of
 * another's exactly when the two overlap: "L" + canonical path + "/" for a local directory, "R" + server
 * + "\n" + bucket + "/" + prefix for a remote, the server being its endpoint (two remote names may well
 * point to one server). */
typedef struct JobPlace {
        const char *job;
        const char *value;
        unsigned line;
        char *key;
        Location loc;
} JobPlace;

static char *local_key(const char *path) {
        _cleanup_free_ char *lexical = xstrdup("");

        /* The same directory however it is written ("//", "." and ".." segments)... */
        for (const char *p = path; *p;) {
                size_t k = strcspn(p, "/");
                if (k == 2 && p[0] == '.' && p[1] == '.') {
                        char *slash = strrchr(lexical, '/');
                        if (slash)
                                *slash = 0;
                } else if (k > 0 && !(k == 1 && p[0] == '.')) {
                        char *n = xasprintf("%s/%.*s", lexical, (int) k, p);
                        free(lexical);
                        lexical = n;
                }
                p += k;
                if (*p == '/')
                        p++;
        }
        /* ... and through symbolic links, as far as it exists already. */
        for (size_t cut = strlen(lexical);;) {
                _cleanup_free_ char *head = xstrndup(lexical, cut);
                char real[PATH_MAX], *slash;

                if (realpath(cut > 0 ? head : "/", real))
                        return xasprintf("L%s%s/", streq(real, "/") ? "" : real, lexical + cut);
                slash = strrchr(head, '/');
                if (!slash)
                        return xasprintf("L%s/", lexical);
                cut = (size_t) (slash - head);
        }
}

static char *remote_key(const Config *c, const Location *loc) {
        const RemoteConfig *r = config_find_remote(c, loc->remote);
        _cleanup_free_ char *server = NULL;

        if (r && r->endpoint) {
                server = xstrdup(r->endpoint);
                for (char *p = server; *p; p++)
                        *p = (char) tolower((unsigned char) *p);
                for (size_t n = strlen(server); n > 0 && server[n - 1] == '/'; n--)
                        server[n - 1] = 0;
        } else
                server = xasprintf("remote %s", loc->remote);
        return xasprintf("R%s\n%s/%s", server, loc->bucket, loc->prefix);
}

static bool keys_overlap(const char *a, const char *b) {
        return startswith(a, b) || startswith(b, a);
}

static bool place_overlaps_any(const JobPlace *places, size_t n, const char *job, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (!streq(places[i].job, job) && keys_overlap(places[i].key, key))
                        return true;
        return false;
}

/* A destination for job that overlaps no other job's, to name in the message; NULL if none comes to
 * mind. */
static char *suggest_place(const Config *c, const JobPlace *places, size_t n, const JobPlace *p) {
        char *candidates[2] = {};
        char *found = NULL;

        if (p->loc.type == LOCATION_LOCAL) {
                /* The canonical path: "L/srv/backups/" */
                _cleanup_free_ char *path = xstrndup(p->key + 1, strlen(p->key) - 2),
                                    *parent = xstrdup(path);
                char *slash = strrchr(parent, '/');
                if (slash)
                        *slash = 0;
                candidates[0] = xasprintf("%s/%s", path, p->job);
                candidates[1] = xasprintf("%s/%s", parent, p->job);
        } else {
                candidates[0] =
                        xasprintf("%s:%s/%s%s/", p->loc.remote, p->loc.bucket, p->loc.prefix, p->job);
                candidates[1] = xasprintf("%s:%s/%s/", p->loc.remote, p->loc.bucket, p->job);
        }
        for (size_t i = 0; i < ELEMENTSOF(candidates) && !found; i++) {
                _cleanup_(location_done) Location loc = {};
                _cleanup_free_ char *key = NULL;

                if (location_parse(candidates[i], &loc) < 0)
                        continue;
                key = loc.type == LOCATION_LOCAL ? local_key(loc.path) : remote_key(c, &loc);
                if (!place_overlaps_any(places, n, p->job, key))
                        found = xstrdup(candidates[i]);
        }
        free(candidates[0]);
        free(candidates[1]);
        return found;
}

static void check_shared_locations(ConfLoader *l, const Config *c) {
        JobPlace places[4] = {};
        size_t n = 0;

        /* postgres runs with defaults even without its section; the others only when written. */
        for (size_t i = 0; i < ELEMENTSOF(places); i++) {
                const char *job = (const char *const[]){ "postgres", "config", "mirror", "volumes" }[i];
                const char *value = streq(job, "postgres")  ? c->postgres.destination
                                    : streq(job, "config")  ? c->config.destination
                                    : streq(job, "volumes") ? c->volumes.destination
                                                            : c->mirror.destination;
                bool present = streq(job, "postgres") ||
                               (streq(job, "config")    ? c->config.present
                                : streq(job, "volumes") ? c->volumes.present
                                                        : c->mirror.present);
                const struct ConfLine *e = conf_key_line(l, job, "destination");
                _cleanup_free_ char *dest = NULL;
                JobPlace *p = places + n;

                if (!present || (e && e->bad) || (!value && streq(job, "mirror")))
                        continue;
                dest = config_job_destination(c, job);
                if (location_parse(dest, &p->loc) < 0)
                        continue; /* reported while parsing */
                p->job = job;
                p->value = value;
                p->line = conf_line(l, job, "destination");
                p->key = p->loc.type == LOCATION_LOCAL ? local_key(p->loc.path) : remote_key(c, &p->loc);
                n++;
        }

        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++) {
                        const JobPlace *a = places + i, *b = places + j, *fix, *other;
                        _cleanup_free_ char *da = NULL, *db = NULL, *suggestion = NULL, *how = NULL;

                        if (!keys_overlap(a->key, b->key))
                                continue;
                        /* The one to move: the outer of two nested locations (it covers the other), else
                         * the later job. */
                        fix = strlen(a->key) < strlen(b->key) ? a : b;
                        other = fix == a ? b : a;
                        da = config_job_destination(c, fix->job);
                        db = config_job_destination(c, other->job);
                        if (streq(fix->key, other->key))
                                how = xasprintf("%s's destination %s is also %s's (%s)", fix->job, da,
                                                other->job, db);
                        else
                                how = xasprintf("%s's destination %s contains %s's (%s)", fix->job, da,
                                                other->job, db);
                        suggestion = suggest_place(c, places, n, fix);
                        conf_problem(l, CONFIG_ERROR, fix->line,
                                     "destination: %s%s; each job would list, count toward keep_min and "
                                     "delete the other's backups, and clean up its uploads in flight. Give "
                                     "[%s] a destination of its own that neither contains nor lies inside "
                                     "another job's%s%s",
                                     how, fix->value ? "" : " (the default)", fix->job,
                                     suggestion ? ", e.g. destination = " : "", strempty(suggestion));
                }
        for (size_t i = 0; i < n; i++) {
                free(places[i].key);
                location_done(&places[i].loc);
        }
}

void conf_check(ConfLoader *l, const Config *c) {
        check_section_keys(l, c, CONF_SECTION_AGENT, &c->agent, "agent");
        for (size_t i = 0; i < c->n_remotes; i++)
                check_remote(l, c, &c->remotes[i]);

        /* The postgres job runs with defaults even without its section. */
        check_section_keys(l, c, CONF_SECTION_POSTGRES, &c->postgres, "postgres");
        if (c->postgres.conninfo)
                check_conninfo(l, c->postgres.conninfo);

        /* mirror and config default to remotes that may not exist: only a written section is checked. */
        if (c->mirror.present)
                check_section_keys(l, c, CONF_SECTION_MIRROR, &c->mirror, "mirror");

        if (c->config.present) {
                check_section_keys(l, c, CONF_SECTION_CONFIG, &c->config, "config");
                if (!c->config.recipients && !conf_key_line(l, "config", "recipients"))
                        conf_problem(l, CONFIG_ERROR, conf_line(l, "config", NULL),
                                     "[config] has no recipients; the Secrets export is always encrypted: "
                                     "add recipients = age1... (skyforge-agent keygen makes a key pair)");
        }

        if (c->volumes.present) {
                char buf[HOST_NAME_MAX + 1];
                const char *host;

                check_section_keys(l, c, CONF_SECTION_VOLUMES, &c->volumes, "volumes");
                /* A written node_name was checked while parsing; the host name stands in for an unset
                 * one (as in the jobs: node_name_or_host()). */
                host = node_name_or_host(c->agent.node_name, buf, sizeof buf);
                if (isempty(c->agent.node_name) && !node_name_valid(host))
                        conf_problem(l, CONFIG_WARNING, conf_line(l, "volumes", NULL),
                                     "[volumes] stores into a folder named after this node, and node_name "
                                     "is unset, so the host name \"%s\" would name it, which it cannot ("
                                     NODE_NAME_RULE "): the volumes job fails until node_name = is set in "
                                     "[agent] to the node's Kubernetes name",
                                     host);
        }

        check_shared_locations(l, c);
}

int config_check_passfile(const char *conninfo) {
        _cleanup_close_ int fd = -EBADF;
        PQconninfoOption *opts;
        int r = 0;

        opts = PQconninfoParse(strempty(conninfo), NULL);
        if (!opts)
                return 0; /* config_load() reported it */
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (streq(o->keyword, "passfile") && !isempty(o->val) &&
                    (r = conf_secret_file_open(o->val, &fd)) < 0) {
                        _cleanup_free_ char *why = xstrdup(strna(err_message()));
                        r = err_set(r, err_exit_code(r),
                                    "[postgres] conninfo passfile: %s (libpq would ignore it)", why);
                        break;
                }
        PQconninfoFree(opts);
        return r;
}
