/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "cli/cli.h"

int cli_main(int argc, char *argv[]) {
        return 0;
}
