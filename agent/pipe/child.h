/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "shared/stream.h"
#include "sys/process.h"

/* A sink that writes into a child's stdin (draining its stderr meanwhile); finishing closes the stdin. A
 * child that stops reading makes writes fail with a bare -EPIPE: its exit status and stderr say why. */
Sink *sink_child_new(Child *c);
