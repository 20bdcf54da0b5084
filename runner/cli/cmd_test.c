/* SPDX-License-Identifier: MIT */
/* nestbox test: run a workspace's targets, each in its own sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/action_workspace.h"
#include "action/execute.h"
#include "cache/cache_dir.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "junit/junit.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "workspace/workspace.h"

static const char usage[] =
        "usage: nestbox test [options] [WORKSPACE] [TARGET...]\n"
        "\n"
        "Runs the targets of the workspace (the directory holding nestbox.json; default: the\n"
        "current directory), all of them when none is named. Each target's declared files\n"
        "are mounted read-only at /work, its locked venv at /venv, and pytest runs in the\n"
        "sandbox (see nestbox sandbox --help) with junit written to /out/junit.xml.\n"
        "\n"
        "  --cache DIR        the cache (default $XDG_CACHE_HOME/nestbox or ~/.cache/nestbox)\n"
        "  --output DIR       write DIR/<target>/junit.xml and log, and DIR/junit.xml for all\n"
        "  --seed N           PYTHONHASHSEED and TEST_RANDOM_SEED (default: from the target name)\n"
        "  --shard K/N        run shard K of N (1-based), exported as TEST_SHARD_INDEX/TOTAL\n"
        "  --coverage         measure coverage for every target (else each target's setting);\n"
        "                     --output gets coverage.lcov, coverage.xml and coverage.data\n"
        "  --no-cache         neither read nor write the result cache\n"
        "  --force            run even when the result is cached (and store the new result)\n"
        "  --cache-failures   replay cached failures too (by default only passes are replayed)\n"
        NB_REMOTE_USAGE
        "  -v, --verbose      print each target's full log\n"
        "  -h, --help         this text\n"
        "\n"
        "Prints one line per target, like 'project1/tests  PASSED in 0.84s (48 tests)', and for\n"
        "a failing target its failing tests with the first lines of each failure.\n"
        "--output DIR/<target>/ holds junit.xml, log, result.json (nestbox.result/v1) and\n"
        "coverage.*; DIR/junit.xml combines every target, one <testsuite> each.\n"
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

#define FAILURE_LINES 12

static void print_indented(const char *text, size_t len) {
        const char *p = text, *end = text + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                printf("      %.*s\n", (int) n, p);
                p += n + 1;
        }
}

static void print_result(const struct nb_result *res, bool verbose) {
        const struct nb_junit_report *rep = res->report;
        printf("%s  %s in %.2fs (%zu tests", res->target, nb_target_status_name(res->status), res->wall_sec, rep->tests);
        if (rep->failures + rep->errors)
                printf(", %zu failed", rep->failures + rep->errors);
        if (rep->skipped)
                printf(", %zu skipped", rep->skipped);
        printf(")%s\n", res->cached ? " (cached)" : "");
        if (res->why)
                printf("    %s\n", res->why);
        if (res->status != NB_TARGET_PASSED)
                for (size_t i = 0; i < rep->n_testcases; i++) {
                        const struct nb_junit_testcase *tc = &rep->testcases[i];
                        if (tc->result.outcome != NB_JUNIT_FAILED && tc->result.outcome != NB_JUNIT_ERROR)
                                continue;
                        printf("  %s %s%s%s\n", tc->result.outcome == NB_JUNIT_FAILED ? "FAILED" : "ERROR ",
                               tc->classname, *tc->classname ? "::" : "", tc->name);
                        const char *text = tc->result.text && *tc->result.text ? tc->result.text : tc->result.message;
                        if (text)
                                print_indented(text, nb_junit_text_head_len(text, FAILURE_LINES));
                }
        const struct nb_artifact_entry *log = nb_artifact_find(&res->artifact, "log");
        if (verbose && log)
                fwrite(log->data, 1, log->len, stdout);
        fflush(stdout);
}

/* A failed target outranks a timed-out one (the manual's "4: a target timed out, and
 * none failed otherwise"); errors of nestbox's own outrank both. */
static int exit_rank(int code) {
        static const int order[] = { NB_EXIT_PASSED, NB_EXIT_TIMEOUT, NB_EXIT_FAILED, NB_EXIT_INFRA, NB_EXIT_USAGE };
        for (size_t i = 0; i < NB_ELEMENTSOF(order); i++)
                if (order[i] == code)
                        return (int) i;
        return 0;
}

static void worst(int *acc, int code) {
        if (exit_rank(code) > exit_rank(*acc))
                *acc = code;
}

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
};

static void test_run_done(struct test_run *tr) {
        combined_done(&tr->combined);
}

/* One target, start to finish; returns its exit code. */
static int test_one(struct test_run *tr, const struct nb_workspace *ws, const struct nb_target *t,
                    const struct nb_action_options *o, const struct nb_cache_modes *m) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        _cleanup_action_ struct nb_action *a = NULL;
        struct nb_result res;
        int r = nb_action_from_target(ws, t, o, &a, &err);
        if (r < 0 || (r = nb_action_execute(a, &tr->store, m, &res, &err)) < 0)
                return nb_fail(&err);
        print_result(&res, tr->verbose);
        int code = nb_result_exit_code(&res);
        if (tr->out_dir >= 0) {
                if (nb_output_write(tr->out_dir, tr->out_arg, &res, NULL, &err) < 0)
                        worst(&code, nb_fail(&err));
                if (combined_add(&tr->combined, &res) < 0)
                        worst(&code, nb_die(NB_EXIT_INFRA, "out of memory"));
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
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+hv", options, NULL)) != -1) {
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
                        int r = nb_shared_option(c, optarg, &opts, &modes);
                        if (r < 0)
                                return nb_die(NB_EXIT_USAGE, "%s: unknown option or missing argument; see 'nestbox "
                                              "test --help'", argv[optind - 1]);
                        if (r > 0)
                                return r;
                }
                }
        }
        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        _cleanup_free_ const struct nb_target **targets = NULL;
        size_t n_targets = 0;
        int r = nb_load_targets(argc - optind, argv + optind, &ws, &targets, &n_targets);
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
        if ((r = nb_remote_open(&modes, ws->remote_cache, &tr.store.remote)) != 0) {
                nb_cache_dir_close(&cache);
                return r;
        }

        int status = NB_EXIT_PASSED;
        for (size_t i = 0; i < n_targets; i++)
                worst(&status, test_one(&tr, ws, targets[i], &opts, &modes));
        /* The summary waits only for the uploads still pending, at most --remote-timeout. */
        nb_remote_close(TAKE_PTR(tr.store.remote));
        nb_error_clear(&err);
        if (tr.out_dir >= 0 && combined_write(tr.out_dir, &tr.combined, &err) < 0)
                worst(&status, nb_fail(&err));
        if (tr.out_dir >= 0)
                close(tr.out_dir);
        nb_cache_dir_close(&cache);
        return status;
}
