/* SPDX-License-Identifier: MIT */
/* What `nestbox test` prints per target and at the end (summary.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "action/result.h"
#include "workspace/workspace.h"

struct nb_summary {
        size_t targets, passed, failed, timed_out, interrupted, errors, cached, tests, flaky;
        size_t items; /* work items (a target's shards); set by the caller when it shards */
        double wall_sec; /* of the whole invocation, set by the caller */
        bool color;      /* status words in colour (--color, NO_COLOR) */
        unsigned runs_per_test; /* > 1: each line names its run */
        bool count_runs;        /* the last line counts runs, not targets (several runs of each) */
};

/* Prints the target's line, why it has no report, its failing tests with the first
 * lines of each failure and, when verbose, its log; all test text escaped. Counts it
 * in s (may be NULL). A failed or timed-out target's line ends with its seed and the
 * command that reproduces it, "seed 42  nestbox repro 1a2b3c4d5e6f"; a FLAKY one lists
 * its flaky tests. */
void nb_summary_result(struct nb_summary *s, const struct nb_result *res, bool verbose);

/* Counts a result in s without printing it. */
void nb_summary_count(struct nb_summary *s, const struct nb_result *res);

/* With -v, a shard's plan: "  plan: shard 1/2: 351 of 701 tests, 5.81s expected
 * (largest shard 5.81s, ideal 5.80s; 700 of the 701 with learned durations)". */
void nb_summary_plan(const struct nb_result *res);

/* "3 targets: 2 passed, 1 failed, 0 cached, 57 tests in 0.9s" (", 1 flaky" when one
 * was; "10 runs: ..." with several runs of each); with shards
 * "1 target, 2 work items: 2 passed, ..." (the counts are of work items). */
void nb_summary_print(const struct nb_summary *s);

/* "interrupted by SIGINT; not run: a, b" (or "nothing left to run"). */
void nb_summary_interrupted(int sig, const struct nb_target *const *not_run, size_t n);

/* *acc becomes code when code ranks worse: passed < timeout < failed < infra < usage
 * < interrupted. */
void nb_exit_worst(int *acc, int code);

/* The hint a failure line ends with: "nestbox repro <the digest's first 12 digits>". */
#define NB_REPRO_HINT_FMT "nestbox repro %.12s"
