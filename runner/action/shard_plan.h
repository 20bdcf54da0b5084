/* SPDX-License-Identifier: MIT */
/* Shards inside a target (README, "Shards"), and the one planner nestbox uses.
 *
 * The input of a sharded target's split is the durations pinned for its action group
 * (cache/durations.h), part of the action digest. From them the host plans, by
 * longest processing time first (nb_plan_lpt: known tests longest first, each onto
 * the least loaded shard), and hands every shard the same plan, read-only at
 * /nestbox/plan/plan.json (nestbox.shard-plan/v1: {"tests": {key: shard (0-based)},
 * "loads_sec": [...], "ideal_sec": s}); the plan is a function of the digest's
 * contents, so it needs no place of its own in the digest. Inside the sandbox only
 * pytest knows the test ids: nestbox's driver (driver.py, Shard) keeps a planned test
 * where the plan put it and a test the plan does not name (new since the pin) on
 * shard hash(id) mod N, the same in every shard, so every test runs in exactly one;
 * it trims other shards' parametrized calls before pytest makes items of them. Each
 * shard writes what it got to /out/shard_plan.json, which becomes its result's
 * "shard_plan" (informational: the test could rewrite it).
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

/* Hashed into a sharded action's digest: a change to how nb_plan_lpt places tests
 * must come with a new one. */
#define NB_SHARD_PLAN_SCHEMA "nestbox.shard-plan/v1"

/* The plan of count shards from durations (nestbox.durations/v1 text): the object
 * above, or its canonical text (keys sorted, compact). -EINVAL when durations is
 * malformed. */
int nb_shard_plan_make(const char *durations, unsigned count, json_t **ret);
int nb_shard_plan_text(const char *durations, unsigned count, char **ret);
/* The tests of durations (nestbox.durations/v1 text), parsed: {key: ms}. What these
 * three return is shared with the next caller: read it, never change it. */
int nb_shard_durations_json(const char *durations, json_t **ret);

/* For a sharded action with durations: its plan as trees/<digest>/plan.json, *ret_path
 * the directory to mount at /nestbox/plan. *ret_path NULL: none (every test by hash). */
int nb_shard_plan_materialize(struct nb_cache_dir *c, const struct nb_action *a, char **ret_path,
                              struct nb_error *err);

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
