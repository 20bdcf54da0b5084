/* SPDX-License-Identifier: MIT */
/* nestbox test: run a workspace's targets, each in its own sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "action/action_workspace.h"
#include "action/attempts.h"
#include "action/execute.h"
#include "action/shard_plan.h"
#include "cache/cache_dir.h"
#include "action/zygote_run.h"
#include "cli/cli.h"
#include "cli/events.h"
#include "cli/machine.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/summary.h"
#include "cli/test_run.h"
#include "cli/test_warm.h"
#include "nestbox/cleanup.h"
#include "schedule/pool.h"
#include "schedule/resources.h"
#include "workspace/workspace.h"

static const char usage[] =
        "usage: nestbox test [options] [WORKSPACE] [TARGET...] [-- PYTEST_ARG...]\n"
        "\n"
        "Runs the targets of the workspace, all of them when none is named. The workspace is\n"
        "WORKSPACE when it holds nestbox.json, else the nearest directory from the current one\n"
        "up that does (as git finds .git). A TARGET is a name (project1/tests), a prefix\n"
        "(project1/... : every target under project1/) or a glob ('project*/tests'; * matches\n"
        "/ too); each target runs once however often it is named, and `nestbox list` prints\n"
        "them. Each target's declared files are mounted read-only at /work, its locked venv\n"
        "at /venv, and pytest runs in the sandbox (see nestbox sandbox --help) on exactly the\n"
        "declared test files, with junit written to /out/junit.xml. Options go anywhere;\n"
        "everything after -- is handed to pytest after the target's own pytest_args (it is\n"
        "part of the action, so of its digest: `nestbox test . lib/tests -- -k money -x`).\n"
        "\n"
        "  --cache DIR        the cache (default $XDG_CACHE_HOME/nestbox or ~/.cache/nestbox)\n"
        "  --output DIR       write DIR/<target>/junit.xml and log, and DIR/junit.xml for all\n"
        "  --seed N           PYTHONHASHSEED and TEST_RANDOM_SEED (default: one per run number,\n"
        "                     the same for every target: see \"Warm interpreter\")\n"
        "  --shard K/N        run shard K of N (1-based) of every target, exported as\n"
        "                     TEST_SHARD_INDEX/TEST_TOTAL_SHARDS (Bazel's test protocol)\n"
        "  --shards-per-target N  split every target's tests over N work items (else each\n"
        "                     target's \"shards\"), balanced by durations learned in the cache;\n"
        "                     -v prints each shard's plan\n"
        "  --machine K/N      run only this machine's slice (K of N, 1-based) of all work\n"
        "                     items; without it the slice comes from the CI's variables\n"
        "                     (Buildkite, GitLab CI, CircleCI, Kubernetes Indexed Jobs)\n"
        "  --machines N       the number of machines, for a Kubernetes Indexed Job's\n"
        "                     JOB_COMPLETION_INDEX (or NESTBOX_MACHINES=N)\n"
        NB_TIMEOUT_USAGE
        "  --memory SIZE      this run's memory limit for every target, as 512M or 2G\n"
        "  --coverage         measure coverage for every target (else each target's setting);\n"
        "                     --output gets coverage.lcov, coverage.xml and coverage.data\n"
        "  --zygote           a warm interpreter for every venv and seed, even of one item\n"
        "                     (NESTBOX_ZYGOTE=1). By default one Python per venv and seed that\n"
        "                     has imported pytest is forked into each target's fresh sandbox\n"
        "                     when two or more items that are not cached share them (README\n"
        "                     \"Warm interpreter\"); a target it cannot serve, and any failure\n"
        "                     of it, runs cold; -v says which targets ran warm\n"
        "  --no-zygote        every target starts its own interpreter (NESTBOX_ZYGOTE=0)\n"
        "  --no-cache         neither read nor write the result cache\n"
        "  --force            run even when the result is cached (and store the new result)\n"
        "  --cache-failures   replay cached failures too (by default only passes are replayed)\n"
        NB_REMOTE_USAGE
        NB_RETRY_USAGE
        "  -j N, --jobs N     run up to N targets at once, each in its own sandbox (default: the\n"
        "                     CPUs nestbox may use: its affinity mask and the cgroup's CPU quota);\n"
        "                     longest first by the test durations learned in the cache, the\n"
        "                     running targets' memory limits kept under the memory available (one\n"
        "                     line says when it waits)\n"
        "  --color WHEN       auto (default: on a terminal, unless NO_COLOR is set), always, never\n"
        "  --events FILE      write JSON lines (nestbox.events/v1) to FILE as things happen; with\n"
        "                     - they go to stdout and the lines for people to stderr\n"
        "  -v, --verbose      print each target's full log\n"
        "  -h, --help         this text (also: nestbox help test)\n"
        "\n"
        "Prints one line per target, like 'project1/tests  PASSED in 0.84s (48 tests)', for a\n"
        "failing target why and its failing tests with the first lines of each failure (test\n"
        "text is printed with control characters escaped, as \\x1b or \\u009b), and ends\n"
        "with one line: '3 targets: 2 passed, 1 failed, 0 cached, 57 tests in 0.9s'.\n"
        "On a terminal a status block below those lines shows what runs (done/total, running\n"
        "targets and their time, passed, failed, cached, ETA) and the targets that did not pass\n"
        "are repeated before the summary; elsewhere (CI logs) only the lines are printed.\n"
        "A target whose pytest collects no test (or `-k` deselects all) FAILS: 'no tests\n"
        "collected'. --output DIR/<target>/ (a shard's: DIR/<target>/shard-K-of-N/; with\n"
        "several runs, each run R's in run-R/ inside it), emptied as its item starts, holds\n"
        "junit.xml, log, result.json (nestbox.result/v1) and coverage.*; DIR/junit.xml\n"
        "combines every target, one <testsuite> each with its shards folded in, and\n"
        "DIR/coverage.lcov and DIR/coverage.xml sum the coverage of every target that\n"
        "measured it. `nestbox merge` combines the --output of several machines.\n"
        "A failed or timed-out target's line ends with its seed and the command that\n"
        "reproduces it ('seed 42  nestbox repro 1a2b3c4d5e6f'). After several runs\n"
        "(--runs-per-test, --until-failure, retries) a flake table lists every test that\n"
        "failed at least once: its runs, failures, flake rate and the seeds it failed with.\n"
        "A target that failed and passed on a later attempt is FLAKY, on its own line, its\n"
        "junit.xml with Maven Surefire's <flakyFailure>/<flakyError> (a run that never\n"
        "passed: <rerunFailure>/<rerunError>), and is cached as flaky.\n"
        "Exit status: 0 all passed (FLAKY counts as passed unless --flaky-fails), 1 a target\n"
        "failed (or was FLAKY with --flaky-fails), 2 usage or input error (bad\n"
        "nestbox.json, missing wheel, wrong hash), 3 sandbox or infrastructure error,\n"
        "4 a target timed out (and none failed otherwise).\n";

enum { OPT_CACHE = 256, OPT_OUTPUT, OPT_COLOR, OPT_EVENTS, OPT_SHARDS_PER_TARGET, OPT_MACHINE, OPT_MACHINES, OPT_ZYGOTE,
       OPT_NO_ZYGOTE };

static const struct option options[] = {
        { "cache", required_argument, NULL, OPT_CACHE },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "shards-per-target", required_argument, NULL, OPT_SHARDS_PER_TARGET },
        { "machine", required_argument, NULL, OPT_MACHINE },
        { "machines", required_argument, NULL, OPT_MACHINES },
        NB_ACTION_OPTIONS,
        NB_CACHE_MODE_OPTIONS,
        NB_RETRY_OPTIONS,
        { "jobs", required_argument, NULL, 'j' },
        { "zygote", no_argument, NULL, OPT_ZYGOTE },
        { "no-zygote", no_argument, NULL, OPT_NO_ZYGOTE },
        { "color", required_argument, NULL, OPT_COLOR },
        { "events", required_argument, NULL, OPT_EVENTS },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        {},
};

/* Cancellation (CI cancels with SIGTERM, a person presses ^C): the first signal sets
 * the cell; every running sandbox then gets the timeout treatment (the pool hands the
 * signal to each item's process, whose nb_sandbox_run sees it through its signalfd),
 * nothing new starts, and the run ends "interrupted". A second signal kills the
 * sandboxes at once. */
static volatile sig_atomic_t cancelled;

static void on_cancel(int sig) {
        if (cancelled)
                _exit(128 + sig);
        cancelled = sig;
}

static void catch_cancel(void) {
        struct sigaction sa = { .sa_handler = on_cancel, .sa_flags = SA_RESTART };
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);
}

static const char *env_get(const char *name) {
        return getenv(name);
}

/* Runs of each target: --runs-per-test, or with --until-failure at most --max-runs. */
static unsigned runs_wanted(const struct nb_action_options *o) {
        if (o->until_failure)
                return o->max_runs ? o->max_runs : NB_UNTIL_FAILURE_DEFAULT_RUNS;
        return o->runs ? o->runs : 1;
}

/* An item's action: the target with the item's shard and run, a shard's carrying its
 * group's pinned durations (action/shard_plan.h). */
static int build_item(const struct nb_selection *sel, const struct nb_action_options *o, struct nb_cache_dir *cache,
                      struct nb_work_item *it, struct nb_error *err) {
        struct nb_action_options io = *o;
        io.shard_index = it->shard_index;
        io.shard_count = it->shard_count;
        io.run = it->run ? it->run : 1;
        int r = nb_action_from_target(sel->ws, it->target, &io, &it->action, err);
        return r < 0 ? r : nb_shard_plan_attach(it->action, cache, err);
}

/* nb_machine_slice's way to build an item's action: as the run will. */
struct planning {
        const struct nb_selection *sel;
        const struct nb_action_options *o;
        struct nb_cache_dir *cache;
};

static int plan_build(struct nb_work_item *it, void *userdata, struct nb_error *err) {
        const struct planning *pl = userdata;
        return build_item(pl->sel, pl->o, pl->cache, it, err);
}

/* The work items of this machine's slice: each target's shards (cli/machine.h),
 * each of them once per run (--runs-per-test), a shard's runs together; each item
 * retries its failures itself (nb_item_run). */
static int make_items(struct nb_test_run *tr, const struct nb_selection *sel, const struct nb_action_options *o,
                      unsigned shards_per_target, const struct nb_machine *m, size_t *ret_all, struct nb_error *err) {
        unsigned runs = runs_wanted(o);
        size_t n = 0;
        int r = nb_work_items(sel, shards_per_target, runs, o, &tr->items, &n);
        if (r < 0)
                return nb_error_set(err, -r, "test");
        *ret_all = n;
        /* Every item is zeroed: nb_test_run_done may free them all from here on. */
        tr->n = n;
        tr->outcomes = calloc(n + 1, sizeof(*tr->outcomes));
        tr->not_run = calloc(n + 1, sizeof(*tr->not_run));
        tr->cleared = calloc(n + 1, sizeof(*tr->cleared));
        if (!tr->outcomes || !tr->not_run || !tr->cleared || nb_item_reports_init(&tr->combined, n) < 0)
                return nb_error_set(err, ENOMEM, "test");
        /* The slices are planned from every item's action group, this machine's or
         * not; the items kept are built below, where one the workspace keeps from
         * being built stops this machine as it would without machines. */
        struct planning pl = { sel, o, tr->store.dir };
        if (m && m->count > 1 && (r = nb_machine_slice(tr->store.dir, m, tr->items, &tr->n, plan_build, &pl, err)) < 0)
                return r;
        for (size_t i = 0; i < tr->n; i++) {
                struct nb_work_item *it = &tr->items[i];
                if ((r = build_item(sel, o, tr->store.dir, it, err)) < 0)
                        return r;
                it->run = it->action->run;
                it->attempts = nb_target_attempts(it->target, o);
                it->memory = it->action->policy.memory;
                it->order = i;
                tr->flakes_wanted = tr->flakes_wanted || runs > 1 || it->attempts > 1;
        }
        return 0;
}

static int parse_jobs(const char *arg, unsigned *ret) {
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || *arg == '-' || v == 0 || v > 1024)
                return nb_die(NB_EXIT_USAGE, "-j %s: expected a number of targets from 1 to 1024", arg);
        *ret = (unsigned) v;
        return 0;
}

/* --events -: stdout carries the events alone, the lines for people move to stderr. */
static int open_events(const char *arg, struct nb_events *ev) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (strcmp(arg, "-") == 0) {
                int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
                if (fd < 0 || !(ev->f = fdopen(fd, "w")) || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                        return nb_die(NB_EXIT_INFRA, "--events -: %s", strerror(errno));
                return 0;
        }
        if (nb_events_open(arg, ev, &err) < 0)
                return nb_fail(&err);
        return 0;
}

/* An error before any item started: said on stderr and, with --events, as the run's
 * end. */
static int fail_before_start(struct nb_test_run *tr, unsigned jobs, struct nb_error *err) {
        nb_events_run_failed(&tr->events, "test", jobs, nb_exit_code(err), nb_error_message(err));
        return nb_fail(err);
}

int cmd_test(int argc, char **argv) {
        const char *cache_arg = NULL, *events_arg = NULL;
        struct nb_action_options opts = { 0 };
        struct nb_cache_modes modes = { 0 };
        __attribute__((cleanup(nb_test_run_done))) struct nb_test_run tr = { .out_dir = -1, .store.warn = nb_warn_line,
                                                                         .modes = &modes, .cancelled = &cancelled };
        unsigned jobs = 0, shards_per_target = 0;
        __attribute__((cleanup(nb_machine_done))) struct nb_machine machine = {};
        int color = NB_COLOR_AUTO, c, r;
        opts.pytest_args = nb_split_dashdash(&argc, argv);
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "hvj:", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case 'v':
                        tr.verbose = true;
                        break;
                case 'j':
                        if ((r = parse_jobs(optarg, &jobs)) != 0)
                                return r;
                        break;
                case OPT_COLOR:
                        if ((color = nb_color_parse(optarg)) < 0)
                                return nb_die(NB_EXIT_USAGE, "--color %s: expected auto, always or never", optarg);
                        break;
                case OPT_EVENTS:
                        events_arg = optarg;
                        break;
                case OPT_ZYGOTE:
                case OPT_NO_ZYGOTE:
                        nb_zygote_set_mode(c == OPT_ZYGOTE);
                        break;
                case OPT_CACHE:
                        cache_arg = optarg;
                        break;
                case OPT_OUTPUT:
                        tr.out_arg = optarg;
                        break;
                case OPT_SHARDS_PER_TARGET: {
                        char *end = NULL;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*optarg < '1' || *optarg > '9' || *end || v > NB_MAX_SHARDS_PER_TARGET)
                                return nb_die(NB_EXIT_USAGE, "--shards-per-target %s: expected an integer from 1 to %d",
                                              optarg, NB_MAX_SHARDS_PER_TARGET);
                        shards_per_target = (unsigned) v;
                        break;
                }
                case OPT_MACHINE:
                        if ((r = nb_machine_option(optarg, &machine)) != 0)
                                return r;
                        break;
                case OPT_MACHINES:
                        if ((r = nb_machines_option(optarg, &machine)) != 0)
                                return r;
                        break;
                default:
                        if ((r = nb_other_option("test", argv[optind - 1], c, optarg, &opts, &modes)) != 0)
                                return r;
                }
        }
        if (!jobs)
                jobs = nb_cpus_available();
        /* --until-failure stops at the first failing run: the runs go one after another. */
        if (opts.until_failure)
                jobs = 1;
        tr.options = &opts;
        /* First, so that a reader of the events sees a run end however early it does. */
        if (events_arg && (r = open_events(events_arg, &tr.events)) != 0)
                return r;
        _cleanup_selection_ struct nb_selection sel = { 0 };
        if ((r = nb_load_targets(argc - optind, argv + optind, &sel)) != 0 ||
            (r = nb_machine_detect(&machine, env_get)) != 0) {
                nb_events_run_failed(&tr.events, "test", jobs, r, NULL);
                return r;
        }
        tr.ws = sel.ws;

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        /* From here a ^C is a cancel, not a kill: resolving the targets already writes
         * the digest memo through the cache's tmp/. */
        catch_cancel();
        struct nb_cache_dir cache;
        if (nb_cache_dir_open(&cache, cache_arg, &err) < 0)
                return fail_before_start(&tr, jobs, &err);
        tr.store.dir = &cache;
        size_t n_all = 0;
        if ((tr.out_arg && (nb_output_open(tr.out_arg, &tr.out_dir, &err) < 0 ||
                            nb_output_forget_reports(tr.out_dir, tr.out_arg, &err) < 0)) ||
            make_items(&tr, &sel, &opts, shards_per_target, &machine, &n_all, &err) < 0) {
                nb_cache_dir_close(&cache);
                return fail_before_start(&tr, jobs, &err);
        }
        if (machine.found)
                printf("machine %u/%u (%s): %zu of %zu work items\n", machine.index, machine.count, machine.found,
                       tr.n, n_all);
        if ((r = nb_remote_open(&modes, sel.ws->remote_cache, &tr.store.remote)) != 0) {
                nb_cache_dir_close(&cache);
                nb_events_run_failed(&tr.events, "test", jobs, r, NULL);
                return r;
        }
        /* Serially the order does not change the total, so it stays the order named. */
        struct nb_item_expect expect = { .cache = &cache };
        nb_items_expect(tr.items, tr.n, nb_item_expected_ms, &expect);
        nb_item_expect_done(&expect);
        if (jobs > 1)
                nb_items_order(tr.items, tr.n);
        tr.summary.color = nb_color_wanted(color);
        tr.summary.runs_per_test = runs_wanted(&opts);
        tr.summary.count_runs = tr.summary.runs_per_test > 1;
        tr.progress = nb_progress_new(tr.items, tr.n, jobs);
        nb_events_run_started(&tr.events, "test", tr.n, jobs);

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        modes.cancel = &cancelled;
        nb_test_prewarm(tr.items, tr.n, &tr.store, &modes, &tr.events); /* a ^C in a venv build cancels */
        const struct nb_pool_config cfg = { .jobs = jobs, .memory_budget = nb_mem_available(),
                                            .tick_ms = nb_progress_live(tr.progress) ? 250 : 0, .cancel = &cancelled };
        size_t started = 0;
        if (nb_pool_run(tr.items, tr.n, &cfg, &nb_test_run_pool_ops, &tr, &started, &err) < 0)
                nb_exit_worst(&tr.status, nb_fail(&err));
        nb_progress_end(tr.progress);
        nb_zygote_stop_all();
        nb_test_run_clear_never_started(&tr);
        /* The summary waits only for the uploads still pending, at most --remote-timeout. */
        bool has_remote = tr.store.remote != NULL;
        struct nb_remote_stats remote;
        nb_remote_add_stats(tr.store.remote, &tr.remote);
        nb_remote_close(TAKE_PTR(tr.store.remote), &cache, &remote);
        nb_error_clear(&err);
        if (tr.out_dir >= 0 && nb_item_reports_write(&tr.combined, tr.out_dir, &err) < 0)
                nb_exit_worst(&tr.status, nb_fail(&err));
        nb_error_clear(&err);
        if (tr.out_dir >= 0 && nb_coverage_sum_write(&tr.coverage, tr.out_dir, &err) < 0)
                nb_exit_worst(&tr.status, nb_fail(&err));
        if (tr.out_dir >= 0)
                close(tr.out_dir);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        tr.summary.wall_sec = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (opts.until_failure && tr.failed_run)
                printf("until-failure: run %u failed (seed %llu); reproduce it: " NB_REPRO_HINT_FMT "\n", tr.failed_run,
                       (unsigned long long) tr.failed_seed, tr.failed_action);
        else if (opts.until_failure && !cancelled)
                printf("until-failure: no failure in %zu runs\n", tr.summary.targets);
        if (tr.flakes_wanted || tr.flakes.retried)
                nb_flake_table_print(&tr.flakes);
        /* Shards are work items of one target (or of one run of it, with several runs
         * each): the line counts each once, when every item was counted (an
         * interrupted run counts what it has). */
        if (tr.summary.targets == tr.n) {
                tr.summary.items = tr.n;
                tr.summary.targets = nb_items_count_targets(tr.items, tr.n, tr.summary.count_runs);
        }
        if (tr.verbose)
                nb_warm_tally_print(&tr.warm);
        nb_summary_print(&tr.summary);
        nb_cache_dir_close(&cache);
        for (size_t i = started; i < tr.n; i++)
                if (!tr.n_not_run || tr.not_run[tr.n_not_run - 1] != tr.items[i].target) /* runs of one target */
                        tr.not_run[tr.n_not_run++] = tr.items[i].target;
        int status = !cancelled ? tr.status : cancelled == SIGINT ? NB_EXIT_SIGINT : NB_EXIT_SIGTERM;
        _cleanup_free_ const char **names = calloc(tr.n_not_run + 1, sizeof(*names));
        for (size_t i = 0; names && i < tr.n_not_run; i++)
                names[i] = tr.not_run[i]->name;
        nb_events_run_finished(&tr.events, &tr.summary, status, cancelled, names, names ? tr.n_not_run : 0,
                               has_remote ? &remote : NULL, NULL);
        nb_exit_worst(&status, nb_events_check(&tr.events, events_arg));
        if (cancelled)
                nb_summary_interrupted(cancelled, tr.not_run, tr.n_not_run);
        return status;
}
