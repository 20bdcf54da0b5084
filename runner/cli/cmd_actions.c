/* SPDX-License-Identifier: MIT */
/* nestbox actions: a workspace's targets as actions (nestbox.action/v1), for build
 * tools to store, schedule and hand back to `nestbox run` or `nestbox worker`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "action/action_workspace.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "nestbox/cleanup.h"
#include "action/shard_plan.h"
#include "cache/cache_dir.h"
#include "workspace/workspace.h"

static const char usage[] =
        "usage: nestbox actions [options] [WORKSPACE] [TARGET...] [-- PYTEST_ARG...]\n"
        "\n"
        "Prints the actions of the named targets of the workspace (all when none is named)\n"
        "as JSON Lines: one nestbox.action/v1 object per line, with the declared globs\n"
        "expanded into files and host paths made absolute. Schema:\n"
        "runner/action/schema/action.schema.json. `nestbox run` of a printed action and\n"
        "`nestbox test` of the same target share one cache entry.\n"
        "\n"
        "  --seed N       the seed of every action (default: from the target's name)\n"
        "  --shard K/N    shard K of N (1-based), with the durations its group has pinned\n"
        "                 in the cache as shard.durations (what `nestbox test` hands it)\n"
        "  --cache DIR    the cache those are read from (default $XDG_CACHE_HOME/nestbox)\n"
        "  --coverage     coverage on for every action (else each target's setting)\n"
        "  --test-timeout T  the timeout of every action: seconds, or short (60), moderate\n"
        "                 (300), long (900), eternal (3600); else each target's\n"
        "  --timeout T    the same as --test-timeout (its older name)\n"
        "  --shuffle      the driver runs the tests in an order drawn from the seed\n"
        "  --memory SIZE  the memory limit of every action, as 512M or 2G\n"
        "  -- ARG...      pytest arguments appended to every action's pytest_args\n"
        "  -h, --help     this text\n"
        "\n"
        "Exit status: 0, or 2 for a usage or input error (bad nestbox.json, a glob that\n"
        "matches nothing).\n";

enum { OPT_CACHE = 256 };

static const struct option options[] = {
        NB_ACTION_OPTIONS,
        { "cache", required_argument, NULL, OPT_CACHE },
        { "help", no_argument, NULL, 'h' },
        {},
};

/* cache: open only for a shard, whose action carries its group's pinned durations. */
static int print_action(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_action_options *o,
                        struct nb_cache_dir *cache) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_action_ struct nb_action *a = NULL;
        _cleanup_free_ char *text = NULL;
        if (nb_action_from_target(ws, t, o, &a, &err) < 0 || nb_action_expand(a, &err) < 0 ||
            (cache && nb_shard_plan_attach(a, cache, &err) < 0))
                return nb_fail(&err);
        if (nb_action_to_json(a, &text) < 0)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        printf("%s\n", text);
        return 0;
}

int cmd_actions(int argc, char **argv) {
        struct nb_action_options opts = { 0 };
        const char *cache_arg = NULL;
        int c;
        opts.pytest_args = nb_split_dashdash(&argc, argv);
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case OPT_CACHE:
                        cache_arg = optarg;
                        break;
                default: {
                        int r = nb_other_option("actions", argv[optind - 1], c, optarg, &opts, NULL);
                        if (r != 0)
                                return r;
                }
                }
        }
        _cleanup_selection_ struct nb_selection sel = { 0 };
        int r = nb_load_targets(argc - optind, argv + optind, &sel);
        if (r != 0)
                return r;
        struct nb_cache_dir cache = { .fd = -1 };
        if (opts.shard_count > 1) {
                _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
                if (nb_cache_dir_open(&cache, cache_arg, &err) < 0)
                        return nb_fail(&err);
        }
        for (size_t i = 0; i < sel.n && r == 0; i++)
                r = print_action(sel.ws, sel.targets[i], &opts, cache.fd >= 0 ? &cache : NULL);
        if (cache.fd >= 0)
                nb_cache_dir_close(&cache);
        if (fflush(stdout) != 0 && r == 0)
                return nb_die(NB_EXIT_INFRA, "actions: writing to stdout failed");
        return r;
}
