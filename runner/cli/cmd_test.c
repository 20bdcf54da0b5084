/* SPDX-License-Identifier: MIT */
/* nestbox test: run a workspace's targets, each in its own sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "action/action_workspace.h"
#include "action/execute.h"
#include "cache/cache_dir.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "cli/summary.h"
#include "junit/junit.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
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
        "  --seed N           PYTHONHASHSEED and TEST_RANDOM_SEED (default: from the target name)\n"
        "  --shard K/N        run shard K of N (1-based), exported as TEST_SHARD_INDEX/TOTAL\n"
        "  --timeout SECONDS  this run's timeout for every target (else each target's)\n"
        "  --memory SIZE      this run's memory limit for every target, as 512M or 2G\n"
        "  --coverage         measure coverage for every target (else each target's setting);\n"
        "                     --output gets coverage.lcov, coverage.xml and coverage.data\n"
        "  --no-cache         neither read nor write the result cache\n"
        "  --force            run even when the result is cached (and store the new result)\n"
        "  --cache-failures   replay cached failures too (by default only passes are replayed)\n"
        NB_REMOTE_USAGE
        "  -v, --verbose      print each target's full log\n"
        "  -h, --help         this text (also: nestbox help test)\n"
        "\n"
        "Prints one line per target, like 'project1/tests  PASSED in 0.84s (48 tests)', for a\n"
        "failing target why and its failing tests with the first lines of each failure (test\n"
        "text is printed with control characters escaped, as \\x1b or \\u009b), and ends\n"
        "with one line: '3 targets: 2 passed, 1 failed, 0 cached, 57 tests in 0.9s'.\n"
        "A target whose pytest collects no test (or `-k` deselects all) FAILS: 'no tests\n"
        "collected'. --output DIR/<target>/ holds junit.xml, log, result.json\n"
        "(nestbox.result/v1) and coverage.*; DIR/junit.xml combines every target, one\n"
        "<testsuite> each.\n"
        "Exit status: 0 all passed, 1 a target failed, 2 usage or input error (bad\n"
        "nestbox.json, missing wheel, wrong hash), 3 sandbox or infrastructure error,\n"
        "4 a target timed out (and none failed otherwise).\n";

enum { OPT_CACHE = 256, OPT_OUTPUT };

static const struct option options[] = {
        { "cache", required_argument, NULL, OPT_CACHE },
        { "output", required_argument, NULL, OPT_OUTPUT },
        NB_ACTION_OPTIONS,
        NB_CACHE_MODE_OPTIONS,
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        {},
};

/* What the combined junit.xml needs of each target: its report, renamed after the
 * target (not the artifact, which may be large). */
struct combined {
        struct nb_junit_report **reports;
        size_t n;
};

static void combined_done(struct combined *c) {
        for (size_t i = 0; i < c->n; i++)
                nb_junit_report_free(c->reports[i]);
        free(c->reports);
}

static int combined_add(struct combined *c, struct nb_result *res) {
        struct nb_junit_report **grown = realloc(c->reports, (c->n + 1) * sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        c->reports = grown;
        c->reports[c->n] = TAKE_PTR(res->report);
        free(c->reports[c->n]->name);
        c->reports[c->n++]->name = TAKE_PTR(res->target);
        return 0;
}

static int combined_write(int out_dir, const struct combined *c, struct nb_error *err) {
        _cleanup_free_ struct nb_junit_suite *suites = calloc(c->n + 1, sizeof(*suites));
        if (!suites)
                return nb_error_set(err, ENOMEM, "--output: junit.xml");
        for (size_t i = 0; i < c->n; i++)
                suites[i].report = c->reports[i];
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        int r = nb_junit_suites_to_xml(suites, c->n, &xml, &len);
        if (r < 0 || (r = nb_write_file_atomic(out_dir, "junit.xml", xml, len, 0644)) < 0)
                return nb_error_set(err, -r, "--output: junit.xml");
        return 0;
}

struct test_run;
static void test_run_done(struct test_run *tr);

struct test_run {
        struct nb_store store;
        int out_dir;
        const char *out_arg;
        bool verbose;
        struct combined combined;
        struct nb_summary summary;
};

static void test_run_done(struct test_run *tr) {
        combined_done(&tr->combined);
}

/* Cancellation (CI cancels with SIGTERM, a person presses ^C): the first signal sets
 * the cell; a running sandbox then gets the timeout treatment (nb_sandbox_run sees the
 * signal through its signalfd), nothing new starts, and the run ends "interrupted".
 * A second signal outside a sandbox ends nestbox at once. */
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

/* One target, start to finish; returns its exit code. */
static int test_one(struct test_run *tr, const struct nb_workspace *ws, const struct nb_target *t,
                    const struct nb_action_options *o, const struct nb_cache_modes *m) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_action_ struct nb_action *a = NULL;
        struct nb_result res;
        int r = nb_action_from_target(ws, t, o, &a, &err);
        if (r < 0 || (r = nb_action_execute(a, &tr->store, m, &res, &err)) < 0) {
                if (cancelled)
                        return NB_EXIT_PASSED; /* not run: the summary names it */
                tr->summary.targets++;
                tr->summary.errors++;
                return nb_fail(&err);
        }
        nb_summary_result(&tr->summary, &res, tr->verbose);
        int code = nb_result_exit_code(&res);
        if (res.interrupted) {
                nb_result_done(&res);
                return code; /* nothing of it is written or combined */
        }
        if (tr->out_dir >= 0) {
                if (nb_output_write(tr->out_dir, tr->out_arg, &res, NULL, &err) < 0)
                        nb_exit_worst(&code, nb_fail(&err));
                if (combined_add(&tr->combined, &res) < 0)
                        nb_exit_worst(&code, nb_die(NB_EXIT_INFRA, "out of memory"));
        }
        nb_result_done(&res);
        return code;
}

int cmd_test(int argc, char **argv) {
        const char *cache_arg = NULL;
        struct nb_action_options opts = { 0 };
        struct nb_cache_modes modes = { 0 };
        __attribute__((cleanup(test_run_done))) struct test_run tr = { .out_dir = -1, .store.warn = nb_warn_line };
        int c;
        opts.pytest_args = nb_split_dashdash(&argc, argv);
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "hv", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        return nb_usage(stdout, usage, 0);
                case 'v':
                        tr.verbose = true;
                        break;
                case OPT_CACHE:
                        cache_arg = optarg;
                        break;
                case OPT_OUTPUT:
                        tr.out_arg = optarg;
                        break;
                default: {
                        int r = nb_other_option("test", argv[optind - 1], c, optarg, &opts, &modes);
                        if (r != 0)
                                return r;
                }
                }
        }
        _cleanup_selection_ struct nb_selection sel = { 0 };
        int r = nb_load_targets(argc - optind, argv + optind, &sel);
        if (r != 0)
                return r;

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        if (nb_cache_dir_open(&cache, cache_arg, &err) < 0)
                return nb_fail(&err);
        tr.store.dir = &cache;
        if (tr.out_arg && nb_output_open(tr.out_arg, &tr.out_dir, &err) < 0) {
                nb_cache_dir_close(&cache);
                return nb_fail(&err);
        }
        if ((r = nb_remote_open(&modes, sel.ws->remote_cache, &tr.store.remote)) != 0) {
                nb_cache_dir_close(&cache);
                return r;
        }

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int status = NB_EXIT_PASSED;
        catch_cancel();
        modes.cancel = &cancelled;
        size_t done = 0;
        for (; done < sel.n && !cancelled; done++) {
                size_t before = tr.summary.targets;
                nb_exit_worst(&status, test_one(&tr, sel.ws, sel.targets[done], &opts, &modes));
                if (cancelled && tr.summary.targets == before)
                        break; /* it never started */
        }
        /* The summary waits only for the uploads still pending, at most --remote-timeout. */
        nb_remote_close(TAKE_PTR(tr.store.remote), &cache, NULL);
        nb_error_clear(&err);
        if (tr.out_dir >= 0 && combined_write(tr.out_dir, &tr.combined, &err) < 0)
                nb_exit_worst(&status, nb_fail(&err));
        if (tr.out_dir >= 0)
                close(tr.out_dir);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        tr.summary.wall_sec = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        nb_summary_print(&tr.summary);
        nb_cache_dir_close(&cache);
        if (cancelled) {
                nb_summary_interrupted(cancelled, sel.targets + done, sel.n - done);
                return cancelled == SIGINT ? NB_EXIT_SIGINT : NB_EXIT_SIGTERM;
        }
        return status;
}
