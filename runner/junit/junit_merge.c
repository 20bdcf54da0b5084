/* SPDX-License-Identifier: MIT */
/* JUnit XML: merging shards and attempts. Shards hold disjoint testcases, attempts
 * hold the same ones again; both are handled alike by grouping every testcase of
 * every report on (classname, name) and folding each group's runs with Maven
 * Surefire's flaky/rerun convention. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "junit/junit-internal.h"
#include "junit/junit.h"
#include "nestbox/cleanup.h"

/* One testcase of one input report; seq is its position over all the inputs, which
 * is the order its runs happened in when reports are passed in attempt order. */
struct member {
        const struct nb_junit_testcase *tc;
        size_t seq;
};

/* One run of a testcase, the reruns recorded inside a testcase included. */
struct run {
        const struct nb_junit_result *res;
        double time;
};

/* A merged testcase and where its group first appeared. */
struct grouped {
        size_t first;
        struct nb_junit_testcase tc;
};

struct group_list {
        struct grouped *v;
        size_t n;
};

static void group_list_done(struct group_list *g) {
        for (size_t i = 0; i < g->n; i++)
                nb_junit_testcase_done(&g->v[i].tc);
        free(g->v);
}

static const char *str_or_empty(const char *s) {
        return s ? s : "";
}

static int cmp_member(const void *a, const void *b) {
        const struct member *x = a, *y = b;
        int c = strcmp(str_or_empty(x->tc->classname), str_or_empty(y->tc->classname));
        if (c == 0)
                c = strcmp(str_or_empty(x->tc->name), str_or_empty(y->tc->name));
        if (c == 0)
                c = x->seq < y->seq ? -1 : x->seq > y->seq;
        return c;
}

static int cmp_grouped(const void *a, const void *b) {
        const struct grouped *x = a, *y = b;
        return x->first < y->first ? -1 : x->first > y->first;
}

static bool is_failure(enum nb_junit_outcome o) {
        return o == NB_JUNIT_FAILED || o == NB_JUNIT_ERROR;
}

static int result_copy(struct nb_junit_result *dst, const struct nb_junit_result *src) {
        *dst = (struct nb_junit_result) { .outcome = src->outcome };
        int r = nb_junit_strdup(src->type, &dst->type);
        if (r >= 0)
                r = nb_junit_strdup(src->message, &dst->message);
        if (r >= 0)
                r = nb_junit_strdup(src->text, &dst->text);
        if (r >= 0)
                r = nb_junit_strdup(src->system_out, &dst->system_out);
        if (r >= 0)
                r = nb_junit_strdup(src->system_err, &dst->system_err);
        if (r < 0)
                nb_junit_result_done(dst);
        return r;
}

/* The runs of the members in the order they happened: a testcase that ended failed
 * failed first and was rerun after; one that ended passed was flaky before. */
static int flatten(const struct member *m, size_t n, struct run **ret, size_t *ret_n) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += 1 + m[i].tc->n_reruns;
        struct run *runs = calloc(total, sizeof(*runs));
        if (!runs)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                const struct nb_junit_testcase *tc = m[i].tc;
                bool failed = is_failure(tc->result.outcome);
                if (failed)
                        runs[k++] = (struct run) { &tc->result, tc->time };
                for (size_t j = 0; j < tc->n_reruns; j++)
                        runs[k++] = (struct run) { &tc->reruns[j], tc->time };
                if (!failed)
                        runs[k++] = (struct run) { &tc->result, tc->time };
        }
        *ret = runs;
        *ret_n = k;
        return 0;
}

/* Any pass: passed, every failed run a flaky one. No pass but a failure: the first
 * failure, the later ones reruns. Otherwise (all skipped): the first run. */
static int merge_group(const struct member *m, size_t n, struct nb_junit_testcase *out) {
        _cleanup_free_ struct run *runs = NULL;
        size_t n_runs = 0;
        int r = flatten(m, n, &runs, &n_runs);
        if (r < 0)
                return r;
        size_t chosen = SIZE_MAX, n_failed = 0;
        for (size_t k = 0; k < n_runs; k++) {
                if (chosen == SIZE_MAX && runs[k].res->outcome == NB_JUNIT_PASSED)
                        chosen = k;
                n_failed += is_failure(runs[k].res->outcome);
        }
        for (size_t k = 0; k < n_runs && chosen == SIZE_MAX; k++)
                if (is_failure(runs[k].res->outcome))
                        chosen = k;
        if (chosen == SIZE_MAX)
                chosen = 0;

        *out = (struct nb_junit_testcase) { .time = runs[chosen].time };
        r = nb_junit_strdup(str_or_empty(m[0].tc->classname), &out->classname);
        if (r >= 0)
                r = nb_junit_strdup(str_or_empty(m[0].tc->name), &out->name);
        if (r >= 0)
                r = result_copy(&out->result, runs[chosen].res);
        size_t n_reruns = n_failed - is_failure(runs[chosen].res->outcome);
        if (r >= 0 && n_reruns > 0 && !(out->reruns = calloc(n_reruns, sizeof(*out->reruns))))
                r = -ENOMEM;
        for (size_t k = 0; k < n_runs && r >= 0; k++)
                if (k != chosen && is_failure(runs[k].res->outcome)) {
                        r = result_copy(&out->reruns[out->n_reruns], runs[k].res);
                        if (r >= 0)
                                out->n_reruns++;
                }
        if (r < 0)
                nb_junit_testcase_done(out);
        return r;
}

int nb_junit_merge(const struct nb_junit_report *const *reports, size_t n, const char *name,
                   struct nb_junit_report **ret, struct nb_error *err) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += reports[i]->n_testcases;
        _cleanup_free_ struct member *members = calloc(total ? total : 1, sizeof(*members));
        if (!members)
                return nb_error_set(err, ENOMEM, "merging JUnit reports");
        size_t seq = 0;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < reports[i]->n_testcases; j++, seq++)
                        members[seq] = (struct member) { &reports[i]->testcases[j], seq };
        nb_qsort(members, total, sizeof(*members), cmp_member);

        _cleanup_(group_list_done) struct group_list groups = { .v = calloc(total ? total : 1, sizeof(struct grouped)) };
        if (!groups.v)
                return nb_error_set(err, ENOMEM, "merging JUnit reports");
        for (size_t i = 0, j; i < total; i = j) {
                for (j = i + 1; j < total; j++)
                        if (strcmp(str_or_empty(members[i].tc->classname), str_or_empty(members[j].tc->classname)) ||
                            strcmp(str_or_empty(members[i].tc->name), str_or_empty(members[j].tc->name)))
                                break;
                /* Sorted by seq within the key: the first member is where it appeared. */
                groups.v[groups.n].first = members[i].seq;
                int r = merge_group(members + i, j - i, &groups.v[groups.n].tc);
                if (r < 0)
                        return nb_error_set(err, -r, "merging JUnit reports");
                groups.n++;
        }
        nb_qsort(groups.v, groups.n, sizeof(*groups.v), cmp_grouped);

        _cleanup_(nb_junit_report_freep) struct nb_junit_report *rep = calloc(1, sizeof(*rep));
        if (!rep || !(rep->testcases = calloc(groups.n ? groups.n : 1, sizeof(*rep->testcases))))
                return nb_error_set(err, ENOMEM, "merging JUnit reports");
        for (size_t i = 0; i < groups.n; i++)
                rep->testcases[i] = groups.v[i].tc;
        rep->n_testcases = groups.n;
        groups.n = 0; /* the testcases are rep's now */

        const char *timestamp = NULL;
        for (size_t i = 0; i < n; i++) {
                rep->time = nb_junit_sane_time(rep->time + reports[i]->time);
                if (!timestamp)
                        timestamp = reports[i]->timestamp;
        }
        if (!name)
                name = n > 0 ? reports[0]->name : NULL;
        if (nb_junit_strdup(str_or_empty(name), &rep->name) < 0 || nb_junit_strdup(timestamp, &rep->timestamp) < 0)
                return nb_error_set(err, ENOMEM, "merging JUnit reports");
        nb_junit_report_recount(rep);
        *ret = TAKE_PTR(rep);
        return 0;
}

/* ---- one suite per name ---- */

struct named {
        const struct nb_junit_report *r;
        size_t seq;
};

static int cmp_named(const void *a, const void *b) {
        const struct named *x = a, *y = b;
        int c = strcmp(str_or_empty(x->r->name), str_or_empty(y->r->name));
        return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_seq(const void *a, const void *b) {
        const struct named *x = a, *y = b;
        return (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_testcase(const void *a, const void *b) {
        const struct nb_junit_testcase *x = a, *y = b;
        int c = strcmp(x->classname, y->classname);
        return c ? c : strcmp(x->name, y->name);
}

void nb_junit_reports_free(struct nb_junit_report **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                nb_junit_report_free(v[i]);
        free(v);
}

int nb_junit_fold_by_name(const struct nb_junit_report *const *reports, size_t n, struct nb_junit_report ***ret,
                          size_t *ret_n, struct nb_error *err) {
        _cleanup_free_ struct named *v = calloc(n ? n : 1, sizeof(*v));
        _cleanup_free_ const struct nb_junit_report **group = calloc(n ? n : 1, sizeof(*group));
        _cleanup_free_ struct named *firsts = calloc(n ? n : 1, sizeof(*firsts));
        struct nb_junit_report **out = calloc(n ? n : 1, sizeof(*out));
        if (!v || !group || !firsts || !out) {
                free(out);
                return nb_error_set(err, ENOMEM, "merging JUnit reports");
        }
        for (size_t i = 0; i < n; i++)
                v[i] = (struct named) { reports[i], i };
        nb_qsort(v, n, sizeof(*v), cmp_named);
        size_t k = 0;
        for (size_t i = 0, j; i < n; i = j) {
                size_t m = 0;
                for (j = i; j < n && strcmp(str_or_empty(v[j].r->name), str_or_empty(v[i].r->name)) == 0; j++)
                        group[m++] = v[j].r;
                int r = nb_junit_merge(group, m, v[i].r->name, &out[k], err);
                if (r < 0) {
                        nb_junit_reports_free(out, k);
                        return r;
                }
                nb_qsort(out[k]->testcases, out[k]->n_testcases, sizeof(*out[k]->testcases), cmp_testcase);
                firsts[k] = (struct named) { out[k], v[i].seq }; /* v[i]: the group's first */
                k++;
        }
        /* The suites in the order their names first appear (the order named). */
        nb_qsort(firsts, k, sizeof(*firsts), cmp_seq);
        for (size_t i = 0; i < k; i++)
                out[i] = (struct nb_junit_report *) firsts[i].r;
        *ret = out;
        *ret_n = k;
        return 0;
}

int nb_junit_folded_xml(const struct nb_junit_report *const *reports, size_t n, char **ret_xml, size_t *ret_len,
                        struct nb_error *err) {
        struct nb_junit_report **folded = NULL;
        size_t k = 0;
        int r = nb_junit_fold_by_name(reports, n, &folded, &k, err);
        if (r < 0)
                return r;
        struct nb_junit_suite *suites = calloc(k + 1, sizeof(*suites));
        for (size_t i = 0; suites && i < k; i++)
                suites[i].report = folded[i];
        r = suites ? nb_junit_suites_to_xml(suites, k, ret_xml, ret_len) : -ENOMEM;
        free(suites);
        nb_junit_reports_free(folded, k);
        return r < 0 ? nb_error_set(err, -r, "writing JUnit XML") : 0;
}
