/* SPDX-License-Identifier: MIT */
/* The LPT planner (action/shard_plan.h): balance, determinism, every item placed. */
#include <stdio.h>
#include <stdlib.h>

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
