/* SPDX-License-Identifier: MIT */
/* Work items and CI machines (README, "Shards and CI machines").
 *
 * A run's work items are its targets, each split into its shards (the target's
 * "shards", or --shards-per-target N; --shard K/N runs one shard of every target).
 * --machine K/N keeps the K-th of N slices of them, K 1-based; without it the slice
 * is read from the CI's own variables (nb_machine_detect). The slices are planned by
 * longest processing time first (action/shard_plan.h, nb_plan_lpt) over each item's
 * expected seconds (the durations pinned for its action group, as a shard's split
 * is: its planned load, or an unsharded target's pinned durations; plus a start-up
 * allowance), so every machine given the same workspace and the same cache contents
 * computes the same slices, every item in exactly one; so does a machine that follows
 * another on one cache (what the first one learned does not change the groups' pins). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cache/cache_dir.h"
#include "cli/output.h"
#include "schedule/item.h"

struct nb_machine {
        unsigned index, count; /* 1-based index; count 0: the whole run */
        unsigned count_flag;   /* --machines N (the total for Kubernetes Indexed Jobs) */
        bool from_flag;
        char *found;           /* what detection found, for the one line it prints */
};

void nb_machine_done(struct nb_machine *m);

/* --machine K/N; --machines N. 0, else the exit code after printing the problem. */
int nb_machine_option(const char *arg, struct nb_machine *m);
int nb_machines_option(const char *arg, struct nb_machine *m);

/* Without --machine: the slice from Buildkite (BUILDKITE_PARALLEL_JOB, 0-based, and
 * BUILDKITE_PARALLEL_JOB_COUNT), GitLab (CI_NODE_INDEX, 1-based, CI_NODE_TOTAL),
 * CircleCI (CIRCLE_NODE_INDEX, 0-based, CIRCLE_NODE_TOTAL) or a Kubernetes Indexed
 * Job (JOB_COMPLETION_INDEX, 0-based; the total from --machines or NESTBOX_MACHINES).
 * A flag wins over the variables (m->found says it did); variables of two CIs that
 * disagree, an index without its total, or an index out of range are usage errors.
 * getenv is the lookup (tests pass their own). 0, else the exit code after printing. */
int nb_machine_detect(struct nb_machine *m, const char *(*getenv_fn)(const char *));

/* The items of sel (schedule/item.h; only target, shard and run filled;
 * shards_per_target 0: each target's own; a fixed --shard in o wins over both), each
 * shard `runs` times (a shard's runs together), in the selection's order. -errno. */
int nb_work_items(const struct nb_selection *sel, unsigned shards_per_target, unsigned runs,
                  const struct nb_action_options *o, struct nb_work_item **ret, size_t *ret_n);

/* Builds an item's action (it->action; left NULL or freed by the caller on failure). */
typedef int (*nb_item_build_fn)(struct nb_work_item *it, void *userdata, struct nb_error *err);

/* With m->count > 1, keeps only this machine's slice of the *n items (runs are work
 * items too), in their order; no item has its action afterwards. Each item's cost is
 * what its action group has pinned (cache/durations.h: a shard's planned load, an
 * unsharded target's durations, pinned here when its group has none), its action
 * built with build for that and freed at once, so machines that plan one group from
 * one cache, at once or one after another, compute the same slices. An item whose
 * action the workspace keeps from being built is unknown (the machine it falls to
 * says why); any other failure could plan differently elsewhere, so it is err. */
int nb_machine_slice(struct nb_cache_dir *cache, const struct nb_machine *m, struct nb_work_item *items, size_t *n,
                     nb_item_build_fn build, void *userdata, struct nb_error *err);
