/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "util.h"

void strv_free(char **l) {
        if (!l)
                return;
        for (char **s = l; *s; s++)
                free(*s);
        free(l);
}

const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

const char *endswith(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        if (b > a)
                return NULL;
        return memcmp(s + a - b, suffix, b) == 0 ? s + a - b : NULL;
}

static _noreturn_ void oom(void) {
        fputs("skyforge-agent: out of memory\n", stderr);
        abort();
}

void *xmalloc(size_t n) {
        void *p = malloc(n ?: 1);
        if (!p)
                oom();
        return p;
}

void *xcalloc(size_t n, size_t m) {
        void *p = calloc(n ?: 1, m ?: 1);
        if (!p)
                oom();
        return p;
}

void *xrealloc(void *p, size_t n) {
        p = realloc(p, n ?: 1);
        if (!p)
                oom();
        return p;
}

char *xstrdup(const char *s) {
        char *p = strdup(s);
        if (!p)
                oom();
        return p;
}

char *xstrndup(const char *s, size_t n) {
        char *p = strndup(s, n);
        if (!p)
                oom();
        return p;
}

char *xasprintf(const char *fmt, ...) {
        va_list ap;
        char *p;

        va_start(ap, fmt);
        if (vasprintf(&p, fmt, ap) < 0)
                oom();
        va_end(ap);
        return p;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

int strv_push(char ***l, char *value) {
        size_t n = strv_length(*l);
        char **c = xrealloc(*l, sizeof(char *) * (n + 2));
        c[n] = value;
        c[n + 1] = NULL;
        *l = c;
        return 0;
}

char **strv_split(const char *s, const char *separators) {
        char **l = xcalloc(1, sizeof(char *));
        const char *p = s;

        while (p && *p) {
                size_t k = strcspn(p, separators);
                if (k > 0) {
                        char *w = xstrndup(p, k);
                        strstrip(w);
                        if (*w)
                                strv_push(&l, w);
                        else
                                free(w);
                }
                p += k;
                if (*p)
                        p++;
        }
        return l;
}

bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

char *strstrip(char *s) {
        char *e;
        size_t l;

        while (isspace((unsigned char) *s))
                memmove(s, s + 1, strlen(s));
        l = strlen(s);
        for (e = s + l; e > s && isspace((unsigned char) e[-1]); e--)
                ;
        *e = 0;
        return s;
}

static bool same_letter(char x, char y) {
        return tolower((unsigned char) x) == tolower((unsigned char) y);
}

int edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        /* Three rows of the table: two rows back (for a swap), the previous one and the one being filled. */
        _cleanup_free_ int *rows = xcalloc(3 * (lb + 1), sizeof(int));
        int *back2 = rows, *prev = rows + lb + 1, *cur = rows + 2 * (lb + 1);

        for (size_t j = 0; j <= lb; j++)
                prev[j] = (int) j;
        for (size_t i = 1; i <= la; i++) {
                int *t;

                cur[0] = (int) i;
                for (size_t j = 1; j <= lb; j++) {
                        int best = prev[j - 1] + !same_letter(a[i - 1], b[j - 1]);
                        best = MIN(best, prev[j] + 1);
                        best = MIN(best, cur[j - 1] + 1);
                        if (i > 1 && j > 1 && same_letter(a[i - 1], b[j - 2]) &&
                            same_letter(a[i - 2], b[j - 1]))
                                best = MIN(best, back2[j - 2] + 1);
                        cur[j] = best;
                }
                t = back2;
                back2 = prev;
                prev = cur;
                cur = t;
        }
        return prev[lb];
}

int parse_bool(const char *s) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        return -EINVAL;
}

/* A decimal number at the start of s; *ret_end points after it. Signs and blanks in front are refused. */
static int parse_leading_u64(const char *s, uint64_t *ret, char **ret_end) {
        unsigned long long v;

        if (isempty(s) || !isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, ret_end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v;
        char *end;
        int r = parse_leading_u64(s, &v, &end);

        if (r < 0)
                return r;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } table[] = {
                { "",    1 },           { "B", 1 },
                { "K",   1ULL << 10 },  { "KiB", 1ULL << 10 }, { "KB", 1000 },
                { "M",   1ULL << 20 },  { "MiB", 1ULL << 20 }, { "MB", 1000ULL * 1000 },
                { "G",   1ULL << 30 },  { "GiB", 1ULL << 30 }, { "GB", 1000ULL * 1000 * 1000 },
                { "T",   1ULL << 40 },  { "TiB", 1ULL << 40 },
        };
        char *end;
        uint64_t v;
        int r = parse_leading_u64(s, &v, &end);

        if (r < 0)
                return r;
        while (*end == ' ')
                end++;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasecmp(end, table[i].suffix) == 0) {
                        if (v > UINT64_MAX / table[i].factor)
                                return -ERANGE;
                        *ret = v * table[i].factor;
                        return 0;
                }
        return -EINVAL;
}

uint64_t now_usec(int clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

int backup_id_format(uint64_t usec, char ret[static BACKUP_ID_LEN + 1]) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm))
                return -EINVAL;
        if (strftime(ret, BACKUP_ID_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != BACKUP_ID_LEN)
                return -EINVAL;
        return 0;
}

bool backup_id_valid(const char *id) {
        if (!id || strlen(id) != BACKUP_ID_LEN)
                return false;
        for (size_t i = 0; i < BACKUP_ID_LEN; i++) {
                if (i == 8) {
                        if (id[i] != 'T')
                                return false;
                } else if (i == 15) {
                        if (id[i] != 'Z')
                                return false;
                } else if (!isdigit((unsigned char) id[i]))
                        return false;
        }
        return true;
}

bool node_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;

        if (n == 0 || n > NODE_NAME_MAX || name[0] == '.' || name[0] == '-' || backup_id_valid(name))
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

const char *node_name_or_host(const char *configured, char *buf, size_t n) {
        if (!isempty(configured))
                return configured;
        if (gethostname(buf, n - 1) < 0 || !buf[0])
                snprintf(buf, n, "localhost");
        buf[n - 1] = 0;
        return buf;
}

int backup_id_parse(const char *id, uint64_t *ret_usec) {
        struct tm tm = {};
        const char *e;

        if (!backup_id_valid(id))
                return -EINVAL;
        e = strptime(id, "%Y%m%dT%H%M%SZ", &tm);
        if (!e || *e)
                return -EINVAL;
        *ret_usec = (uint64_t) timegm(&tm) * USEC_PER_SEC;
        return 0;
}

char *format_iso8601(uint64_t usec) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char buf[32];

        gmtime_r(&t, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return xstrdup(buf);
}

int parse_iso8601(const char *s, uint64_t *ret_usec) {
        struct tm tm = {};
        const char *e;

        if (!s)
                return -EINVAL;
        e = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (!e || *e)
                return -EINVAL;
        *ret_usec = (uint64_t) timegm(&tm) * USEC_PER_SEC;
        return 0;
}

char *format_bytes(uint64_t n, char *buf, size_t len) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double) n;
        size_t u = 0;

        while (v >= 1024.0 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024.0;
                u++;
        }
        if (u == 0)
                snprintf(buf, len, "%" PRIu64 " B", n);
        else
                snprintf(buf, len, "%.1f %s", v, units[u]);
        return buf;
}

char *read_only_hint(int r, const char *path) {
        _cleanup_free_ char *top = NULL;
        struct stat st;

        if (r != -EROFS)
                return xstrdup("");
        /* What to allow: the first directory of path that does not exist yet (what mkdir -p would
         * create first), else path itself. */
        if (path[0] != '/')
                top = xstrdup(path);
        for (const char *p = top ? NULL : strchr(path + 1, '/'); !top; p = p ? strchr(p + 1, '/') : NULL) {
                _cleanup_free_ char *prefix = p ? xstrndup(path, p - path) : xstrdup(path);

                if (!p || (stat(prefix, &st) < 0 && errno == ENOENT))
                        top = TAKE_PTR(prefix);
        }
        /* systemd sets INVOCATION_ID for every unit it starts; ProtectSystem=strict makes all but the
         * state directory and ReadWritePaths= read-only. */
        if (getenv("INVOCATION_ID"))
                return xasprintf(" (the service may write only its state directory and the paths its unit "
                                 "allows: create %s, then `systemctl edit skyforge-backup@.service` and add "
                                 "[Service] ReadWritePaths=%s)",
                                 top, top);
        return xasprintf(" (%s is on a read-only file system: choose a writable directory)", top);
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = xstrdup(path);

        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int fsync_directory_of(const char *path) {
        _cleanup_free_ char *copy = xstrdup(path);
        _cleanup_close_ int fd = -EBADF;

        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int write_full(int fd, const void *buf, size_t n) {
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

ssize_t read_full(int fd, void *buf, size_t n) {
        uint8_t *p = buf;
        size_t done = 0;

        while (done < n) {
                ssize_t k = read(fd, p + done, n - done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        return (ssize_t) done;
}

int read_file_string(const char *path, size_t max, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 4096;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        buf = xmalloc(cap);
        for (;;) {
                ssize_t k;
                if (len + 1 >= cap) {
                        if (cap > max)
                                return -EFBIG;
                        cap *= 2;
                        buf = xrealloc(buf, cap);
                }
                k = read(fd, buf + len, cap - len - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len > max)
                        return -EFBIG;
        }
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        return (int) len;
}

int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode) {
        _cleanup_free_ char *dir = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        char *slash;
        int r;

        dir = xstrdup(path);
        slash = strrchr(dir, '/');
        if (slash)
                *slash = 0;
        tmp = xasprintf("%s/.%s.tmp.XXXXXX", slash ? dir : ".", slash ? slash + 1 : path);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = fchmod(fd, mode) < 0 ? -errno : write_full(fd, data, n);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                unlink(tmp);
                return r;
        }
        return fsync_directory_of(path);
}

char *path_join(const char *a, const char *b) {
        size_t la = strlen(a);

        while (la > 0 && a[la - 1] == '/')
                la--;
        while (*b == '/')
                b++;
        if (!*b)
                return xstrndup(a, la);
        return xasprintf("%.*s/%s", (int) la, a, b);
}

char **strv_copy(char *const *l) {
        char **c;
        size_t n = strv_length(l);

        if (!l)
                return NULL;
        c = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                c[i] = xstrdup(l[i]);
        return c;
}

char *strv_join(char *const *l, const char *sep) {
        size_t n = 0, k = 0, sep_len = strlen(sep);
        char *s;

        if (strv_isempty(l))
                return NULL;
        for (size_t i = 0; l[i]; i++)
                n += strlen(l[i]) + (i > 0 ? sep_len : 0);
        s = xmalloc(n + 1);
        for (size_t i = 0; l[i]; i++) {
                size_t len = strlen(l[i]);
                if (i > 0) {
                        memcpy(s + k, sep, sep_len);
                        k += sep_len;
                }
                memcpy(s + k, l[i], len);
                k += len;
        }
        s[k] = 0;
        return s;
}

int lock_file(const char *path, mode_t mode, bool wait, const volatile sig_atomic_t *cancel, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;

        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        while (flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return -EBUSY;
                if (errno != EINTR)
                        return -errno;
                if (cancel && *cancel)
                        return -ECANCELED;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

volatile sig_atomic_t *cancel_flag = NULL;

int thread_start(pthread_t *ret, void *(*f)(void *), void *userdata) {
        sigset_t all, saved;
        int r;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = pthread_create(ret, NULL, f, userdata);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        return -r;
}

const char *closest_word(const char *word, const char *const *candidates, size_t n) {
        const char *best = NULL;
        int best_d = INT32_MAX;
        /* Close enough to be a typo, not just another short word. */
        int limit = strlen(word) < 6 ? 1 : strlen(word) < 12 ? 2 : 3;

        for (size_t i = 0; i < n; i++) {
                int d = edit_distance(word, candidates[i]);
                if (d <= limit && d < best_d) {
                        best = candidates[i];
                        best_d = d;
                }
        }
        return best;
}
