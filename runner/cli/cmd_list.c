/* SPDX-License-Identifier: MIT */
/* nestbox list: the targets of a workspace, one name a line. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"
#include "cli/output.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

static const char usage[] =
        "usage: nestbox list [WORKSPACE] [TARGET...]\n"
        "\n"
        "Prints the targets of the workspace, one name a line, sorted: all of them, or those\n"
        "the arguments select, exactly as `nestbox test` selects them (a name, a prefix such\n"
        "as project1/..., or a glob such as 'project*/tests' in which * matches / too).\n"
        "The workspace is WORKSPACE when it holds nestbox.json, else the nearest directory\n"
        "from the current one up that does.\n"
        "\n"
        "  -h, --help     this text\n"
        "\n"
        "Exit status: 0, or 2 for a usage or input error (no workspace, bad nestbox.json, a\n"
        "name or pattern that selects no target).\n";

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        {},
};

int cmd_list(int argc, char **argv) {
        int c;
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                if (c == 'h')
                        return nb_usage(stdout, usage, 0);
                return nb_die(NB_EXIT_USAGE, "%s: unknown option; see 'nestbox list --help'", argv[optind - 1]);
        }
        _cleanup_selection_ struct nb_selection sel = { 0 };
        int r = nb_load_targets(argc - optind, argv + optind, &sel);
        if (r != 0)
                return r;
        /* In the workspace's order (sorted), whatever the order named. */
        for (size_t i = 0; i < sel.ws->n_targets; i++)
                for (size_t k = 0; k < sel.n; k++)
                        if (sel.targets[k] == &sel.ws->targets[i]) {
                                _cleanup_free_ char *e = nb_escape(sel.ws->targets[i].name, 0);
                                printf("%s\n", e ? e : "?");
                        }
        if (fflush(stdout) != 0)
                return nb_die(NB_EXIT_INFRA, "list: writing to stdout failed");
        return 0;
}
