/* TEMPORARY: minimal stand-ins until the conf and s3 branches are merged. Deleted at merge. */
#include <iniparser/iniparser.h>

#include "conf/conf.h"
#include "log/log.h"
#include "store/store.h"

void config_problems_done(ConfigProblems *p) {
        for (size_t i = 0; i < p->n; i++)
                free(p->items[i].message);
        free(p->items);
}
void config_problems_print(const ConfigProblems *p, const char *path, FILE *f) {
        for (size_t i = 0; i < p->n; i++)
                fprintf(f, "%s:%u: %s\n", path, p->items[i].line, p->items[i].message);
}
static char *get(dictionary *d, const char *k, const char *def) {
        const char *v = d ? iniparser_getstring(d, k, NULL) : NULL;
        return v ? xstrdup(v) : (def ? xstrdup(def) : NULL);
}
int config_load(const char *path, bool explicit, Config **ret_config, ConfigProblems *ret_problems) {
        dictionary *d = iniparser_load(path);
        Config *c = xcalloc(1, sizeof *c);
        c->path = xstrdup(path);
        c->agent.state_dir = get(d, "agent:state_dir", "/var/lib/skyforge-agent");
        c->agent.work_dir = get(d, "agent:work_dir", "/var/tmp/skyforge-agent");
        c->postgres.conninfo = get(d, "postgres:conninfo", "");
        c->postgres.destination = get(d, "postgres:destination", NULL);
        c->postgres.retention_days = d ? iniparser_getint(d, "postgres:retention_days", 30) : 30;
        c->postgres.keep_min = d ? iniparser_getint(d, "postgres:keep_min", 3) : 3;
        c->postgres.compression_level = d ? iniparser_getint(d, "postgres:compression_level", 3) : 3;
        c->postgres.pg_bindir = get(d, "postgres:pg_bindir", NULL);
        if (d)
                iniparser_freedict(d);
        *ret_config = c;
        return 0;
}
void config_free(Config *c) {
        if (!c)
                return;
        free(c->path);
        free(c->agent.state_dir);
        free(c->agent.work_dir);
        free(c->postgres.conninfo);
        free(c->postgres.destination);
        free(c->postgres.pg_bindir);
        free(c);
}
const RemoteConfig *config_find_remote(const Config *c, const char *name) {
        return NULL;
}
char *config_job_destination(const Config *c, const char *job) {
        if (streq(job, "postgres") && c->postgres.destination)
                return xstrdup(c->postgres.destination);
        return xasprintf("%s/backups/%s", c->agent.state_dir, job);
}
int store_s3_open(const struct RemoteConfig *remote, const char *bucket, const char *prefix, Store **ret) {
        return -EOPNOTSUPP;
}
int location_parse(const char *s, Location *ret) {
        *ret = (Location){ .type = LOCATION_LOCAL, .path = xstrdup(s) };
        return 0;
}
void location_done(Location *l) {
        free(l->path);
}

#include "cli/cli.h"
static int verb_config_run(CliContext *ctx, int argc, char *argv[]) {
        return 0;
}
const Verb verb_config = { .name = "config", .args = "check", .summary = "placeholder", .run = verb_config_run };
