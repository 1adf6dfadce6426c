/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sysexits.h>

#if defined(HAVE_INIPARSER_INIPARSER_H)
#include <iniparser/iniparser.h>
#else
#include <iniparser.h>
#endif

#include "conf/conf-internal.h"
#include "conf/location.h"
#include "log/log.h"

/* iniparser 4.1 reads lines into 1024-byte buffers and gives up on the whole file past that. */
#define CONF_LINE_MAX 1000
#define CONF_FILE_MAX (1024 * 1024)
#define INVALID_SECTION_PREFIX "@invalid@"

static void loader_done(ConfLoader *l) {
        for (size_t i = 0; i < l->n_lines; i++) {
                free(l->lines[i].section);
                free(l->lines[i].key);
        }
        free(l->lines);
        l->lines = NULL;
        l->n_lines = 0;
}

static void loader_add_line(ConfLoader *l, const char *section, const char *key, unsigned line) {
        l->lines = xrealloc(l->lines, sizeof(struct ConfLine) * (l->n_lines + 1));
        l->lines[l->n_lines++] = (struct ConfLine) {
                .section = xstrdup(section),
                .key = key ? xstrdup(key) : NULL,
                .line = line,
        };
}

/* ---- the second pass: line numbers, duplicates and lines iniparser cannot parse ---- */

static void lowercase(char *s) {
        for (; *s; s++)
                *s = (char) tolower((unsigned char) *s);
}

typedef struct Scanner {
        ConfLoader *loader;
        char *section; /* NULL before the first header */
        char *out;     /* the text handed to iniparser: bad lines blanked, same line numbers */
        size_t out_len, out_cap;
} Scanner;

static void scanner_emit(Scanner *s, const char *text, size_t n) {
        if (s->out_len + n + 1 > s->out_cap) {
                s->out_cap = (s->out_len + n + 1) * 2;
                s->out = xrealloc(s->out, s->out_cap);
        }
        memcpy(s->out + s->out_len, text, n);
        s->out_len += n;
        s->out[s->out_len] = 0;
}

static bool section_name_valid(const char *name) {
        return !isempty(name) && !strpbrk(name, "[]:;#=\"'") && name[0] != '@';
}

static void scanner_section(Scanner *s, const char *text, unsigned line, char **ret_replacement) {
        _cleanup_free_ char *name = NULL;
        size_t n = strlen(text);
        const char *close = strchr(text, ']');

        if (text[n - 1] == ']')
                name = xstrndup(text + 1, n - 2);
        else if (close) {
                name = xstrndup(text + 1, (size_t) (close - text - 1));
                conf_problem(s->loader, CONFIG_ERROR, line,
                             "text after the section header '%.*s': iniparser rejects the whole file; put "
                             "comments on a line of their own",
                             (int) (close - text + 1), text);
        } else {
                conf_problem(s->loader, CONFIG_ERROR, line, "section header '%s' lacks its closing ']'",
                             text);
        }

        if (name) {
                strstrip(name);
                lowercase(name);
                if (!section_name_valid(name)) {
                        conf_problem(s->loader, CONFIG_ERROR, line, "'[%s]' is not a valid section name",
                                     name);
                        free(name);
                        name = NULL;
                }
        }
        /* Keys below a broken header belong to no section we could name: park them in a placeholder
         * section (skipped later) rather than let iniparser file them under the previous one. */
        if (!name)
                name = xasprintf(INVALID_SECTION_PREFIX "%u", line);

        free(s->section);
        s->section = xstrdup(name);
        if (!startswith(name, INVALID_SECTION_PREFIX))
                loader_add_line(s->loader, name, NULL, line);
        *ret_replacement = xasprintf("[%s]", name);
}

/* iniparser cuts an unquoted value at ';' or '#' anywhere: "pa#ss" becomes "pa". Say so when the
 * character is glued to the text (a comment is normally preceded by a blank). */
static void scanner_check_value(Scanner *s, const char *key, const char *value, unsigned line) {
        const char *c;

        while (isspace((unsigned char) *value))
                value++;
        if (*value == '"' || *value == '\'')
                return;
        c = strpbrk(value, ";#");
        if (c && c > value && !isspace((unsigned char) c[-1]))
                conf_problem(s->loader, CONFIG_WARNING, line,
                             "%s: the value is cut at '%c' (iniparser starts a comment there); quote the "
                             "value if '%c' belongs to it",
                             key, *c, *c);
}

static void scanner_key(Scanner *s, const char *text, unsigned line, bool *ret_drop) {
        const char *eq = strchr(text, '=');
        _cleanup_free_ char *key = NULL;

        *ret_drop = true;
        if (!eq) {
                conf_problem(s->loader, CONFIG_ERROR, line,
                             "cannot parse '%s': expected 'key = value', '[section]' or a comment", text);
                return;
        }
        key = xstrndup(text, (size_t) (eq - text));
        strstrip(key);
        lowercase(key);
        if (isempty(key)) {
                conf_problem(s->loader, CONFIG_ERROR, line, "a value without a key name before '='");
                return;
        }
        if (!s->section) {
                conf_problem(s->loader, CONFIG_ERROR, line,
                             "'%s' comes before any [section]; every key belongs to a section such as "
                             "[agent]",
                             key);
                return;
        }
        *ret_drop = false;
        if (startswith(s->section, INVALID_SECTION_PREFIX))
                return;

        for (size_t i = 0; i < s->loader->n_lines; i++) {
                const struct ConfLine *e = &s->loader->lines[i];
                if (streq(e->section, s->section) && streq_ptr(e->key, key)) {
                        conf_problem(s->loader, CONFIG_ERROR, line,
                                     "%s is set twice in [%s] (also on line %u); remove one, iniparser "
                                     "would silently use the last",
                                     key, s->section, e->line);
                        break;
                }
        }
        loader_add_line(s->loader, s->section, key, line);
        scanner_check_value(s, key, eq + 1, line);
}

/* Reads one logical line as iniparser does: trailing blanks dropped, a trailing backslash joins the next
 * physical line. Returns the number of physical lines consumed. */
static unsigned scanner_logical_line(const char **p, char **ret, bool *ret_too_long) {
        char *buf = NULL;
        size_t len = 0;
        unsigned n = 0;

        *ret_too_long = false;
        for (;;) {
                const char *eol = strchrnul(*p, '\n');
                size_t k = (size_t) (eol - *p);

                if (k > CONF_LINE_MAX || len + k > CONF_LINE_MAX)
                        *ret_too_long = true;
                buf = xrealloc(buf, len + k + 1);
                memcpy(buf + len, *p, k);
                len += k;
                buf[len] = 0;
                n++;
                *p = *eol ? eol + 1 : eol;

                while (len > 0 && isspace((unsigned char) buf[len - 1]))
                        buf[--len] = 0;
                if (len == 0 || buf[len - 1] != '\\' || !**p)
                        break;
                buf[--len] = 0;
        }
        *ret = buf;
        return n;
}

static char *scanner_run(ConfLoader *l, const char *text) {
        Scanner s = { .loader = l };
        const char *p = text;
        unsigned line = 0;

        scanner_emit(&s, "", 0);
        while (*p) {
                _cleanup_free_ char *logical = NULL, *replacement = NULL;
                const char *start = p;
                bool too_long, drop = false;
                unsigned first = line + 1;
                char *t;

                line += scanner_logical_line(&p, &logical, &too_long);
                t = strstrip(logical);

                if (too_long) {
                        conf_problem(l, CONFIG_ERROR, first,
                                     "line longer than %d characters (iniparser would reject the whole "
                                     "file)",
                                     CONF_LINE_MAX);
                        drop = true;
                } else if (*t == 0 || *t == '#' || *t == ';')
                        ;
                else if (*t == '[')
                        scanner_section(&s, t, first, &replacement);
                else
                        scanner_key(&s, t, first, &drop);

                if (replacement || drop) {
                        /* Keep the line count so iniparser's view and ours stay aligned. */
                        if (replacement)
                                scanner_emit(&s, replacement, strlen(replacement));
                        for (unsigned i = first; i <= line; i++)
                                scanner_emit(&s, "\n", 1);
                } else
                        scanner_emit(&s, start, (size_t) (p - start));
        }
        /* iniparser needs the last line terminated to see it whole. */
        if (s.out_len > 0 && s.out[s.out_len - 1] != '\n')
                scanner_emit(&s, "\n", 1);
        free(s.section);
        return s.out;
}

/* ---- values ---- */

#define FIELD(base, k, type) ((type *) ((uint8_t *) (base) + (k)->offset))

static void field_free(const ConfKey *k, void *base) {
        switch (k->type) {
        case CONF_BOOL:
        case CONF_UINT:
        case CONF_INT:
        case CONF_SECONDS:
        case CONF_SIZE:
                break;
        case CONF_LIST:
        case CONF_STAR_LIST:
        case CONF_RECIPIENTS:
                strv_free(*FIELD(base, k, char **));
                *FIELD(base, k, char **) = NULL;
                break;
        default:
                free(*FIELD(base, k, char *));
                *FIELD(base, k, char *) = NULL;
        }
}

static char *parse_number(const ConfKey *k, const char *value, uint64_t *ret) {
        uint64_t v;
        int r;

        if (k->type == CONF_SIZE)
                r = parse_size(value, &v);
        else
                r = parse_uint64(value, &v);
        if (r == -EINVAL && k->type == CONF_SIZE)
                return xasprintf("%s: '%s' is not a size (a number with an optional unit: 64M, 512MiB, "
                                 "1GiB)",
                                 k->name, value);
        if (r == -EINVAL)
                return xasprintf("%s: '%s' is not a number (expected %" PRIu64 "..%" PRIu64 ")", k->name,
                                 value, k->min, k->max);
        if (r < 0 || v < k->min || v > k->max) {
                if (k->type == CONF_SIZE) {
                        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];
                        return xasprintf("%s: %s is out of range (%s..%s)", k->name, value,
                                         format_bytes(k->min, a, sizeof a),
                                         format_bytes(k->max, b, sizeof b));
                }
                return xasprintf("%s: %s is out of range (%" PRIu64 "..%" PRIu64 ")", k->name, value, k->min,
                                 k->max);
        }
        *ret = v;
        return NULL;
}

static char *parse_list(const ConfKey *k, const char *value, char ***ret) {
        _cleanup_strv_free_ char **l = strv_split(value, " \t,");

        if (k->type == CONF_STAR_LIST && strv_contains(l, "*")) {
                if (strv_length(l) > 1)
                        return xasprintf("%s: '*' (all) cannot be combined with names", k->name);
                *ret = NULL;
                return NULL;
        }
        STRV_FOREACH(i, l) {
                char *m = NULL;

                if (k->type == CONF_RECIPIENTS)
                        m = conf_check_recipient(*i);
                else if ((k->flags & CONF_F_ABSOLUTE) && (*i)[0] != '/')
                        m = xasprintf("'%s' is not an absolute path", *i);
                else if ((k->flags & CONF_F_BUCKETS) && !location_bucket_name_valid(*i))
                        m = xasprintf("'%s' is not a valid bucket name (3..63 characters: lowercase "
                                      "letters, digits, '.' and '-')",
                                      *i);
                else if (k->flags & CONF_F_NAMESPACES)
                        m = conf_check_namespace(*i);
                else if (k->flags & CONF_F_CLAIMS)
                        m = conf_check_claim_pattern(*i);
                if (m) {
                        char *full = xasprintf("%s: %s", k->name, m);
                        free(m);
                        return full;
                }
        }
        *ret = strv_length(l) > 0 ? TAKE_PTR(l) : NULL;
        return NULL;
}

static char *parse_string(const ConfKey *k, const char *value) {
        _cleanup_free_ char *m = NULL;
        Location loc = {};

        switch (k->type) {
        case CONF_ABS_PATH:
        case CONF_SECRET_FILE:
                if (value[0] != '/')
                        return xasprintf("%s: '%s' is not an absolute path", k->name, value);
                return NULL;
        case CONF_URL:
                m = conf_check_url(value);
                break;
        case CONF_LOG_LEVEL:
                m = conf_check_log_level(value);
                break;
        case CONF_LEADER_ELECTION:
                m = conf_check_leader_election(value);
                break;
        case CONF_NAMESPACE:
                m = conf_check_namespace(value);
                break;
        case CONF_NODE_NAME:
                if (!node_name_valid(value))
                        m = xasprintf("'%s' is not a node name (" NODE_NAME_RULE "): it names this node's "
                                      "folder of volumes backups and its Lease holder; use the node's "
                                      "Kubernetes name",
                                      value);
                break;
        case CONF_REMOTE:
                if ((k->flags & CONF_F_OR_PATH) && value[0] == '/')
                        return NULL;
                if (!location_remote_name_valid(value))
                        return xasprintf("%s: '%s' is not a remote name (lowercase letters, digits, '-' and "
                                         "'_', as in [remote.NAME])",
                                         k->name, value);
                return NULL;
        case CONF_LOCATION:
                if (location_parse(value, &loc) < 0)
                        m = xstrdup(err_message() ?: "invalid location");
                location_done(&loc);
                break;
        default:
                return NULL;
        }
        if (!m)
                return NULL;
        return xasprintf("%s: %s", k->name, m);
}

/* Parses one value into its field. An empty value means the default. Returns NULL or a message; on a
 * problem the field keeps what it had (the default). */
static char *conf_parse_value(const ConfKey *k, const char *value, void *base) {
        uint64_t u = 0;
        char **l = NULL;
        char *m;
        int b;

        if (isempty(value))
                value = k->def;
        if (!value) {
                field_free(k, base);
                return NULL;
        }

        switch (k->type) {
        case CONF_BOOL:
                b = parse_bool(value);
                if (b < 0)
                        return xasprintf("%s: '%s' is not a boolean (yes/no, true/false, on/off, 1/0)",
                                         k->name, value);
                *FIELD(base, k, bool) = b;
                return NULL;
        case CONF_UINT:
        case CONF_INT:
        case CONF_SECONDS:
        case CONF_SIZE:
                m = parse_number(k, value, &u);
                if (m)
                        return m;
                if (k->type == CONF_UINT)
                        *FIELD(base, k, unsigned) = (unsigned) u;
                else if (k->type == CONF_INT)
                        *FIELD(base, k, int) = (int) u;
                else if (k->type == CONF_SECONDS)
                        *FIELD(base, k, uint64_t) = u * USEC_PER_SEC;
                else
                        *FIELD(base, k, uint64_t) = u;
                return NULL;
        case CONF_LIST:
        case CONF_STAR_LIST:
        case CONF_RECIPIENTS:
                m = parse_list(k, value, &l);
                if (m)
                        return m;
                field_free(k, base);
                *FIELD(base, k, char **) = l;
                return NULL;
        default:
                m = parse_string(k, value);
                if (m)
                        return m;
                field_free(k, base);
                *FIELD(base, k, char *) = xstrdup(value);
                return NULL;
        }
}

static void section_defaults(ConfSection section, void *base) {
        for (size_t i = 0; i < conf_n_keys; i++)
                if (conf_keys[i].section == section) {
                        _cleanup_free_ char *m = conf_parse_value(&conf_keys[i], NULL, base);
                        /* The defaults are ours: one that does not parse is a bug caught by the tests. */
                        assert(!m);
                }
}

static void section_free(ConfSection section, void *base) {
        for (size_t i = 0; i < conf_n_keys; i++)
                if (conf_keys[i].section == section)
                        field_free(&conf_keys[i], base);
}

static void *section_base(Config *c, ConfSection section, size_t remote) {
        switch (section) {
        case CONF_SECTION_AGENT:
                return &c->agent;
        case CONF_SECTION_REMOTE:
                return &c->remotes[remote];
        case CONF_SECTION_POSTGRES:
                return &c->postgres;
        case CONF_SECTION_MIRROR:
                return &c->mirror;
        case CONF_SECTION_CONFIG:
                return &c->config;
        case CONF_SECTION_VOLUMES:
                return &c->volumes;
        default:
                abort();
        }
}

static Config *config_new(const char *path) {
        Config *c = xcalloc(1, sizeof(Config));

        c->path = xstrdup(path);
        for (ConfSection s = 0; s < _CONF_SECTION_MAX; s++)
                if (s != CONF_SECTION_REMOTE)
                        section_defaults(s, section_base(c, s, 0));
        return c;
}

void config_free(Config *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_remotes; i++) {
                section_free(CONF_SECTION_REMOTE, &c->remotes[i]);
                free(c->remotes[i].name);
        }
        free(c->remotes);
        for (ConfSection s = 0; s < _CONF_SECTION_MAX; s++)
                if (s != CONF_SECTION_REMOTE)
                        section_free(s, section_base(c, s, 0));
        free(c->path);
        free(c);
}

const RemoteConfig *config_find_remote(const Config *c, const char *name) {
        for (size_t i = 0; c && name && i < c->n_remotes; i++)
                if (streq(c->remotes[i].name, name))
                        return &c->remotes[i];
        return NULL;
}

char *config_job_destination(const Config *c, const char *job) {
        const char *set = NULL;

        if (streq(job, "basebackup")) /* base backups sit beside the dumps */
                job = "postgres";
        if (streq(job, "postgres"))
                set = c->postgres.destination;
        else if (streq(job, "config"))
                set = c->config.destination;
        else if (streq(job, "volumes"))
                set = c->volumes.destination;
        else if (streq(job, "mirror"))
                return c->mirror.destination ? xstrdup(c->mirror.destination) : NULL;
        if (set)
                return xstrdup(set);
        if (config_find_remote(c, "minio"))
                return xasprintf("minio:skyforge-backups/%s/", job);
        return xasprintf("%s/backups/%s", c->agent.state_dir, job);
}

bool config_job_configured(const Config *c, const char *job) {
        if (streq(job, "postgres"))
                return true;
        if (streq(job, "mirror"))
                return c->mirror.present;
        if (streq(job, "config"))
                return c->config.present;
        if (streq(job, "volumes"))
                return c->volumes.present;
        return false;
}

/* ---- did you mean ---- */

static char *suggest_key(ConfSection section, const char *key) {
        _cleanup_free_ const char **names = xcalloc(conf_n_keys, sizeof(char *));
        const char *m;
        size_t n = 0;

        for (size_t i = 0; i < conf_n_keys; i++)
                if (conf_keys[i].section == section)
                        names[n++] = conf_keys[i].name;
        m = closest_word(key, names, n);
        if (m)
                return xasprintf("; did you mean '%s'?", m);
        /* The right key in the wrong section. */
        for (size_t i = 0; i < conf_n_keys; i++)
                if (streq(conf_keys[i].name, key))
                        return xasprintf("; %s belongs in [%s]", key,
                                         conf_keys[i].section == CONF_SECTION_REMOTE
                                                 ? "remote.NAME"
                                                 : conf_section_names[conf_keys[i].section]);
        return xstrdup("");
}

static char *suggest_section(const char *name) {
        const char *fixed[] = { "agent", "postgres", "mirror", "config", "volumes" }, *m;
        const char *sep;

        m = closest_word(name, fixed, ELEMENTSOF(fixed));
        if (m)
                return xasprintf("; did you mean [%s]?", m);
        /* [remotes.minio], [remote:minio], [remote minio], [s3.minio] */
        sep = strpbrk(name, ". :_");
        if (sep && sep[1]) {
                _cleanup_free_ char *head = xstrndup(name, (size_t) (sep - name));
                const char *r[] = { "remote" };
                if (closest_word(head, r, 1) || streq(head, "s3"))
                        return xasprintf("; did you mean [remote.%s]?", sep + 1);
        }
        return xstrdup("");
}

/* ---- loading ---- */

static int iniparser_quiet(const char *fmt, ...) {
        /* The second pass reports every line iniparser would complain about, with better words. */
        return 0;
}

static dictionary *ini_load_text(const char *text) {
        _cleanup_close_ int fd = -EBADF;
        char path[64];

        /* iniparser 4.1 reads only named files: hand it the sanitized text through a memfd. */
        fd = memfd_create("skyforge-agent.conf", MFD_CLOEXEC);
        if (fd < 0)
                return NULL;
        if (write_full(fd, text, strlen(text)) < 0)
                return NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        iniparser_set_error_callback(iniparser_quiet);
        return iniparser_load(path);
}

static RemoteConfig *config_add_remote(Config *c, const char *name) {
        RemoteConfig *r;

        c->remotes = xrealloc(c->remotes, sizeof(RemoteConfig) * (c->n_remotes + 1));
        r = &c->remotes[c->n_remotes++];
        *r = (RemoteConfig) { .name = xstrdup(name) };
        section_defaults(CONF_SECTION_REMOTE, r);
        return r;
}

static void load_key(ConfLoader *l, ConfSection section, void *base, const char *sid, const char *key,
                     const char *value) {
        unsigned line = conf_line(l, sid, key);
        const ConfKey *k = conf_key_find(section, key);
        _cleanup_free_ char *m = NULL;

        if (!k) {
                m = conf_inline_secret_message(key);
                if (m) {
                        conf_problem(l, CONFIG_ERROR, line, "%s", m);
                        return;
                }
                m = suggest_key(section, key);
                conf_problem(l, CONFIG_ERROR, line, "unknown key '%s' in [%s]%s", key, sid, m);
                return;
        }
        m = conf_parse_value(k, value, base);
        if (m) {
                struct ConfLine *e = conf_key_line(l, sid, key);
                conf_problem(l, CONFIG_ERROR, line, "%s", m);
                if (e)
                        e->bad = true;
        }
}

static void load_section(ConfLoader *l, Config *c, dictionary *d, const char *sid) {
        static const ConfSection fixed[] = { CONF_SECTION_AGENT, CONF_SECTION_POSTGRES, CONF_SECTION_MIRROR,
                                             CONF_SECTION_CONFIG, CONF_SECTION_VOLUMES };
        ConfSection section = _CONF_SECTION_MAX;
        const char *remote = startswith(sid, "remote."), **keys;
        void *base = NULL;
        int n;

        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                if (streq(sid, conf_section_names[fixed[i]]))
                        section = fixed[i];

        if (remote) {
                if (!location_remote_name_valid(remote)) {
                        conf_problem(l, CONFIG_ERROR, conf_line(l, sid, NULL),
                                     "[%s]: '%s' is not a remote name (lowercase letters, digits, '-' and "
                                     "'_', at most 63)",
                                     sid, remote);
                        return;
                }
                section = CONF_SECTION_REMOTE;
                base = (void *) config_find_remote(c, remote) ?: config_add_remote(c, remote);
        } else if (section == _CONF_SECTION_MAX) {
                _cleanup_free_ char *m = suggest_section(sid);
                conf_problem(l, CONFIG_ERROR, conf_line(l, sid, NULL),
                             "unknown section [%s]%s (known: [agent], [remote.NAME], [postgres], [mirror], "
                             "[config], [volumes])",
                             sid, m);
                return;
        } else
                base = section_base(c, section, 0);

        if (section == CONF_SECTION_POSTGRES)
                c->postgres.present = true;
        else if (section == CONF_SECTION_MIRROR)
                c->mirror.present = true;
        else if (section == CONF_SECTION_CONFIG)
                c->config.present = true;
        else if (section == CONF_SECTION_VOLUMES)
                c->volumes.present = true;

        n = iniparser_getsecnkeys(d, sid);
        if (n <= 0)
                return;
        keys = xcalloc((size_t) n, sizeof(char *));
        if (iniparser_getseckeys(d, sid, keys))
                for (int i = 0; i < n; i++) {
                        const char *key = strchr(keys[i], ':');
                        if (key)
                                load_key(l, section, base, sid, key + 1,
                                         iniparser_getstring(d, keys[i], ""));
                }
        free(keys);
}

static int config_load_text(const char *text, const char *path, Config **ret_config,
                            ConfigProblems *ret_problems) {
        _cleanup_(config_freep) Config *c = config_new(path);
        ConfigProblems problems = {};
        ConfLoader l = { .problems = &problems };
        _cleanup_free_ char *sanitized = NULL;
        size_t n_errors;
        dictionary *d;

        c->from_file = true;
        sanitized = scanner_run(&l, text);
        d = ini_load_text(sanitized);
        if (!d)
                conf_problem(&l, CONFIG_ERROR, 0, "iniparser could not load the file: %m");
        else {
                int n = iniparser_getnsec(d);
                for (int i = 0; i < n; i++) {
                        const char *sid = iniparser_getsecname(d, i);
                        if (sid && !startswith(sid, INVALID_SECTION_PREFIX))
                                load_section(&l, c, d, sid);
                }
                iniparser_freedict(d);
        }

        /* [agent] kubeconfig is every job's cluster; [config] kubeconfig, when written, overrides it for the
         * config job. */
        if (conf_key_line(&l, "agent", "kubeconfig") && !conf_key_line(&l, "config", "kubeconfig")) {
                free(c->config.kubeconfig);
                c->config.kubeconfig = xstrdup(c->agent.kubeconfig);
        }
        /* The same for the volumes job's claims. */
        if (conf_key_line(&l, "agent", "kubeconfig") && !conf_key_line(&l, "volumes", "kubeconfig")) {
                free(c->volumes.kubeconfig);
                c->volumes.kubeconfig = xstrdup(c->agent.kubeconfig);
        }
        c->volumes.claims_set = conf_key_line(&l, "volumes", "claims") != NULL;
        conf_check(&l, c);
        loader_done(&l);
        conf_problems_sort(&problems);

        n_errors =
                config_problems_count(&problems, CONFIG_ERROR) - config_problems_count_deferred(&problems);
        if (ret_config)
                *ret_config = TAKE_PTR(c);
        if (ret_problems)
                *ret_problems = problems;
        else
                config_problems_done(&problems);
        return n_errors > 0 ? -EINVAL : 0;
}

int config_load_string(const char *text, const char *path_for_messages, Config **ret_config,
                       ConfigProblems *ret_problems) {
        return config_load_text(text, path_for_messages ?: "(string)", ret_config, ret_problems);
}

int config_load(const char *path, bool explicit, Config **ret_config, ConfigProblems *ret_problems) {
        _cleanup_free_ char *text = NULL;
        int r;

        if (!path)
                path = CONFIG_DEFAULT_PATH;
        r = read_file_string(path, CONF_FILE_MAX, &text);
        if (r == -ENOENT && !explicit) {
                /* Out of the box: no file, built-in defaults, the local store under state_dir. */
                if (ret_config)
                        *ret_config = config_new(path);
                if (ret_problems)
                        *ret_problems = (ConfigProblems) {};
                return 0;
        }
        if (r < 0) {
                ConfigProblems problems = {};
                ConfLoader l = { .problems = &problems };

                if (r == -EFBIG)
                        conf_problem(&l, CONFIG_ERROR, 0, "cannot read %s: larger than %d bytes", path,
                                     CONF_FILE_MAX);
                else
                        conf_problem(&l, CONFIG_ERROR, 0, "cannot read %s: %s", path, strerror(-r));
                if (ret_problems)
                        *ret_problems = problems;
                else
                        config_problems_done(&problems);
                return -EINVAL;
        }
        return config_load_text(text, path, ret_config, ret_problems);
}

/* ---- secrets ---- */

int config_read_secret_file(const char *path, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        ssize_t n;
        int r;

        r = conf_secret_file_open(path, &fd);
        if (r < 0)
                return r;
        buf = xmalloc(CONF_SECRET_MAX + 1);
        n = read_full(fd, buf, CONF_SECRET_MAX + 1);
        if (n < 0)
                return err_set((int) n, EX_IOERR, "cannot read secret file %s: %s", path,
                               strerror((int) -n));
        if (n > CONF_SECRET_MAX)
                return err_set(-EFBIG, EX_CONFIG,
                               "secret file %s is larger than %d bytes; is it the right file?", path,
                               CONF_SECRET_MAX);
        buf[n] = 0;
        /* echo secret > file and editors add a newline that is not part of the secret. */
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = 0;
        if (n == 0)
                return err_set(-EINVAL, EX_CONFIG, "secret file %s is empty; write the secret into it",
                               path);
        *ret = TAKE_PTR(buf);
        return 0;
}

/* ---- show ---- */

static void show_value(FILE *f, const ConfKey *k, const void *base) {
        char **l;

        switch (k->type) {
        case CONF_BOOL:
                fprintf(f, "%s", *FIELD(base, k, bool) ? "yes" : "no");
                break;
        case CONF_UINT:
                fprintf(f, "%u", *FIELD(base, k, unsigned));
                break;
        case CONF_INT:
                fprintf(f, "%d", *FIELD(base, k, int));
                break;
        case CONF_SECONDS:
                fprintf(f, "%" PRIu64, *FIELD(base, k, uint64_t) / USEC_PER_SEC);
                break;
        case CONF_SIZE: {
                uint64_t v = *FIELD(base, k, uint64_t);
                if (v % GIB == 0)
                        fprintf(f, "%" PRIu64 "GiB", v / GIB);
                else if (v % MIB == 0)
                        fprintf(f, "%" PRIu64 "MiB", v / MIB);
                else
                        fprintf(f, "%" PRIu64, v);
                break;
        }
        case CONF_LIST:
        case CONF_STAR_LIST:
        case CONF_RECIPIENTS:
                l = *FIELD(base, k, char **);
                if (!l && k->type == CONF_STAR_LIST)
                        fputs("*", f);
                STRV_FOREACH(i, l)
                        fprintf(f, "%s%s", i == l ? "" : " ", *i);
                break;
        default:
                fputs(strempty(*FIELD(base, k, char *)), f);
        }
}

static bool field_is_set(const ConfKey *k, const void *base) {
        switch (k->type) {
        case CONF_BOOL:
        case CONF_UINT:
        case CONF_INT:
        case CONF_SECONDS:
        case CONF_SIZE:
        case CONF_STAR_LIST:
                return true;
        case CONF_LIST:
        case CONF_RECIPIENTS:
                return *FIELD(base, k, char **) != NULL;
        default:
                return *FIELD(base, k, char *) != NULL;
        }
}

/* A section not in the file is shown commented out, so that the output loads back to the same
 * configuration (a written [config] would need recipients). */
static void show_section(FILE *f, const Config *c, ConfSection section, const void *base, const char *sid,
                         bool present) {
        const char *pre = present ? "" : "; ";

        if (present)
                fprintf(f, "[%s]\n", sid);
        else
                fprintf(f, "; [%s]   (not in the file: the built-in defaults)\n", sid);
        for (size_t i = 0; i < conf_n_keys; i++) {
                const ConfKey *k = &conf_keys[i];
                if (k->section != section)
                        continue;
                if (k->type == CONF_LOCATION && section != CONF_SECTION_MIRROR && !*FIELD(base, k, char *)) {
                        _cleanup_free_ char *d = config_job_destination(c, sid);
                        fprintf(f, "%s%s = %s\n", pre, k->name, d);
                } else if (field_is_set(k, base)) {
                        fprintf(f, "%s%s = ", pre, k->name);
                        show_value(f, k, base);
                        fputc('\n', f);
                } else
                        fprintf(f, "; %s =%s%s\n", k->name, k->help ? "   ; " : "", strempty(k->help));
        }
        fputc('\n', f);
}

void config_show(const Config *c, FILE *f) {
        fprintf(f, "; effective configuration from %s%s\n\n", c->path,
                c->from_file ? "" : " (not present: built-in defaults)");
        show_section(f, c, CONF_SECTION_AGENT, &c->agent, "agent", true);
        for (size_t i = 0; i < c->n_remotes; i++) {
                _cleanup_free_ char *sid = conf_section_id(CONF_SECTION_REMOTE, c->remotes[i].name);
                show_section(f, c, CONF_SECTION_REMOTE, &c->remotes[i], sid, true);
        }
        show_section(f, c, CONF_SECTION_POSTGRES, &c->postgres, "postgres", c->postgres.present);
        show_section(f, c, CONF_SECTION_MIRROR, &c->mirror, "mirror", c->mirror.present);
        show_section(f, c, CONF_SECTION_CONFIG, &c->config, "config", c->config.present);
        show_section(f, c, CONF_SECTION_VOLUMES, &c->volumes, "volumes", c->volumes.present);
}
