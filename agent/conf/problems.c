/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Problems found while loading a configuration, and the FILE:LINE lookup they are reported with. */
#include <stdarg.h>
#include <stdio.h>

#include "conf/conf-internal.h"


static void problem_add(ConfLoader *l, ConfigSeverity severity, bool deferred, unsigned line,
                        const char *fmt, va_list ap) {
        ConfigProblems *p = l->problems;
        char *m;

        if (vasprintf(&m, fmt, ap) < 0)
                abort();
        p->items = xrealloc(p->items, sizeof(ConfigProblem) * (p->n + 1));
        p->items[p->n++] =
                (ConfigProblem){ .line = line, .severity = severity, .deferred = deferred, .message = m };
}

void conf_problem(ConfLoader *l, ConfigSeverity severity, unsigned line, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        problem_add(l, severity, false, line, fmt, ap);
        va_end(ap);
}

void conf_problem_deferred(ConfLoader *l, unsigned line, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        problem_add(l, CONFIG_ERROR, true, line, fmt, ap);
        va_end(ap);
}

unsigned conf_line(const ConfLoader *l, const char *section, const char *key) {
        unsigned header = 0;

        for (size_t i = l->n_lines; i > 0; i--) {
                const struct ConfLine *e = &l->lines[i - 1];
                if (!streq(e->section, section))
                        continue;
                if (key && streq_ptr(e->key, key))
                        return e->line;
                if (!e->key)
                        header = e->line; /* walking backwards: ends at the first header */
        }
        return header;
}

struct ConfLine *conf_key_line(const ConfLoader *l, const char *section, const char *key) {
        for (size_t i = l->n_lines; i > 0; i--)
                if (streq(l->lines[i - 1].section, section) && streq_ptr(l->lines[i - 1].key, key))
                        return &l->lines[i - 1];
        return NULL;
}

void config_problems_done(ConfigProblems *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++)
                free(p->items[i].message);
        free(p->items);
        *p = (ConfigProblems) {};
}

size_t config_problems_count(const ConfigProblems *p, ConfigSeverity severity) {
        size_t n = 0;
        for (size_t i = 0; p && i < p->n; i++)
                if (p->items[i].severity == severity)
                        n++;
        return n;
}

size_t config_problems_count_deferred(const ConfigProblems *p) {
        size_t n = 0;
        for (size_t i = 0; p && i < p->n; i++)
                if (p->items[i].severity == CONFIG_ERROR && p->items[i].deferred)
                        n++;
        return n;
}

void config_problems_print(const ConfigProblems *p, const char *path, FILE *f) {
        for (size_t i = 0; p && i < p->n; i++) {
                const ConfigProblem *e = &p->items[i];
                const char *sev = e->severity == CONFIG_WARNING ? "warning: " : "";
                if (e->line > 0)
                        fprintf(f, "%s:%u: %s%s\n", path, e->line, sev, e->message);
                else
                        fprintf(f, "%s: %s%s\n", path, sev, e->message);
        }
}

/* Stable by line: problems on one line stay in the order they were found; those tied to no line
 * (a file that cannot be read) come first. */
void conf_problems_sort(ConfigProblems *p) {
        for (size_t i = 1; i < p->n; i++) {
                ConfigProblem x = p->items[i];
                size_t j = i;
                while (j > 0 && p->items[j - 1].line > x.line) {
                        p->items[j] = p->items[j - 1];
                        j--;
                }
                p->items[j] = x;
        }
}
