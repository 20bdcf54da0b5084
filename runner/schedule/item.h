/* SPDX-License-Identifier: MIT */
/* Work items: what `nestbox test` schedules, one per target, shard (--shards-per-target)
 * and run (--runs-per-test), told apart by shard and run. Each carries the memory limit
 * it will run under (the budget the pool keeps to) and its expected duration (the
 * order it starts in). */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "action/action.h"
#include "cache/cache_dir.h"
#include "workspace/workspace.h"

struct nb_work_item {
        const struct nb_target *target;
        unsigned shard_index, shard_count; /* 1-based; count 1: the whole target */
        unsigned run;                      /* 1-based */
        unsigned attempts;                 /* a failed run is tried this often in all (0: once) */
        struct nb_action *action;          /* built when it starts; owned */
        uint64_t memory;                   /* its memory limit in bytes; 0: none */
        uint64_t expected_ms;              /* from the expected_ms hook; 0: unknown */
        size_t order;                      /* its place as named */
};

/* Each of the n items runs times (--runs-per-test), a target's runs together, numbered
 * from 1; *items is replaced and *n multiplied. -ENOMEM, leaving both as they were. */
int nb_items_repeat(struct nb_work_item **items, size_t *n, unsigned runs);

/* How long an item is expected to take; 0 when nothing is known. */
typedef uint64_t (*nb_expected_ms_fn)(const struct nb_work_item *it, void *userdata);

/* Fills each item's expected_ms (the ETA's input). */
void nb_items_expect(struct nb_work_item *items, size_t n, nb_expected_ms_fn fn, void *userdata);

/* Sorts longest expected first; equal expectations (all unknown, the first time) keep
 * the order named. */
void nb_items_order(struct nb_work_item *items, size_t n);

/* The expected_ms hook nestbox uses: what the durations store (cache/durations.h)
 * knows of the item's tests. A shard with a pinned plan: its planned load (the sum
 * of its tests' durations, action/shard_plan.h); any other item: the sum of its
 * target's learned durations (a shard without a plan: that over the shard count,
 * its tests being spread by hash). Nothing learned: 0. userdata is a struct
 * nb_item_expect, whose memo serves the runs of one target, which come together
 * (a shard's plan is remembered by shard_plan.c). */
struct nb_item_expect {
        struct nb_cache_dir *cache;
        const struct nb_target *target; /* the memo: the last item's target, */
        double learned_sec;             /* and its learned durations summed */
};
uint64_t nb_item_expected_ms(const struct nb_work_item *it, void *userdata);
void nb_item_expect_done(struct nb_item_expect *e);
