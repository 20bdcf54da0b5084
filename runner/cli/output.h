/* SPDX-License-Identifier: MIT */
/* What `test`, `run` and the worker share: --output DIR, the options that make an
 * action from a target, and the cache modes. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "action/action_workspace.h"
#include "action/execute.h"
#include "action/result.h"
#include "workspace/workspace.h"

/* Opens (creating) --output DIR; -errno with err. */
int nb_output_open(const char *arg, int *ret_fd, struct nb_error *err);

/* Removes DIR/junit.xml, coverage.lcov and coverage.xml, the reports of all targets
 * a run writes at its end: until then (and for good, when writing them fails or the
 * run is interrupted) no earlier run's can pass for this one's in a CI job that
 * uploads what is there. */
int nb_output_forget_reports(int out_dir, const char *arg, struct nb_error *err);

/* Writes DIR/<target>/ (a shard's DIR/<target>/shard-K-of-N/, with runs > 1 run R's
 * run-R/ inside): the artifact's files, and junit.xml with this invocation's
 * properties. *ret_outputs (may be NULL) gets the result's "outputs" object. */
int nb_output_write(int out_dir, const char *out_arg, const struct nb_result *r, unsigned runs, json_t **ret_outputs,
                    struct nb_error *err);

/* Before an item runs (and for one that never ran): empties its folder (above) and
 * takes from its target's folder what no item of this layout writes (an earlier
 * run's files beside shard folders, shards of another count, runs beyond `runs`), so
 * that an interrupted or never started item leaves nothing, never an earlier run's
 * pass. The folders of ws's other targets (lib/tests inside lib's) are spared; ws may
 * be NULL. Never follows a link: every folder is opened beneath out_dir. */
int nb_output_clear(int out_dir, const char *target, unsigned shard_index, unsigned shard_count, unsigned run,
                    unsigned runs, const struct nb_workspace *ws, struct nb_error *err);

/* The options test, actions and run share, for their getopt_long tables. */
enum {
        NB_OPT_SEED = 0x1000,
        NB_OPT_SHARD,
        NB_OPT_COVERAGE,
        NB_OPT_TIMEOUT,
        NB_OPT_MEMORY,
        NB_OPT_NO_CACHE,
        NB_OPT_FORCE,
        NB_OPT_CACHE_FAILURES,
        NB_OPT_REMOTE_CACHE,
        NB_OPT_REMOTE_READONLY,
        NB_OPT_REMOTE_TIMEOUT,
        NB_OPT_REMOTE_CA,
        NB_OPT_TEST_TIMEOUT,
        NB_OPT_SHUFFLE,
        NB_OPT_RUNS_PER_TEST,
        NB_OPT_ATTEMPTS,
        NB_OPT_UNTIL_FAILURE,
        NB_OPT_MAX_RUNS,
        NB_OPT_FLAKY_FAILS,
};
#define NB_ACTION_OPTIONS                                               \
        { "seed", required_argument, NULL, NB_OPT_SEED },               \
        { "shard", required_argument, NULL, NB_OPT_SHARD },             \
        { "coverage", no_argument, NULL, NB_OPT_COVERAGE },             \
        { "timeout", required_argument, NULL, NB_OPT_TIMEOUT },         \
        { "test-timeout", required_argument, NULL, NB_OPT_TEST_TIMEOUT }, \
        { "shuffle", no_argument, NULL, NB_OPT_SHUFFLE },               \
        { "memory", required_argument, NULL, NB_OPT_MEMORY }
/* nestbox test's runs and retries (action/attempts.h). */
#define NB_RETRY_OPTIONS                                                        \
        { "runs-per-test", required_argument, NULL, NB_OPT_RUNS_PER_TEST },     \
        { "attempts", required_argument, NULL, NB_OPT_ATTEMPTS },               \
        { "until-failure", no_argument, NULL, NB_OPT_UNTIL_FAILURE },           \
        { "max-runs", required_argument, NULL, NB_OPT_MAX_RUNS },               \
        { "flaky-fails", no_argument, NULL, NB_OPT_FLAKY_FAILS }
#define NB_REMOTE_OPTIONS                                                       \
        { "remote-cache", required_argument, NULL, NB_OPT_REMOTE_CACHE },       \
        { "remote-cache-readonly", no_argument, NULL, NB_OPT_REMOTE_READONLY }, \
        { "remote-timeout", required_argument, NULL, NB_OPT_REMOTE_TIMEOUT },   \
        { "remote-cache-ca", required_argument, NULL, NB_OPT_REMOTE_CA }
#define NB_CACHE_MODE_OPTIONS                                           \
        { "no-cache", no_argument, NULL, NB_OPT_NO_CACHE },             \
        { "force", no_argument, NULL, NB_OPT_FORCE },                   \
        { "cache-failures", no_argument, NULL, NB_OPT_CACHE_FAILURES }, \
        NB_REMOTE_OPTIONS
/* Their lines in each verb's --help. */
#define NB_TIMEOUT_USAGE                                                                                  \
        "  --test-timeout T   this run's timeout for every target (else each target's): seconds,\n"      \
        "                     or Bazel's short (60), moderate (300), long (900), eternal (3600)\n"       \
        "  --timeout T        the same as --test-timeout (its older name)\n"                             \
        "  --shuffle          the driver runs the tests in an order drawn from the seed (the same\n"     \
        "                     seed, the same order), recorded in result.json's \"order\"\n"
#define NB_RETRY_USAGE                                                                                    \
        "  --runs-per-test N  run every target N times, each run in a fresh sandbox (never a cache\n"    \
        "                     hit of another: the run number is in the action); TEST_RUN_NUMBER\n"     \
        "                     is 1..N, and each run has its own seed unless --seed is given\n"         \
        "  --attempts N       try a failed run up to N times in all (else each target's \"attempts\"),\n" \
        "                     only its failed tests when pytest can select them, with the run's\n"     \
        "                     seed (NESTBOX_ATTEMPT is 1..N); a later pass makes the target FLAKY\n"   \
        "  --flaky-fails      a FLAKY target exits 1 (by default it exits 0, as a pass)\n"            \
        "  --until-failure    run again and again, one run at a time, stop at the first failing\n"  \
        "                     run and print the command that reproduces it\n"                        \
        "  --max-runs M       with --until-failure: at most M runs (100)\n"
#define NB_REMOTE_USAGE                                                                                   \
        "  --remote-cache URL      share results through Bazel's HTTP cache protocol (nginx with\n"      \
        "                          WebDAV, bazel-remote, ...): URL/ac/ and URL/cas/; credentials\n"      \
        "                          from NESTBOX_REMOTE_HEADER ('Authorization: Bearer ...') or netrc\n" \
        "  --remote-cache-readonly read the remote cache, never write it (untrusted builds)\n"        \
        "  --remote-timeout SECS   per request, and for the uploads still pending at the end (60)\n"  \
        "  --remote-cache-ca FILE  trust this CA (PEM) for an https remote cache\n"

/* Takes option c when it is one of the above (o or m may be NULL when the verb has
 * none of that kind): 0 when taken, -1 when it is not one of them, else the exit code
 * after printing the problem (--seed x, --shard 3/2, --timeout 0). */
int nb_shared_option(int c, const char *arg, struct nb_action_options *o, struct nb_cache_modes *m);

/* A getopt_long default: case of a verb's parser. nb_shared_option(), and for an
 * option that is none of them "<opt>: unknown option or missing argument; see
 * 'nestbox <verb> --help'" (exit 2). 0 when taken, else the exit code. */
int nb_other_option(const char *verb, const char *opt, int c, const char *arg, struct nb_action_options *o,
                    struct nb_cache_modes *m);

/* Cuts argv at the first "--" after argv[0]: *argc becomes its index and the
 * NULL-terminated vector after it is returned (empty when there is none). */
char **nb_split_dashdash(int *argc, char **argv);
/* Opens the remote cache of the cache modes (m->remote.url, else workspace_url, the
 * workspace's remote_cache; none with --no-cache) into *ret (NULL when there is none).
 * Prints the problem and returns its exit code, else 0. */
int nb_remote_open(struct nb_cache_modes *m, const char *workspace_url, struct nb_remote **ret);
/* Waits for its pending uploads (at most --remote-timeout), prints its one warning if
 * any, records the run's counters in cache (`cache stats` shows them; cache may be
 * NULL), fills *stats with them when stats is not NULL (zeros without a remote), and
 * frees it. */
void nb_remote_close(struct nb_remote *r, struct nb_cache_dir *cache, struct nb_remote_stats *stats);

/* Writes a file the command line names (relative to the cwd or absolute), atomically;
 * a failure is a usage error "<opt> <path>: <why>". */
int nb_output_file(const char *opt, const char *path, const void *data, size_t len, struct nb_error *err);

/* The store's warn callback: one line on stderr. */
void nb_warn_line(const char *message, void *userdata);

/* [WORKSPACE] [TARGET...] (select.c): the workspace (argv[0] when it holds a
 * nestbox.json, else the nearest directory from the current one up that does) and the
 * targets named (all when none): a name, a prefix "dir/..." or a glob ("*" matches "/"
 * too), each target once, in the order named. Prints the problem (with a did-you-mean)
 * and returns its exit code, else 0. */
struct nb_selection {
        struct nb_workspace *ws;
        const struct nb_target **targets;
        size_t n;
};
int nb_load_targets(int argc, char **argv, struct nb_selection *ret);
void nb_selection_done(struct nb_selection *s);
#define _cleanup_selection_ __attribute__((cleanup(nb_selection_done)))
