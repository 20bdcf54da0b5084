/* SPDX-License-Identifier: MIT */
/* Work items: what `nestbox test` schedules. Today one per target; shards and runs
 * (--shards-per-target, --runs-per-test) add more of the same target, told apart by
 * shard and run. Each carries the memory limit it will run under (the budget the pool
 * keeps to) and its expected duration (the order it starts in). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "action/action.h"
#include "cache/cas.h"
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

/* How long an item is expected to take; 0 when nothing is known. */
typedef uint64_t (*nb_expected_ms_fn)(const struct nb_work_item *it, void *userdata);

/* Fills each item's expected_ms (the ETA's input). */
void nb_items_expect(struct nb_work_item *items, size_t n, nb_expected_ms_fn fn, void *userdata);

/* Sorts longest expected first; equal expectations (all unknown, the first time) keep
 * the order named. */
void nb_items_order(struct nb_work_item *items, size_t n);

/* The expected_ms hook nestbox uses today: the wall time of the item's target the
 * last time it ran (not replayed) with this cache, remembered by nb_item_remember_wall.
 * userdata is the struct nb_store. Per-test durations (cache/durations.c) can replace
 * it without touching the pool. */
uint64_t nb_item_last_wall_ms(const struct nb_work_item *it, void *userdata);

/* Remembers a run's wall time for nb_item_last_wall_ms: a small record in ac/ under
 * the digest of "nestbox.wall/v1", the target name, shard and run (gc ages it like
 * any record; losing it only loses the hint). */
void nb_item_remember_wall(struct nb_store *s, const struct nb_work_item *it, double wall_sec);
