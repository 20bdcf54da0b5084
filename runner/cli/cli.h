/* SPDX-License-Identifier: MIT */
/* The nestbox program: one cmd_<verb>() per subcommand (git's builtin/ in spirit). */
#pragma once

#include <stdio.h>

#include "nestbox/error.h"

/* Exit codes, as documented in the README ("Exit codes"). */
enum {
        NB_EXIT_PASSED = 0,
        NB_EXIT_FAILED = 1,  /* tests failed */
        NB_EXIT_USAGE = 2,   /* usage or input error */
        NB_EXIT_INFRA = 3,   /* sandbox or infrastructure error */
        NB_EXIT_TIMEOUT = 4, /* a run hit its timeout */
        NB_EXIT_SIGINT = 130, /* interrupted: 128 + SIGINT */
        NB_EXIT_SIGTERM = 143, /* terminated: 128 + SIGTERM */
};

int cmd_sandbox(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_venv(int argc, char **argv);
int cmd_test(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_actions(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_repro(int argc, char **argv);
int cmd_bundle(int argc, char **argv);
int cmd_merge(int argc, char **argv);

struct nb_command {
        const char *name;
        int (*fn)(int argc, char **argv);
};

/* Runs the command argv[1] names from the table; -1 when it names none. */
int nb_dispatch(const struct nb_command *commands, size_t n, int argc, char **argv);

/* Prints "nestbox: <message>" on stderr and returns code. */
int nb_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int nb_die_error(int code, const struct nb_error *err);

/* The one mapping from an error's class to an exit code (HACKING.md, "Errors"). */
int nb_exit_code(const struct nb_error *err);
/* Prints err and returns nb_exit_code(err). */
int nb_fail(const struct nb_error *err);

/* Prints the subcommand's manual text and returns code (0 for --help, 2 otherwise). */
int nb_usage(FILE *f, const char *text, int code);
