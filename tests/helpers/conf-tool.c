/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Runs the `config` verb without the rest of the CLI: conf-tool [-c FILE] check|show */
#include "cli/cli.h"

int main(int argc, char *argv[]) {
        CliContext ctx = {};
        int i = 1;

        if (argc > 2 && streq(argv[1], "-c")) {
                ctx.config_path = argv[2];
                ctx.config_explicit = true;
                i = 3;
        }
        argv[i - 1] = (char *) "config";
        return verb_config.run(&ctx, argc - i + 1, argv + i - 1);
}
