/* SPDX-License-Identifier: MIT */
/* `nestbox test` and the warm interpreter (README "Warm interpreter"): the run's
 * zygotes started before its items fork (action/zygote_run.h decides where one pays),
 * and -v's one line naming the targets that ran warm. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "action/execute.h"
#include "action/result.h"
#include "cli/events.h"
#include "schedule/item.h"

struct nb_warm_tally {
        const struct nb_target **ran, **warm; /* one per item that ran (not a cache hit) */
        size_t n_ran, n_warm;
};

/* Starts the zygotes of the items (one warning line per group that cannot have one);
 * a venv built for one is announced on ev as an item's build is. */
void nb_test_prewarm(struct nb_work_item *items, size_t n, struct nb_store *s, const struct nb_cache_modes *m,
                     struct nb_events *ev);

/* Counts a finished item; -ENOMEM. */
int nb_warm_tally_add(struct nb_warm_tally *t, const struct nb_work_item *it, const struct nb_result *res);
/* 'warm interpreter: 2 of 3 targets ran warm: lib/tests, project1/tests' (nothing
 * when no target ran). */
void nb_warm_tally_print(struct nb_warm_tally *t);
void nb_warm_tally_done(struct nb_warm_tally *t);
