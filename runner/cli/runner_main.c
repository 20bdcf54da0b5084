/* SPDX-License-Identifier: MIT */
/* nestbox-runner: the commands that need the whole runner (workspaces, venvs, JUnit,
 * artifacts, the cache). nestbox execs it for them; it can be run directly too. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct nb_command commands[] = {
        { "sandbox", cmd_sandbox },
        { "doctor", cmd_doctor },
        { "venv", cmd_venv },
        { "test", cmd_test },
        { "cache", cmd_cache },
        { "actions", cmd_actions },
        { "run", cmd_run },
        { "worker", cmd_worker },
        { "list", cmd_list },
        { "repro", cmd_repro },
        { "bundle", cmd_bundle },
        { "merge", cmd_merge },
};

int main(int argc, char **argv) {
        if (argc < 2)
                return nb_die(NB_EXIT_USAGE, "nestbox-runner is run by nestbox; see 'nestbox --help'");
        int r = nb_dispatch(commands, sizeof(commands) / sizeof(commands[0]), argc, argv);
        if (r >= 0)
                return r;
        return nb_die(NB_EXIT_USAGE, "'%s' is not a nestbox command; see 'nestbox --help'", argv[1]);
}
