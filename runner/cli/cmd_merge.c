/* SPDX-License-Identifier: MIT */
int cmd_merge(int argc, char **argv);
int cmd_merge(int argc, char **argv) { (void) argc; (void) argv; return 2; }
