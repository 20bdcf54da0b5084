/* SPDX-License-Identifier: MIT */
/* The shard plan's input, its record in the result, and the LPT planner (shard_plan.h). */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action/shard_plan.h"
#include "cache/durations.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/support.h"

#define PLAN_FILE_MAX (64u * 1024u)

static int remember_parsed(const char *durations, json_t *tests);

int nb_shard_plan_attach(struct nb_action *a, struct nb_cache_dir *c, struct nb_error *err) {
        if (a->shard_count <= 1)
                return 0;
        int r = nb_action_resolve(a, c, err);
        if (r < 0)
                return r;
        char group[NB_DIGEST_HEX_LEN + 1];
        if ((r = nb_action_group_digest(a, group, err)) < 0)
                return r;
        free(a->shard_durations);
        a->shard_durations = NULL;
        json_auto_t *tests = NULL;
        if ((r = nb_durations_pin(c, group, a->target, &a->shard_durations, &tests, err)) < 0)
                return nb_error_wrap(err, r, "target \"%s\"", a->target);
        if (tests)
                (void) remember_parsed(a->shard_durations, tests); /* a head start only */
        return nb_action_redigest(a, err);
}

static bool get_count(json_t *o, const char *key, unsigned *ret) {
        json_t *v = json_object_get(o, key);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
                return false;
        *ret = (unsigned) json_integer_value(v);
        return true;
}

static bool get_seconds(json_t *o, const char *key, double *ret) {
        json_t *v = json_object_get(o, key);
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || d < 0 || d > 1e9)
                return false;
        *ret = d;
        return true;
}

int nb_shard_plan_from_json(json_t *v, struct nb_shard_plan_info *ret) {
        *ret = (struct nb_shard_plan_info) {};
        if (!v)
                return 0;
        struct nb_shard_plan_info p = { .set = true };
        if (!json_is_object(v) || !get_count(v, "tests", &p.tests) || !get_count(v, "collected", &p.collected) ||
            !get_count(v, "known", &p.known) || !get_seconds(v, "expected_sec", &p.expected_sec) ||
            !get_seconds(v, "largest_sec", &p.largest_sec) || !get_seconds(v, "ideal_sec", &p.ideal_sec))
                return -EINVAL;
        *ret = p;
        return 0;
}

void nb_shard_plan_collect(int out_fd, struct nb_shard_plan_info *ret) {
        *ret = (struct nb_shard_plan_info) {};
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (nb_read_file_beneath(out_fd, "shard_plan.json", PLAN_FILE_MAX, &text, &len) < 0)
                return;
        json_auto_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        if (doc && nb_shard_plan_from_json(doc, ret) < 0)
                *ret = (struct nb_shard_plan_info) {};
}

static int plan_of(json_t *tests, unsigned count, json_t **ret) {
        *ret = NULL;
        int r;
        size_t n = json_object_size(tests), i = 0;
        _cleanup_free_ struct nb_plan_item *items = calloc(n + 1, sizeof(*items));
        _cleanup_free_ unsigned *bin = calloc(n + 1, sizeof(*bin));
        _cleanup_free_ json_int_t *ms = calloc(n + 1, sizeof(*ms)), *load_ms = calloc(count, sizeof(*load_ms));
        if (!items || !bin || !ms || !load_ms)
                return -ENOMEM;
        json_int_t total_ms = 0, longest_ms = 0; /* at most 10^6 tests of < 2^53 ms: no overflow */
        const char *k;
        json_t *v;
        json_object_foreach(tests, k, v) {
                ms[i] = json_integer_value(v);
                items[i] = (struct nb_plan_item) { k, (double) ms[i] / 1000.0 };
                i++;
        }
        if ((r = nb_plan_lpt(items, n, count, bin, NULL)) < 0)
                return r;
        json_auto_t *where = json_object(), *loads = json_array();
        if (!where || !loads)
                return -ENOMEM;
        for (i = 0; i < n; i++) {
                load_ms[bin[i]] += ms[i];
                total_ms += ms[i];
                longest_ms = ms[i] > longest_ms ? ms[i] : longest_ms;
                if (json_object_set_new(where, items[i].key, json_integer(bin[i])) < 0)
                        return -ENOMEM;
        }
        /* Whole milliseconds summed, so the loads print as the durations do. */
        for (unsigned b = 0; b < count; b++)
                if (json_array_append_new(loads, json_real((double) load_ms[b] / 1000.0)) < 0)
                        return -ENOMEM;
        /* The ideal no split can beat: an even share, or the longest test alone. */
        double ideal = (double) total_ms / 1000.0 / count;
        if ((double) longest_ms / 1000.0 > ideal)
                ideal = (double) longest_ms / 1000.0;
        *ret = json_pack("{s:s, s:I, s:O, s:f, s:O}", "schema", NB_SHARD_PLAN_SCHEMA, "shards", (json_int_t) count,
                         "loads_sec", loads, "ideal_sec", ideal, "tests", where);
        return *ret ? 0 : -ENOMEM;
}

/* The last durations planned, and what came of them. A sharded target's durations
 * (tens of thousands of entries) would otherwise be parsed and planned again by each
 * step of each shard: the schedule's estimate, the plan file, the replay record, the
 * learning after the run. The pool's item processes are forked after the schedule
 * planned, so they find it here. One entry: a process plans one target at a time.
 * What it hands out is shared (a reference each): read it, never change it. */
static struct {
        char *durations;
        unsigned count;
        json_t *tests, *plan; /* plan NULL: not planned for count yet */
        char *text;
} last;

static bool is_last(const char *durations) {
        return last.durations && strcmp(last.durations, durations) == 0;
}

/* durations, already parsed into tests, as the last ones. */
static int remember_parsed(const char *durations, json_t *tests) {
        if (is_last(durations))
                return 0;
        char *copy = strdup(durations);
        if (!copy)
                return -ENOMEM;
        json_decref(last.tests);
        free(last.durations);
        json_decref(last.plan);
        free(last.text);
        last.durations = copy;
        last.tests = json_incref(tests);
        last.plan = NULL;
        last.text = NULL;
        last.count = 0;
        return 0;
}

/* last.tests for these durations, forgetting the plan of others. */
static int remember(const char *durations) {
        if (is_last(durations))
                return 0;
        json_auto_t *tests = NULL;
        int r = nb_durations_parse(durations, strlen(durations), &tests);
        return r < 0 ? r : remember_parsed(durations, tests);
}

int nb_shard_durations_json(const char *durations, json_t **ret) {
        *ret = NULL;
        int r = remember(durations);
        if (r < 0)
                return r;
        *ret = json_incref(last.tests);
        return 0;
}

static int plan_remembered(const char *durations, unsigned count) {
        if (count == 0)
                return -EINVAL;
        int r = remember(durations);
        if (r < 0 || (last.plan && last.count == count))
                return r;
        json_decref(TAKE_PTR(last.plan));
        free(TAKE_PTR(last.text));
        json_auto_t *plan = NULL;
        if ((r = plan_of(last.tests, count, &plan)) < 0)
                return r;
        if (!(last.text = json_dumps(plan, JSON_SORT_KEYS | JSON_COMPACT)))
                return -ENOMEM;
        last.plan = TAKE_PTR(plan);
        last.count = count;
        return 0;
}

int nb_shard_plan_make(const char *durations, unsigned count, json_t **ret) {
        *ret = NULL;
        int r = plan_remembered(durations, count);
        if (r < 0)
                return r;
        *ret = json_incref(last.plan);
        return 0;
}

int nb_shard_plan_text(const char *durations, unsigned count, char **ret) {
        *ret = NULL;
        int r = plan_remembered(durations, count);
        if (r < 0)
                return r;
        *ret = strdup(last.text);
        return *ret ? 0 : -ENOMEM;
}

int nb_shard_plan_materialize(struct nb_cache_dir *c, const struct nb_action *a, char **ret_path,
                              struct nb_error *err) {
        *ret_path = NULL;
        if (!a->shard_durations || a->shard_count <= 1)
                return 0;
        _cleanup_free_ char *text = NULL;
        int r = nb_shard_plan_text(a->shard_durations, a->shard_count, &text);
        if (r < 0)
                return nb_error_set(err, -r, "target \"%s\": shard plan", a->target);
        return nb_support_materialize_plan(c, text, ret_path, err);
}

/* ---- longest processing time first ---- */

struct order {
        size_t i;
        double cost;
        uint64_t hash;
};

/* The stable hash nestbox gives a name (the default seed's: 32 bits of its SHA-256). */
static uint64_t key_hash(const char *key) {
        return nb_action_default_seed(key);
}

static const struct nb_plan_item *sort_items;

/* Longest first; equal costs in the order of a hash of their keys, so a fleet of
 * unknown items is spread (not alphabetically bunched), then by key and position. */
static int cmp_order(const void *a, const void *b) {
        const struct order *x = a, *y = b;
        if (x->cost != y->cost)
                return x->cost > y->cost ? -1 : 1;
        if (x->hash != y->hash)
                return x->hash < y->hash ? -1 : 1;
        int c = strcmp(sort_items[x->i].key, sort_items[y->i].key);
        return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* A min-heap of bins by (load, index). */
struct heap {
        unsigned *v;
        double *load;
        unsigned n;
};

static bool less(const struct heap *h, unsigned a, unsigned b) {
        return h->load[a] < h->load[b] || (h->load[a] == h->load[b] && a < b);
}

static void sift_down(struct heap *h, unsigned at) {
        for (;;) {
                unsigned l = 2 * at + 1, r = l + 1, m = at;
                if (l < h->n && less(h, h->v[l], h->v[m]))
                        m = l;
                if (r < h->n && less(h, h->v[r], h->v[m]))
                        m = r;
                if (m == at)
                        return;
                unsigned t = h->v[m];
                h->v[m] = h->v[at];
                h->v[at] = t;
                at = m;
        }
}

int nb_plan_lpt(const struct nb_plan_item *items, size_t n, unsigned bins, unsigned *ret_bin, double *ret_loads) {
        if (bins == 0)
                return -EINVAL;
        _cleanup_free_ struct order *o = calloc(n ? n : 1, sizeof(*o));
        _cleanup_free_ unsigned *v = calloc(bins, sizeof(*v));
        _cleanup_free_ double *load = calloc(bins, sizeof(*load));
        if (!o || !v || !load)
                return -ENOMEM;
        double known = 0;
        size_t n_known = 0;
        for (size_t i = 0; i < n; i++)
                if (items[i].cost >= 0) {
                        known += items[i].cost;
                        n_known++;
                }
        /* An item never measured counts as the average of those that were (1 s when
         * none was), so it is placed by load like the rest. */
        double guess = n_known ? known / (double) n_known : 1.0;
        for (size_t i = 0; i < n; i++)
                o[i] = (struct order) { i, items[i].cost >= 0 ? items[i].cost : guess, key_hash(items[i].key) };
        sort_items = items;
        nb_qsort(o, n, sizeof(*o), cmp_order);
        struct heap h = { v, load, bins };
        for (unsigned b = 0; b < bins; b++)
                v[b] = b;
        for (size_t k = 0; k < n; k++) {
                unsigned b = v[0];
                ret_bin[o[k].i] = b;
                load[b] += o[k].cost;
                sift_down(&h, 0);
        }
        if (ret_loads)
                memcpy(ret_loads, load, bins * sizeof(*load));
        return 0;
}
