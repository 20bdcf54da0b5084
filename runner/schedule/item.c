/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action/shard_plan.h"
#include "cache/durations.h"
#include "nestbox/cleanup.h"
#include "schedule/item.h"

static int by_expected(const void *pa, const void *pb) {
        const struct nb_work_item *a = pa, *b = pb;
        if (a->expected_ms != b->expected_ms)
                return a->expected_ms > b->expected_ms ? -1 : 1;
        return a->order < b->order ? -1 : a->order > b->order;
}

void nb_items_expect(struct nb_work_item *items, size_t n, nb_expected_ms_fn fn, void *userdata) {
        for (size_t i = 0; i < n; i++)
                items[i].expected_ms = fn ? fn(&items[i], userdata) : 0;
}

int nb_items_repeat(struct nb_work_item **items, size_t *n, unsigned runs) {
        if (runs <= 1)
                return 0;
        if (*n > SIZE_MAX / 2 / sizeof(**items) / runs)
                return -ENOMEM;
        size_t total = *n * runs;
        struct nb_work_item *v = calloc(total + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < total; i++) {
                v[i] = (*items)[i / runs];
                v[i].run = (unsigned) (i % runs) + 1;
        }
        free(*items);
        *items = v;
        *n = total;
        return 0;
}

void nb_items_order(struct nb_work_item *items, size_t n) {
        nb_qsort(items, n, sizeof(*items), by_expected);
}

/* shard_plan.c remembers the last plan, so the shards of one target plan once. */
static uint64_t planned_ms(const struct nb_action *a, unsigned index) {
        json_auto_t *plan = NULL;
        if (nb_shard_plan_make(a->shard_durations, a->shard_count, &plan) < 0)
                return 0; /* a hint: out of memory, or a malformed pin, is unknown */
        json_t *loads = json_object_get(plan, "loads_sec");
        return (uint64_t) (json_number_value(json_array_get(loads, index - 1)) * 1000.0 + 0.5);
}

uint64_t nb_item_expected_ms(const struct nb_work_item *it, void *userdata) {
        struct nb_item_expect *e = userdata;
        const struct nb_action *a = it->action;
        if (a && a->shard_durations && a->shard_count > 1 && it->shard_index >= 1)
                return planned_ms(a, it->shard_index);
        if (e->target != it->target) {
                json_auto_t *tests = NULL;
                e->target = it->target;
                e->learned_sec = 0;
                if (nb_durations_load(e->cache, it->target->name, &tests) == 0)
                        e->learned_sec = nb_durations_total(tests);
        }
        unsigned shards = it->shard_count ? it->shard_count : 1;
        return (uint64_t) (e->learned_sec * 1000.0 / shards + 0.5);
}

void nb_item_expect_done(struct nb_item_expect *e) {
        *e = (struct nb_item_expect) { .cache = e->cache };
}
