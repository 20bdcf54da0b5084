/* SPDX-License-Identifier: MIT */
/* The LPT planner (action/shard_plan.h): balance, determinism, every item placed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/shard_plan.h"
#include "test.h"

/* One 4.6 s test among 700 fast ones (5 ms each): the largest bin is within 10% of
 * the ideal, max(total / bins, longest). */
TEST(lpt_one_long_among_many_fast) {
        enum { N = 701 };
        static struct nb_plan_item items[N];
        static char keys[N][32];
        unsigned bin[N];
        for (unsigned bins = 2; bins <= 4; bins++) {
                double total = 0, longest = 0;
                for (int i = 0; i < N; i++) {
                        snprintf(keys[i], sizeof(keys[i]), "tests.test_x::test_%d", i);
                        items[i] = (struct nb_plan_item) { keys[i], i == 350 ? 4.6 : 0.005 };
                        total += items[i].cost;
                        longest = items[i].cost > longest ? items[i].cost : longest;
                }
                double loads[4];
                CHECK_EQ_INT(nb_plan_lpt(items, N, bins, bin, loads), 0);
                double ideal = total / bins > longest ? total / bins : longest, largest = 0, sum = 0;
                for (unsigned b = 0; b < bins; b++) {
                        largest = loads[b] > largest ? loads[b] : largest;
                        sum += loads[b];
                }
                CHECK(largest <= 1.1 * ideal);
                CHECK(sum > total - 1e-6 && sum < total + 1e-6);
                for (int i = 0; i < N; i++)
                        CHECK(bin[i] < bins);
        }
}

/* The same items in another order give every item the same bin. */
TEST(lpt_is_deterministic) {
        struct nb_plan_item a[] = { { "a", 3 }, { "b", 1 }, { "c", -1 }, { "d", 2 }, { "e", -1 }, { "f", 2 } };
        struct nb_plan_item b[] = { a[5], a[4], a[3], a[2], a[1], a[0] };
        unsigned ba[6], bb[6];
        CHECK_EQ_INT(nb_plan_lpt(a, 6, 3, ba, NULL), 0);
        CHECK_EQ_INT(nb_plan_lpt(b, 6, 3, bb, NULL), 0);
        for (int i = 0; i < 6; i++)
                CHECK_EQ_INT(ba[i], bb[5 - i]);
}

/* Unknown items count as the average and are spread, not piled onto one bin. */
TEST(lpt_spreads_unknown_items) {
        struct nb_plan_item items[8];
        char keys[8][8];
        unsigned bin[8], per[4] = { 0 };
        for (int i = 0; i < 8; i++) {
                snprintf(keys[i], sizeof(keys[i]), "t%d", i);
                items[i] = (struct nb_plan_item) { keys[i], -1 };
        }
        CHECK_EQ_INT(nb_plan_lpt(items, 8, 4, bin, NULL), 0);
        for (int i = 0; i < 8; i++)
                per[bin[i]]++;
        for (int b = 0; b < 4; b++)
                CHECK_EQ_INT(per[b], 2);
        CHECK(nb_plan_lpt(items, 8, 0, bin, NULL) < 0);
        CHECK_EQ_INT(nb_plan_lpt(items, 0, 3, bin, NULL), 0);
}

/* The plan a shard is handed: every pinned test on one shard of range, the same text
 * for the same durations, loads summing to the whole, the ideal max(total / N, longest). */
TEST(shard_plan_text_places_every_test) {
        const char *durations = "{\"schema\":\"nestbox.durations/v1\",\"tests\":{\"t::a\":4600,\"t::b\":5,"
                                "\"t::c\":5,\"t::d\":5,\"t::e\":1}}";
        char *text = NULL, *again = NULL;
        CHECK_EQ_INT(nb_shard_plan_text(durations, 2, &text), 0);
        CHECK_EQ_INT(nb_shard_plan_text(durations, 2, &again), 0);
        CHECK_EQ_STR(text, again);
        json_t *doc = json_loads(text, 0, NULL);
        CHECK(doc != NULL);
        CHECK_EQ_STR(json_string_value(json_object_get(doc, "schema")), NB_SHARD_PLAN_SCHEMA);
        json_t *tests = json_object_get(doc, "tests"), *loads = json_object_get(doc, "loads_sec");
        CHECK_EQ_INT(json_object_size(tests), 5);
        CHECK_EQ_INT(json_array_size(loads), 2);
        const char *k;
        json_t *v;
        json_object_foreach(tests, k, v)
                CHECK(json_integer_value(v) == 0 || json_integer_value(v) == 1);
        /* The long one alone, the four short ones on the other shard. */
        json_int_t long_bin = json_integer_value(json_object_get(tests, "t::a"));
        CHECK(json_integer_value(json_object_get(tests, "t::b")) != long_bin);
        CHECK(json_real_value(json_array_get(loads, (size_t) long_bin)) == 4.6);
        CHECK(json_real_value(json_array_get(loads, (size_t) !long_bin)) == 0.016);
        CHECK(json_real_value(json_object_get(doc, "ideal_sec")) == 4.6);
        json_decref(doc);
        free(text);
        free(again);
        CHECK(nb_shard_plan_text("{\"schema\":\"x\"}", 2, &text) < 0 && !text);
        CHECK(nb_shard_plan_text(durations, 0, &text) < 0);
}

/* The last plan is remembered (shard_plan.c): asking again with other durations, or
 * with another count, or with the first durations again, gets each one's own plan,
 * the same as a fresh computation would give. */
TEST(shard_plan_remembered_follows_its_inputs) {
        const char *a = "{\"schema\":\"nestbox.durations/v1\",\"tests\":{\"t::a\":4000,\"t::b\":1000}}";
        const char *b = "{\"schema\":\"nestbox.durations/v1\",\"tests\":{\"t::a\":1000,\"t::b\":1000,\"t::c\":1000}}";
        char *a2 = NULL, *b2 = NULL, *b3 = NULL, *a2_again = NULL;
        CHECK_EQ_INT(nb_shard_plan_text(a, 2, &a2), 0);
        CHECK_EQ_INT(nb_shard_plan_text(b, 2, &b2), 0);
        CHECK_EQ_INT(nb_shard_plan_text(b, 3, &b3), 0);
        CHECK_EQ_INT(nb_shard_plan_text(a, 2, &a2_again), 0);
        CHECK_EQ_STR(a2, a2_again);
        CHECK(strcmp(a2, b2) != 0 && strcmp(b2, b3) != 0);
        json_t *doc = json_loads(b3, 0, NULL);
        CHECK_EQ_INT(json_object_get(doc, "shards") ? json_integer_value(json_object_get(doc, "shards")) : 0, 3);
        CHECK_EQ_INT(json_object_size(json_object_get(doc, "tests")), 3);
        json_decref(doc);
        json_t *tests = NULL;
        CHECK_EQ_INT(nb_shard_durations_json(b, &tests), 0);
        CHECK_EQ_INT(json_object_size(tests), 3);
        CHECK_EQ_INT(json_integer_value(json_object_get(tests, "t::c")), 1000);
        json_decref(tests);
        /* A malformed one after a good one is still refused. */
        json_t *plan = NULL;
        CHECK(nb_shard_plan_make("{\"schema\":\"x\"}", 2, &plan) < 0 && !plan);
        CHECK_EQ_INT(nb_shard_plan_make(a, 2, &plan), 0);
        char *dumped = json_dumps(plan, JSON_SORT_KEYS | JSON_COMPACT);
        CHECK_EQ_STR(dumped, a2);
        free(dumped);
        json_decref(plan);
        free(a2);
        free(b2);
        free(b3);
        free(a2_again);
}
