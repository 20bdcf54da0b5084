/* SPDX-License-Identifier: MIT */
#include "cli.h"
int cmd_sandbox(int argc, char **argv) { return 0; }
