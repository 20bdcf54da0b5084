/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char main_usage[] =
        "usage: nestbox [--version] [--help] <command> [<args>]\n"
        "\n"
        "Hermetic, sandboxed test runs for Python monorepos.\n"
        "\n"
        "commands:\n"
        "  sandbox   run any command in the nestbox sandbox (like bwrap)\n"
        "  doctor    what this kernel offers and what isolation a run will get\n"
        "  venv      install a lockfile's wheels into a cached, read-only virtualenv\n"
        "  test      run a workspace's test targets, each in its own sandbox\n"
        "  cache     cache stats, gc by least recent use, verify (and repair)\n"
        "\n"
        "`nestbox <command> --help` prints the manual of one command.\n"
        "Exit codes: 0 passed, 1 tests failed, 2 usage or input error,\n"
        "3 sandbox or infrastructure error, 4 timeout.\n";

struct command {
        const char *name;
        int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
        { "sandbox", cmd_sandbox },
        { "doctor", cmd_doctor },
        { "venv", cmd_venv },
        { "test", cmd_test },
        { "cache", cmd_cache },
};

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

int nb_usage(FILE *f, const char *text, int code) {
        fputs(text, f);
        return code;
}

int main(int argc, char **argv) {
        if (argc < 2)
                return nb_usage(stderr, main_usage, NB_EXIT_USAGE);
        const char *verb = argv[1];
        if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0)
                return nb_usage(stdout, main_usage, 0);
        if (strcmp(verb, "--version") == 0) {
                printf("nestbox %s\n", NESTBOX_VERSION);
                return 0;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(verb, commands[i].name) == 0)
                        return commands[i].fn(argc - 1, argv + 1);
        return nb_die(NB_EXIT_USAGE, "'%s' is not a nestbox command; see 'nestbox --help'", verb);
}
