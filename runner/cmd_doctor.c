/* SPDX-License-Identifier: MIT */
#include "cli.h"
int cmd_doctor(int argc, char **argv) { return 0; }
