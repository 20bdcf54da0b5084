/* SPDX-License-Identifier: MIT */
/* The per-testcase table `nestbox test` prints after several runs (--runs-per-test
 * N > 1, or a retry): for every test that failed at least once, how often it ran,
 * how often it failed, the rate, and the seeds of the runs it failed in. Each run's
 * folded report says it all: a testcase's reruns (Surefire's flaky and rerun
 * elements) are its failed attempts, its result the last one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flake_table.h"
#include "nestbox/alloc.h"
#include "nestbox/cleanup.h"
#include "nestbox/text.h"

struct nb_flake_row {
        char *target, *id;
        uint64_t seed;
        size_t runs, failures; /* within one run's result */
};

struct nb_flake_count {
        char *target;
        size_t results;
};

static bool failed(enum nb_junit_outcome o) {
        return o == NB_JUNIT_FAILED || o == NB_JUNIT_ERROR;
}

static struct nb_flake_count *count_for(struct nb_flake_table *ft, const char *target) {
        for (size_t i = 0; i < ft->n_counts; i++)
                if (strcmp(ft->counts[i].target, target) == 0)
                        return &ft->counts[i];
        struct nb_flake_count *c = realloc(ft->counts, (ft->n_counts + 1) * sizeof(*c));
        if (!c)
                return NULL;
        ft->counts = c;
        c = &ft->counts[ft->n_counts];
        if (!(c->target = strdup(target)))
                return NULL;
        c->results = 0;
        ft->n_counts++;
        return c;
}

int nb_flake_table_add(struct nb_flake_table *ft, const struct nb_result *res) {
        struct nb_flake_count *c = count_for(ft, res->target);
        if (!c)
                return -1;
        c->results++;
        ft->retried = ft->retried || res->n_attempts > 0;
        const struct nb_junit_report *rep = res->report;
        for (size_t i = 0; i < rep->n_testcases; i++) {
                const struct nb_junit_testcase *tc = &rep->testcases[i];
                size_t fails = tc->n_reruns + failed(tc->result.outcome);
                if (fails == 0)
                        continue;
                if (NB_RESERVE(ft->rows, ft->cap, ft->n_rows, 1, 64) < 0)
                        return -1;
                struct nb_flake_row *row = &ft->rows[ft->n_rows];
                *row = (struct nb_flake_row) { .seed = res->seed, .runs = tc->n_reruns + 1, .failures = fails };
                if (asprintf(&row->id, "%s%s%s", tc->classname, *tc->classname ? "::" : "", tc->name) < 0 ||
                    !(row->target = strdup(res->target))) {
                        free(row->id);
                        return -1;
                }
                ft->n_rows++;
        }
        return 0;
}

static int cmp_row(const void *a, const void *b) {
        const struct nb_flake_row *x = a, *y = b;
        int c = strcmp(x->target, y->target);
        if (c == 0)
                c = strcmp(x->id, y->id);
        if (c == 0)
                c = x->seed < y->seed ? -1 : x->seed > y->seed;
        return c;
}

static bool same_test(const struct nb_flake_row *x, const struct nb_flake_row *y) {
        return strcmp(x->target, y->target) == 0 && strcmp(x->id, y->id) == 0;
}

static void put_escaped(const char *s) {
        _cleanup_free_ char *e = nb_escape(s, 0);
        fputs(e ? e : "?", stdout);
}

void nb_flake_table_print(struct nb_flake_table *ft) {
        nb_qsort(ft->rows, ft->n_rows, sizeof(*ft->rows), cmp_row);
        if (ft->n_rows == 0) {
                printf("flake table: no test failed in any run\n");
                fflush(stdout);
                return;
        }
        printf("flake table (tests that failed at least once):\n");
        printf("  %5s %8s %6s  %s\n", "runs", "failures", "rate", "target test  seeds it failed with");
        for (size_t i = 0; i < ft->n_rows;) {
                size_t j = i, runs = 0, failures = 0;
                const struct nb_flake_count *c = count_for(ft, ft->rows[i].target);
                for (; j < ft->n_rows && same_test(&ft->rows[i], &ft->rows[j]); j++) {
                        runs += ft->rows[j].runs - 1; /* the first is counted with the target's runs */
                        failures += ft->rows[j].failures;
                }
                runs += c ? c->results : 0;
                printf("  %5zu %8zu %5.1f%%  ", runs, failures, runs ? 100.0 * (double) failures / (double) runs : 0.0);
                put_escaped(ft->rows[i].target);
                fputc(' ', stdout);
                put_escaped(ft->rows[i].id);
                fputs("  seeds:", stdout);
                for (size_t k = i; k < j; k++)
                        if (k == i || ft->rows[k].seed != ft->rows[k - 1].seed)
                                printf(" %llu", (unsigned long long) ft->rows[k].seed);
                fputc('\n', stdout);
                i = j;
        }
        fflush(stdout);
}

void nb_flake_table_done(struct nb_flake_table *ft) {
        for (size_t i = 0; i < ft->n_rows; i++) {
                free(ft->rows[i].target);
                free(ft->rows[i].id);
        }
        for (size_t i = 0; i < ft->n_counts; i++)
                free(ft->counts[i].target);
        free(ft->rows);
        free(ft->counts);
        *ft = (struct nb_flake_table) {};
}
