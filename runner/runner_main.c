/* SPDX-License-Identifier: MIT */
/* nestbox-runner: the commands that need the whole runner (workspaces, venvs, JUnit,
 * artifacts, the cache). nestbox execs it for them; it can be run directly too. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

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

int main(int argc, char **argv) {
        if (argc < 2)
                return nb_die(NB_EXIT_USAGE, "nestbox-runner is run by nestbox; see 'nestbox --help'");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].fn(argc - 1, argv + 1);
        return nb_die(NB_EXIT_USAGE, "'%s' is not a nestbox command; see 'nestbox --help'", argv[1]);
}
