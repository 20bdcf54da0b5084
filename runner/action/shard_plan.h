/* SPDX-License-Identifier: MIT */
/* Shards inside a target (README, "Shards"), and the one planner nestbox uses.
 *
 * A sharded target's tests are split inside the sandbox by nestbox's driver (driver.py,
 * shard_plan()), because only pytest knows the test ids. What the driver is handed is
 * the plan's input: the durations pinned for the action group (cache/durations.h),
 * mounted at /nestbox/plan/durations.json and part of the action digest. The split is
 * longest processing time first: known tests sorted by duration (longest first, ties
 * by id) each onto the least loaded shard (ties by index); a test never seen goes to
 * shard hash(id) mod N. The same input gives the same split in every shard, so every
 * test runs in exactly one. Each shard writes what it got to /out/shard_plan.json,
 * which becomes its result's "shard_plan" (informational: the test could rewrite it).
 *
 * nb_plan_lpt() is the same rule for work items across CI machines (cli/machine.c). */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "action/action.h"
#include "action/result.h"
#include "cache/cache_dir.h"
#include "nestbox/error.h"

/* For an action with shard_count > 1: resolves it, pins its group's durations and sets
 * a->shard_durations (and the digest) from the pin. Nothing for an unsharded one. */
int nb_shard_plan_attach(struct nb_action *a, struct nb_cache_dir *c, struct nb_error *err);

/* Reads /out/shard_plan.json (untrusted: capped, each field checked) into *ret; leaves
 * it unset when the file is missing or malformed. */
void nb_shard_plan_collect(int out_fd, struct nb_shard_plan_info *ret);

/* The "shard_plan" object of a result record (NULL: unset). -EINVAL when malformed. */
int nb_shard_plan_from_json(json_t *v, struct nb_shard_plan_info *ret);

struct nb_plan_item {
        const char *key; /* ties are broken by key, then by position */
        double cost;     /* seconds; < 0: unknown, placed by a hash of key */
};

/* Longest first onto the least loaded of bins: ret_bin[i] is item i's bin (0-based);
 * ret_loads (may be NULL, bins long) the planned seconds of each. Linear in n after
 * an O(n log n) sort. */
int nb_plan_lpt(const struct nb_plan_item *items, size_t n, unsigned bins, unsigned *ret_bin, double *ret_loads);
