/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "schedule/item.h"

#define WALL_RECORD_MAX 64

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

void nb_items_order(struct nb_work_item *items, size_t n) {
        nb_qsort(items, n, sizeof(*items), by_expected);
}

static void wall_key(const struct nb_work_item *it, char out[NB_DIGEST_HEX_LEN + 1]) {
        _cleanup_(nb_hasher_freep) struct nb_hasher *h = nb_hasher_new();
        if (!h) {
                out[0] = 0;
                return;
        }
        nb_hasher_update_str(h, "nestbox.wall/v1");
        nb_hasher_update_str(h, it->target->name);
        nb_hasher_update_u64(h, it->shard_index);
        nb_hasher_update_u64(h, it->shard_count);
        nb_hasher_update_u64(h, it->run);
        nb_hasher_finish(TAKE_PTR(h), out);
}

uint64_t nb_item_last_wall_ms(const struct nb_work_item *it, void *userdata) {
        struct nb_store *s = userdata;
        char key[NB_DIGEST_HEX_LEN + 1];
        wall_key(it, key);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        unsigned long long ms;
        char tail;
        /* A hint: whatever is wrong with it (absent, damaged, foreign) means unknown. */
        if (!key[0] || nb_ac_get(s, key, &text, &len, NULL) < 0 || len > WALL_RECORD_MAX)
                return 0;
        _cleanup_free_ char *z = strndup(text, len);
        if (!z || sscanf(z, "wall_ms %llu%c", &ms, &tail) != 2 || tail != '\n')
                return 0;
        return ms;
}

void nb_item_remember_wall(struct nb_store *s, const struct nb_work_item *it, double wall_sec) {
        char key[NB_DIGEST_HEX_LEN + 1], text[WALL_RECORD_MAX];
        wall_key(it, key);
        int len = snprintf(text, sizeof(text), "wall_ms %llu\n", (unsigned long long) (wall_sec * 1000.0));
        if (key[0] && len > 0)
                (void) nb_ac_put(s, key, text, (size_t) len, NULL);
}
