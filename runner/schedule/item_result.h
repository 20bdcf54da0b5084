/* SPDX-License-Identifier: MIT */
/* What the pool's process keeps of finished items, beside printing them (cli/): each
 * one's report for the combined junit.xml, in the place the item was named (with -j
 * they finish in any order, the report's order stays the same); the remote counters
 * its process sent; and, at the end, how many targets the items were. Nothing here
 * prints. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "action/result.h"
#include "junit/junit.h"
#include "nestbox/error.h"
#include "schedule/item.h"
#include "schedule/item_run.h"

struct nb_item_reports {
        struct nb_junit_report **reports; /* one slot per item, NULL until it is done */
        size_t n;
};

/* n slots, all empty. -ENOMEM. */
int nb_item_reports_init(struct nb_item_reports *c, size_t n);
void nb_item_reports_done(struct nb_item_reports *c);

/* Takes res's report into slot, named after its target ("app/tests run 2" for a
 * later run of --runs-per-test: runs stay apart, shards fold in). -ENOMEM. */
int nb_item_reports_add(struct nb_item_reports *c, size_t slot, struct nb_result *res);

/* out_dir/junit.xml: one <testsuite> per target, its shards folded in, in the order named. */
int nb_item_reports_write(const struct nb_item_reports *c, int out_dir, struct nb_error *err);

/* Adds the remote counters o's process sent to *sum (its repeated fault counts once). */
void nb_item_outcome_add_remote(const struct nb_item_outcome *o, struct nb_remote_stats *sum);

/* The targets the items are: shards of one target count once, and with by_run each
 * run of a target once. */
size_t nb_items_count_targets(const struct nb_work_item *items, size_t n, bool by_run);
