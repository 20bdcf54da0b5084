/* SPDX-License-Identifier: MIT */
/* Actions from a workspace's targets (nestbox.json) and the invocation's options. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "action/action.h"
#include "workspace/workspace.h"

/* What the command line adds to a target to make an action. */
struct nb_action_options {
        uint64_t seed;
        bool seed_set;        /* else derived from the target's name: stable across runs */
        unsigned shard_index; /* 1-based */
        unsigned shard_count; /* 0 or 1: no sharding */
        bool coverage;        /* on for every target (else the target's setting) */
        unsigned run;         /* 1-based; 0 means 1 */
        unsigned attempt;     /* 1-based; 0 means 1 */
        bool shuffle;         /* --shuffle */
        char **select;        /* NULL, or the node ids a retry keeps */
        unsigned runs;        /* --runs-per-test; 0 means 1 */
        unsigned attempts;    /* --attempts; 0: the target's */
        bool until_failure;   /* --until-failure */
        unsigned max_runs;    /* --max-runs; 0: the default */
        bool flaky_fails;     /* --flaky-fails: a FLAKY target exits 1 */
        uint64_t timeout_ms;  /* 0: the target's */
        uint64_t memory;      /* bytes; 0: the target's */
        char **pytest_args;   /* NULL or NULL-terminated: after the target's own */
};

int nb_action_from_target(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_action_options *o,
                          struct nb_action **ret, struct nb_error *err);

/* Orders "NAME=value" strings by NAME (qsort comparator). */
int nb_env_cmp(const void *a, const void *b);

/* How often a failed run of t is tried in all under these options: --attempts, else
 * the target's "attempts", at least 1. */
unsigned nb_target_attempts(const struct nb_target *t, const struct nb_action_options *o);
