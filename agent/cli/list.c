/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "log/log.h"

static int run_list(CliContext *ctx, int argc, char *argv[]) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(backup_list_done) BackupList l = {};
        Manifest **all;
        size_t n_all;
        const char *only = NULL;
        bool json = false;
        int r;

        if (cli_parse_json_option(argc, argv, &json) != 0)
                return EX_USAGE;
        if (optind + 1 < argc)
                return cli_unexpected_argument(argv[0], argv[optind + 1]);
        if (optind < argc) {
                only = argv[optind];
                if (!strv_contains((char **) job_listable, only)) {
                        fprintf(stderr, "skyforge-agent list: \"%s\" has no backups to list (postgres, config, volumes, basebackup).\n", only);
                        return EX_USAGE;
                }
        }
        r = cli_load_config(ctx, &c);
        if (r != 0)
                return r;

        r = job_list_backups(c, only, &l);
        if (r < 0)
                return cli_fail(r, "cannot list backups");
        all = l.items;
        n_all = l.n;

        if (json) {
                json_object *arr = json_object_new_array();
                for (size_t i = 0; i < n_all; i++) {
                        json_object *o = manifest_to_json(all[i]);
                        /* volumes: the node folder it is in; null for the shared one (before node folders) */
                        if (streq_ptr(all[i]->job, "volumes"))
                                json_object_object_add(o, "node", all[i]->node
                                                                          ? json_object_new_string(all[i]->node)
                                                                          : NULL);
                        json_object_array_add(arr, o);
                }
                puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(arr);
        } else if (n_all == 0) {
                fputs("No backups.\n", stderr);
        } else {
                bool nodes = false;
                for (size_t i = 0; i < n_all; i++)
                        nodes = nodes || streq_ptr(all[i]->job, "volumes");
                printf("%-9s %-17s %-20s %10s %5s %s%s\n", "JOB", "ID", "FINISHED", "SIZE", "ENC", "OBJECTS",
                       nodes ? "  NODE" : "");
                for (size_t i = 0; i < n_all; i++) {
                        _cleanup_free_ char *fin = format_iso8601(all[i]->finished_usec);
                        char size[FORMAT_BYTES_MAX];
                        printf("%-9s %-17s %-20s %10s %5s ", all[i]->job, all[i]->id, fin,
                               format_bytes(all[i]->bytes, size, sizeof size), all[i]->encrypted ? "yes" : "no");
                        if (streq_ptr(all[i]->job, "volumes"))
                                printf("%-7zu  %s\n", all[i]->n_objects, all[i]->node ?: ". (shared)");
                        else
                                printf("%zu\n", all[i]->n_objects);
                }
        }
        return 0;
}

const Verb verb_list = {
        .name = "list",
        .args = "[JOB] [--json]",
        .summary = "List backups, newest first.",
        .help = "Only backups with a manifest are listed: data left by an interrupted run is not a backup.\n"
                "  --json   print a JSON array of the manifests (job, id, started, finished, bytes, encrypted,\n"
                "           objects: [{name, bytes, sha256}], ...)\n",
        .run = run_list,
};
