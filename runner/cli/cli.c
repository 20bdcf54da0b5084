/* SPDX-License-Identifier: MIT */
/* What every subcommand prints with: one line per error, the manual on --help. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int nb_die(int code, const char *fmt, ...) {
        va_list ap;
        fputs("nestbox: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

int nb_die_error(int code, const struct nb_error *err) {
        return nb_die(code, "%s", nb_error_message(err));
}

int nb_exit_code(const struct nb_error *err) {
        switch (err ? err->klass : NB_ERROR_INFRA) {
        case NB_ERROR_USAGE:
        case NB_ERROR_INPUT:
                return NB_EXIT_USAGE;
        case NB_ERROR_TIMEOUT:
                return NB_EXIT_TIMEOUT;
        case NB_ERROR_INFRA:
                break;
        }
        return NB_EXIT_INFRA;
}

int nb_fail(const struct nb_error *err) {
        return nb_die(nb_exit_code(err), "%s", nb_error_message(err));
}

int nb_usage(FILE *f, const char *text, int code) {
        fputs(text, f);
        return code;
}

int nb_dispatch(const struct nb_command *commands, size_t n, int argc, char **argv) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].fn(argc - 1, argv + 1);
        return -1;
}
