/* SPDX-License-Identifier: MIT */
/* schedule/: the order items start in, the pool's -j and memory budget, the frames an
 * item's process sends, and what the machine offers. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "schedule/item.h"
#include "schedule/item_result.h"
#include "schedule/pool.h"
#include "schedule/resources.h"
#include "test.h"

static uint64_t expected_from_memory(const struct nb_work_item *it, void *userdata) {
        (void) userdata;
        return it->memory; /* the tests below put the expectation there */
}

TEST(order_is_longest_first_and_stable) {
        struct nb_target t[5] = { { .name = "a" }, { .name = "b" }, { .name = "c" }, { .name = "d" }, { .name = "e" } };
        uint64_t ms[5] = { 0, 300, 0, 300, 900 };
        struct nb_work_item items[5];
        for (size_t i = 0; i < 5; i++)
                items[i] = (struct nb_work_item) { .target = &t[i], .memory = ms[i], .order = i };
        nb_items_expect(items, 5, expected_from_memory, NULL);
        nb_items_order(items, 5);
        const char *want[5] = { "e", "b", "d", "a", "c" };
        for (size_t i = 0; i < 5; i++)
                CHECK(strcmp(items[i].target->name, want[i]) == 0);
        CHECK_EQ_INT(items[0].expected_ms, 900);
}

/* The pool's side of a run: what each callback saw. */
struct seen {
        int started, ended, frames, running, most_running;
        uint64_t memory, most_memory;
        int throttled;
        char got[8];
};

static int starting(struct nb_work_item *it, void *userdata) {
        struct seen *s = userdata;
        s->started++;
        s->running++;
        s->memory += it->memory;
        if (s->running > s->most_running)
                s->most_running = s->running;
        if (s->memory > s->most_memory)
                s->most_memory = s->memory;
        return 0;
}

static int run(struct nb_work_item *it, int fd, void *userdata) {
        (void) userdata;
        usleep(50 * 1000); /* long enough for the others to be started meanwhile */
        /* One frame larger than a pipe holds, then a small one. */
        size_t big = 1u << 20;
        char *data = malloc(big);
        if (!data)
                return 1;
        memset(data, it->target->name[0], big);
        int r = nb_frame_send(fd, 'B', data, big);
        free(data);
        return r < 0 || nb_frame_send(fd, 'N', it->target->name, 1) < 0 ? 1 : 0;
}

static void frame(struct nb_work_item *it, const struct nb_frame *f, void *userdata) {
        struct seen *s = userdata;
        s->frames++;
        if (f->type == 'B')
                CHECK(f->len == (1u << 20) && f->data[0] == it->target->name[0] && f->data[f->len - 1] == f->data[0]);
        if (f->type == 'N' && f->len == 1)
                s->got[it->order] = f->data[0];
}

static void ended(struct nb_work_item *it, int wstatus, void *userdata) {
        struct seen *s = userdata;
        CHECK_EQ_INT(wstatus, 0);
        s->ended++;
        s->running--;
        s->memory -= it->memory;
}

static void throttled(const struct nb_work_item *it, uint64_t running, uint64_t budget, void *userdata) {
        struct seen *s = userdata;
        CHECK(running + it->memory > budget); /* held back only when it would not fit */
        s->throttled++;
}

static const struct nb_pool_ops ops = { starting, run, frame, ended, throttled, NULL };

static void run_pool(unsigned jobs, uint64_t budget, const uint64_t *memory, struct seen *s) {
        struct nb_target t[4] = { { .name = "a" }, { .name = "b" }, { .name = "c" }, { .name = "d" } };
        struct nb_work_item items[4];
        for (size_t i = 0; i < 4; i++)
                items[i] = (struct nb_work_item) { .target = &t[i], .memory = memory[i], .order = i };
        struct nb_pool_config cfg = { .jobs = jobs, .memory_budget = budget };
        struct nb_error err = NB_ERROR_INIT;
        size_t started = 0;
        CHECK_EQ_INT(nb_pool_run(items, 4, &cfg, &ops, s, &started, &err), 0);
        CHECK_EQ_INT(started, 4);
        nb_error_clear(&err);
}

/* Shards of one target count once, however -j's order mixes them; runs apart with by_run. */
TEST(count_targets_whatever_the_order) {
        struct nb_target t[3] = { { .name = "a" }, { .name = "b" }, { .name = "c" } };
        struct nb_work_item items[] = {
                { .target = &t[1], .run = 1 }, { .target = &t[0], .run = 1 }, { .target = &t[1], .run = 2 },
                { .target = &t[2], .run = 1 }, { .target = &t[0], .run = 1 }, { .target = &t[1], .run = 1 },
        };
        CHECK_EQ_INT(nb_items_count_targets(items, 6, false), 3);
        CHECK_EQ_INT(nb_items_count_targets(items, 6, true), 4);
        CHECK_EQ_INT(nb_items_count_targets(items, 0, false), 0);
}

/* --runs-per-test: each item that often, a target's runs together, numbered from 1. */
TEST(repeat_items_for_runs) {
        struct nb_target t[2] = { { .name = "a" }, { .name = "b" } };
        struct nb_work_item *items = calloc(2, sizeof(*items));
        CHECK(items != NULL);
        items[0] = (struct nb_work_item) { .target = &t[0], .run = 1 };
        items[1] = (struct nb_work_item) { .target = &t[1], .run = 1 };
        size_t n = 2;
        CHECK_EQ_INT(nb_items_repeat(&items, &n, 1), 0);
        CHECK_EQ_INT(n, 2);
        CHECK_EQ_INT(nb_items_repeat(&items, &n, 3), 0);
        CHECK_EQ_INT(n, 6);
        for (size_t i = 0; i < 6; i++) {
                CHECK(items[i].target == &t[i / 3]);
                CHECK_EQ_INT(items[i].run, i % 3 + 1);
        }
        free(items);
}

/* -j's expectation is the durations store's: a target's learned tests summed (over its
 * shard count for a shard without a plan); nothing learned is 0. */
TEST(expected_ms_from_learned_durations) {
        char root[] = "/tmp/nb-test-expect.XXXXXX";
        CHECK(mkdtemp(root) != NULL);
        struct nb_cache_dir c;
        CHECK_EQ_INT(nb_cache_dir_open(&c, root, NULL), 0);
        char hex[NB_DIGEST_HEX_LEN + 1], *rel = NULL;
        nb_sha256_hex("a/tests", strlen("a/tests"), hex);
        CHECK(asprintf(&rel, "durations/%s.json", hex) > 0);
        const char *doc = "{\"schema\":\"nestbox.durations/v1\",\"tests\":{\"x::a\":1500,\"x::b\":500}}";
        CHECK(mkdirat(c.fd, "durations", 0755) == 0);
        CHECK_EQ_INT(nb_write_file_atomic(c.fd, rel, doc, strlen(doc), 0644), 0);
        struct nb_target t[2] = { { .name = "a/tests" }, { .name = "b/tests" } };
        struct nb_work_item items[] = {
                { .target = &t[0], .shard_index = 1, .shard_count = 1 },
                { .target = &t[0], .shard_index = 2, .shard_count = 4 },
                { .target = &t[1], .shard_index = 1, .shard_count = 1 },
        };
        struct nb_item_expect e = { .cache = &c };
        nb_items_expect(items, 3, nb_item_expected_ms, &e);
        nb_item_expect_done(&e);
        CHECK_EQ_INT(items[0].expected_ms, 2000);
        CHECK_EQ_INT(items[1].expected_ms, 500);
        CHECK_EQ_INT(items[2].expected_ms, 0);
        free(rel);
        nb_cache_dir_close(&c);
        _cleanup_close_ int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK_EQ_INT(nb_rm_rf_at(tmp, root + 5), 0);
}

TEST(pool_runs_up_to_jobs_at_once_and_delivers_every_frame) {
        struct seen s = { 0 };
        run_pool(2, 0, (const uint64_t[]) { 0, 0, 0, 0 }, &s);
        CHECK_EQ_INT(s.started, 4);
        CHECK_EQ_INT(s.ended, 4);
        CHECK_EQ_INT(s.frames, 8);
        CHECK_EQ_INT(s.most_running, 2);
        CHECK(memcmp(s.got, "abcd", 4) == 0);
}

TEST(pool_keeps_the_memory_limits_under_the_budget) {
        struct seen s = { 0 };
        /* 600 + 600 > 1000: one at a time; 3000 alone is over and still runs, alone. */
        run_pool(4, 1000, (const uint64_t[]) { 600, 600, 3000, 300 }, &s);
        CHECK_EQ_INT(s.ended, 4);
        CHECK_EQ_INT(s.most_memory, 3000);
        CHECK(s.throttled >= 2);
        struct seen t = { 0 };
        run_pool(4, 1000, (const uint64_t[]) { 300, 300, 300, 100 }, &t);
        CHECK_EQ_INT(t.throttled, 0);
        CHECK(t.most_running >= 2);
}

TEST(resources) {
        CHECK(nb_cpus_available() >= 1);
        setenv("NESTBOX_TEST_MEM_AVAILABLE", "512M", 1);
        CHECK_EQ_INT(nb_mem_available(), 512ull << 20);
        unsetenv("NESTBOX_TEST_MEM_AVAILABLE");
        CHECK(nb_mem_available() > 0);
}
