/* SPDX-License-Identifier: MIT */
/* nb_reserve (include/nestbox/alloc.h): the one way arrays grow. Appends must cost
 * O(n) in all whatever the input, and a size that would overflow must fail cleanly. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/alloc.h"
#include "test.h"

struct pair {
        uint64_t a, b;
};

TEST(first_growth_takes_first_or_what_is_needed) {
        char *buf = NULL;
        size_t cap = 0;
        CHECK_EQ_INT(NB_RESERVE(buf, cap, 0, 10, 4096), 0);
        CHECK(buf != NULL);
        CHECK_EQ_INT(cap, 4096);
        free(buf);

        buf = NULL, cap = 0;
        CHECK_EQ_INT(NB_RESERVE(buf, cap, 0, 5000, 4096), 0); /* doubled from first */
        CHECK_EQ_INT(cap, 8192);
        free(buf);

        buf = NULL, cap = 0;
        CHECK_EQ_INT(NB_RESERVE(buf, cap, 0, 3, 0), 0); /* no first: from one */
        CHECK_EQ_INT(cap, 4);
        free(buf);
}

TEST(room_enough_leaves_the_array_alone) {
        struct pair *v = NULL;
        size_t cap = 0;
        CHECK_EQ_INT(NB_RESERVE(v, cap, 0, 1, 16), 0);
        struct pair *was = v;
        CHECK_EQ_INT(NB_RESERVE(v, cap, 15, 1, 16), 0);
        CHECK(v == was);
        CHECK_EQ_INT(cap, 16);
        CHECK_EQ_INT(NB_RESERVE(v, cap, 16, 0, 16), 0);
        CHECK_EQ_INT(cap, 16);
        free(v);
}

/* A million appends one at a time: the capacity doubles, so it changes about twenty
 * times, not a million (one element more each time would copy O(n^2) bytes). */
TEST(appends_one_at_a_time_grow_geometrically) {
        struct pair *v = NULL;
        size_t cap = 0, grew = 0, n;
        for (n = 0; n < 1000000; n++) {
                size_t before = cap;
                if (NB_RESERVE(v, cap, n, 1, 16) < 0)
                        break;
                grew += cap != before;
                v[n] = (struct pair) { n, ~n };
        }
        CHECK_EQ_INT(n, 1000000);
        CHECK(grew <= 17);
        CHECK(cap >= n && cap < 2 * n);
        CHECK(v[0].a == 0 && v[999999].a == 999999 && v[999999].b == ~(uint64_t) 999999);
        free(v);
}

TEST(contents_survive_growth) {
        char *buf = NULL;
        size_t cap = 0, len = 0;
        for (int i = 0; i < 1000; i++) {
                CHECK_EQ_INT(NB_RESERVE(buf, cap, len, 7, 8), 0);
                memcpy(buf + len, "abcdefg", 7);
                len += 7;
        }
        CHECK_EQ_INT(len, 7000);
        CHECK(memcmp(buf + 6993, "abcdefg", 7) == 0 && memcmp(buf, "abcdefg", 7) == 0);
        free(buf);
}

/* Counts and sizes from untrusted input: what would wrap fails, and what was there
 * is kept as it was. */
TEST(sizes_that_would_overflow_fail_and_keep_the_array) {
        char *buf = NULL;
        size_t cap = 0;
        CHECK_EQ_INT(NB_RESERVE(buf, cap, 0, 100, 64), 0);
        char *was = buf;
        memcpy(buf, "kept", 5);

        CHECK_EQ_INT(NB_RESERVE(buf, cap, 100, SIZE_MAX - 50, 64), -ENOMEM); /* len + more wraps */
        CHECK(buf == was);
        CHECK_EQ_INT(cap, 128);
        CHECK_EQ_INT(NB_RESERVE(buf, cap, 0, SIZE_MAX, 64), -ENOMEM); /* doubling would wrap */
        CHECK(buf == was);
        CHECK_EQ_INT(cap, 128);
        CHECK_EQ_STR(buf, "kept");
        free(buf);

        struct pair *v = NULL;
        size_t vcap = 0;
        CHECK_EQ_INT(NB_RESERVE(v, vcap, 0, SIZE_MAX / 8, 16), -ENOMEM); /* elements x size wraps */
        CHECK(v == NULL);
        CHECK_EQ_INT(vcap, 0);
}
