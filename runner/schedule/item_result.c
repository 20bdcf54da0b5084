/* SPDX-License-Identifier: MIT */
/* The finished items' reports, remote counters and target count: item_result.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "schedule/item_result.h"

int nb_item_reports_init(struct nb_item_reports *c, size_t n) {
        c->reports = calloc(n + 1, sizeof(*c->reports));
        c->n = c->reports ? n : 0;
        return c->reports ? 0 : -ENOMEM;
}

void nb_item_reports_done(struct nb_item_reports *c) {
        for (size_t i = 0; i < c->n; i++)
                nb_junit_report_free(c->reports[i]);
        free(c->reports);
        *c = (struct nb_item_reports) {};
}

int nb_item_reports_add(struct nb_item_reports *c, size_t slot, struct nb_result *res) {
        char *name = NULL;
        if (slot >= c->n)
                return -EINVAL;
        if (res->run > 1 && asprintf(&name, "%s run %u", res->target, res->run) < 0)
                return -ENOMEM;
        nb_junit_report_free(c->reports[slot]);
        c->reports[slot] = TAKE_PTR(res->report);
        free(c->reports[slot]->name);
        c->reports[slot]->name = name ? name : TAKE_PTR(res->target);
        return 0;
}

int nb_item_reports_write(const struct nb_item_reports *c, int out_dir, struct nb_error *err) {
        _cleanup_free_ const struct nb_junit_report **done = calloc(c->n + 1, sizeof(*done));
        size_t n = 0;
        if (!done)
                return nb_error_set(err, ENOMEM, "--output: junit.xml");
        for (size_t i = 0; i < c->n; i++)
                if (c->reports[i])
                        done[n++] = c->reports[i];
        _cleanup_free_ char *xml = NULL;
        size_t len = 0;
        int r = nb_junit_folded_xml(done, n, &xml, &len, err);
        if (r < 0)
                return nb_error_wrap(err, r, "--output: junit.xml");
        if ((r = nb_write_file_atomic(out_dir, "junit.xml", xml, len, 0644)) < 0)
                return nb_error_set(err, -r, "--output: junit.xml");
        return 0;
}

void nb_item_outcome_add_remote(const struct nb_item_outcome *o, struct nb_remote_stats *sum) {
        if (!o->has_remote)
                return;
        struct nb_remote_stats add = o->remote;
        /* Items in flight when the remote went off fault too; a serial run would have
         * stopped asking at the first, so it counts once. */
        if (o->repeated_fault && add.errors)
                add.errors--;
        *sum = (struct nb_remote_stats) { sum->hits + add.hits, sum->misses + add.misses, sum->uploads + add.uploads,
                                          sum->bytes_down + add.bytes_down, sum->bytes_up + add.bytes_up,
                                          sum->errors + add.errors };
}

struct target_run {
        const struct nb_target *target;
        unsigned run;
};

static int by_target_run(const void *pa, const void *pb) {
        const struct target_run *a = pa, *b = pb;
        if (a->target != b->target)
                return a->target < b->target ? -1 : 1;
        return (a->run > b->run) - (a->run < b->run);
}

size_t nb_items_count_targets(const struct nb_work_item *items, size_t n, bool by_run) {
        /* Sorted, then counted where the pair changes: n log n however the items are
         * ordered (longest first mixes a target's shards with others). */
        _cleanup_free_ struct target_run *v = calloc(n + 1, sizeof(*v));
        if (!v)
                return n; /* out of memory: each item as a target, the count says the most */
        for (size_t i = 0; i < n; i++)
                v[i] = (struct target_run) { items[i].target, by_run ? items[i].run : 0 };
        nb_qsort(v, n, sizeof(*v), by_target_run);
        size_t targets = 0;
        for (size_t i = 0; i < n; i++)
                targets += i == 0 || by_target_run(&v[i - 1], &v[i]) != 0;
        return targets;
}
