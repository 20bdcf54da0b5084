/* SPDX-License-Identifier: MIT */
/* --machine K/N, the CI's variables, and this machine's slice of the work items. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/shard_plan.h"
#include "cache/durations.h"
#include "cli/cli.h"
#include "cli/machine.h"
#include "nestbox/cleanup.h"

#define MAX_MACHINES 100000u
/* What a sandbox costs before its first test runs (venv and tree already there). */
#define START_UP_SEC 0.5

void nb_machine_done(struct nb_machine *m) {
        free(m->found);
        m->found = NULL;
}

static int parse_count(const char *s, unsigned *ret) {
        char *end = NULL;
        errno = 0;
        unsigned long v = s && *s ? strtoul(s, &end, 10) : 0;
        if (!s || !*s || errno || *end || *s == '-' || *s == '+' || v > MAX_MACHINES)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

int nb_machine_option(const char *arg, struct nb_machine *m) {
        unsigned k, n;
        char tail;
        if (sscanf(arg, "%u/%u%c", &k, &n, &tail) != 2 || n == 0 || k == 0 || k > n || n > MAX_MACHINES)
                return nb_die(NB_EXIT_USAGE, "--machine %s: expected K/N with 1 <= K <= N (this machine, of N)", arg);
        m->index = k;
        m->count = n;
        m->from_flag = true;
        return 0;
}

int nb_machines_option(const char *arg, struct nb_machine *m) {
        if (parse_count(arg, &m->count_flag) < 0 || m->count_flag == 0)
                return nb_die(NB_EXIT_USAGE, "--machines %s: expected the number of machines, 1 to %u", arg, MAX_MACHINES);
        return 0;
}

/* One CI's pair of variables. */
struct ci {
        const char *name, *index_var, *total_var;
        unsigned base; /* what its first index is */
};

static const struct ci cis[] = {
        { "Buildkite", "BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0 },
        { "GitLab CI", "CI_NODE_INDEX", "CI_NODE_TOTAL", 1 },
        { "CircleCI", "CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0 },
        { "a Kubernetes Indexed Job", "JOB_COMPLETION_INDEX", NULL, 0 },
};

/* 1 with *k, *n when ci's variables are set, 0 when not, else -EINVAL (err says
 * what is wrong with them, an input error) or -ENOMEM. */
static int read_ci(const struct ci *ci, const struct nb_machine *m, const char *(*get)(const char *), unsigned *k,
                   unsigned *n, char **text, struct nb_error *err) {
        const char *iv = get(ci->index_var);
        const char *tv = ci->total_var ? get(ci->total_var) : get("NESTBOX_MACHINES");
        const char *tname = ci->total_var ? ci->total_var : "NESTBOX_MACHINES";
        unsigned idx, total;
        if (!iv) {
                /* GitLab sets CI_NODE_TOTAL=1 in every job; a total alone says nothing. */
                if (tv && ci->total_var && parse_count(tv, &total) == 0 && total <= 1)
                        return 0;
                if (tv && ci->total_var)
                        return nb_error_input(err, EINVAL, "%s=%s is set but %s is not", tname, tv, ci->index_var);
                return 0;
        }
        if (parse_count(iv, &idx) < 0 || idx < ci->base)
                return nb_error_input(err, EINVAL, "%s=%s: expected an integer from %u", ci->index_var, iv, ci->base);
        if (!ci->total_var && m->count_flag) {
                total = m->count_flag;
                tname = "--machines";
        } else if (!tv) {
                return nb_error_input(err, EINVAL, "%s=%s is set but %s is not%s", ci->index_var, iv, tname,
                               ci->total_var ? "" : " (give the Job's completions as --machines N or NESTBOX_MACHINES)");
        } else if (parse_count(tv, &total) < 0 || total == 0) {
                return nb_error_input(err, EINVAL, "%s=%s: expected the number of machines, 1 to %u", tname, tv, MAX_MACHINES);
        }
        if (idx - ci->base >= total)
                return nb_error_input(err, EINVAL, "%s=%s is out of range for %s=%u (%s counts from %u)", ci->index_var, iv, tname,
                               total, ci->index_var, ci->base);
        *k = idx - ci->base + 1;
        *n = total;
        if (asprintf(text, "%s: %s=%s, %s=%u", ci->name, ci->index_var, iv, tname, total) < 0) {
                *text = NULL;
                return -ENOMEM;
        }
        return 1;
}

/* What the CI's variables say: 1 with *k, *n and *ret_text (which CI, which
 * variables), 0 when none is set, -EINVAL with err, or -ENOMEM. */
static int read_cis(const struct nb_machine *m, const char *(*get)(const char *), unsigned *k, unsigned *n,
                    char **ret_text, struct nb_error *err) {
        _cleanup_free_ char *first = NULL;
        for (size_t i = 0; i < NB_ELEMENTSOF(cis); i++) {
                unsigned ck = 0, cn = 0;
                _cleanup_free_ char *text = NULL;
                int r = read_ci(&cis[i], m, get, &ck, &cn, &text, err);
                if (r <= 0) {
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!first) {
                        *k = ck;
                        *n = cn;
                        first = TAKE_PTR(text);
                } else if (ck != *k || cn != *n)
                        return nb_error_input(err, EINVAL, "the CI's variables disagree: %s says machine %u/%u, %s says %u/%u; "
                                       "give --machine K/N", first, *k, *n, text, ck, cn);
        }
        if (!first)
                return 0;
        *ret_text = TAKE_PTR(first);
        return 1;
}

int nb_machine_detect(struct nb_machine *m, const char *(*get)(const char *)) {
        unsigned k = 0, n = 0;
        _cleanup_free_ char *first = NULL;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        int r = read_cis(m, get, &k, &n, &first, &err);
        if (r == -ENOMEM)
                return nb_die(NB_EXIT_INFRA, "out of memory");
        if (m->from_flag) {
                /* The flag wins: over variables that say another slice, and over ones
                 * that say none clearly (unset halves, garbage, two CIs at odds). */
                int k2 = r == 1 && (k != m->index || n != m->count)
                                 ? asprintf(&m->found, "--machine %u/%u (it wins over %s)", m->index, m->count, first)
                         : r < 0 ? asprintf(&m->found, "--machine %u/%u (it wins over the CI's variables: %s)", m->index,
                                            m->count, nb_error_message(&err))
                                 : asprintf(&m->found, "--machine %u/%u", m->index, m->count);
                if (k2 < 0)
                        m->found = NULL;
                return 0;
        }
        if (r < 0)
                return nb_fail(&err);
        if (r == 0 && m->count_flag)
                return nb_die(NB_EXIT_USAGE, "--machines %u: no JOB_COMPLETION_INDEX to say which one this is; "
                              "give --machine K/N", m->count_flag);
        if (r == 0 || n <= 1)
                return 0;
        m->index = k;
        m->count = n;
        m->found = TAKE_PTR(first);
        return 0;
}

/* The item's expected seconds in *ret, from what is pinned for its action group
 * (nothing learned since changes it): a shard's planned load; an unsharded target's
 * durations, pinned now when this group was never planned. -1: unknown (nothing was
 * learned when the group was pinned), placed by a hash of its key. */
static int item_cost(struct nb_cache_dir *cache, struct nb_item_expect *e, struct nb_work_item *it, double *ret,
                     struct nb_error *err) {
        struct nb_action *a = it->action;
        uint64_t ms = 0;
        if (a->shard_count > 1) {
                /* nb_shard_plan_attach pinned it; without durations the shards go by hash. */
                if (a->shard_durations)
                        ms = nb_item_expected_ms(it, e);
        } else {
                _cleanup_free_ char *text = NULL;
                json_auto_t *tests = NULL;
                char group[NB_DIGEST_HEX_LEN + 1];
                int r;
                if ((r = nb_action_resolve(a, cache, err)) < 0 || (r = nb_action_group_digest(a, group, err)) < 0 ||
                    (r = nb_durations_pin(cache, group, a->target, &text, &tests, err)) < 0)
                        return r;
                ms = (uint64_t) (nb_durations_total(tests) * 1000.0 + 0.5);
        }
        *ret = ms ? (double) ms / 1000.0 + START_UP_SEC : -1;
        return 0;
}

/* One item's cost, its action built for it and freed at once, so that planning holds
 * no descriptor or venv plan past the item however many there are. A failure in the
 * workspace (a bad lockfile, a missing wheel) every machine meets alike: unknown, and
 * the machine the item falls to says why. Any other (descriptors, memory, a pin not
 * written) could differ between machines and so their slices: it stops the plan. */
static int plan_cost(struct nb_cache_dir *cache, struct nb_item_expect *e, struct nb_work_item *it,
                     nb_item_build_fn build, void *userdata, double *ret, struct nb_error *err) {
        int r = build(it, userdata, err);
        if (r >= 0)
                r = item_cost(cache, e, it, ret, err);
        nb_action_free(it->action);
        it->action = NULL;
        if (r >= 0)
                return 0;
        if (err->klass == NB_ERROR_INPUT || err->klass == NB_ERROR_USAGE) {
                nb_error_clear(err);
                *ret = -1;
                return 0;
        }
        return nb_error_wrap(err, -r, "--machine: planning the slices (%s)", it->target->name);
}

int nb_machine_slice(struct nb_cache_dir *cache, const struct nb_machine *m, struct nb_work_item *items, size_t *n,
                     nb_item_build_fn build, void *userdata, struct nb_error *err) {
        if (!m || m->count <= 1)
                return 0;
        _cleanup_free_ struct nb_plan_item *plan = calloc(*n ? *n : 1, sizeof(*plan));
        _cleanup_free_ unsigned *bin = calloc(*n ? *n : 1, sizeof(*bin));
        _cleanup_strv_free_ char **keys = calloc(*n + 1, sizeof(char *));
        _cleanup_(nb_item_expect_done) struct nb_item_expect expect = { .cache = cache };
        if (!plan || !bin || !keys)
                return nb_error_set(err, ENOMEM, "--machine");
        for (size_t i = 0; i < *n; i++) {
                if (asprintf(&keys[i], "%s#%u/%u@%u", items[i].target->name, items[i].shard_index, items[i].shard_count,
                             items[i].run) < 0) {
                        keys[i] = NULL;
                        return nb_error_set(err, ENOMEM, "--machine");
                }
                /* The runs of a shard come together and cost what its first one does:
                 * one pin per target and shard, not one per run. */
                const struct nb_work_item *prev = i ? &items[i - 1] : NULL;
                bool again = prev && prev->target == items[i].target && prev->shard_index == items[i].shard_index &&
                             prev->shard_count == items[i].shard_count;
                double cost = again ? plan[i - 1].cost : 0;
                int r = again ? 0 : plan_cost(cache, &expect, &items[i], build, userdata, &cost, err);
                if (r < 0)
                        return r;
                plan[i] = (struct nb_plan_item) { keys[i], cost };
        }
        int r = nb_plan_lpt(plan, *n, m->count, bin, NULL);
        if (r < 0)
                return nb_error_set(err, -r, "--machine");
        size_t kept = 0;
        for (size_t i = 0; i < *n; i++)
                if (bin[i] == m->index - 1)
                        items[kept++] = items[i];
        for (size_t i = kept; i < *n; i++)
                items[i] = (struct nb_work_item) {};
        *n = kept;
        return 0;
}

int nb_work_items(const struct nb_selection *sel, unsigned shards_per_target, unsigned runs,
                  const struct nb_action_options *o, struct nb_work_item **ret, size_t *ret_n) {
        size_t n = 0;
        for (size_t i = 0; i < sel->n; i++)
                n += o->shard_count > 1 ? 1 : shards_per_target ? shards_per_target : sel->targets[i]->shards;
        _cleanup_free_ struct nb_work_item *items = calloc(n ? n : 1, sizeof(*items));
        if (!items)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < sel->n; i++) {
                const struct nb_target *t = sel->targets[i];
                if (o->shard_count > 1) {
                        items[k++] = (struct nb_work_item) { .target = t, .shard_index = o->shard_index, .shard_count = o->shard_count };
                        continue;
                }
                unsigned count = shards_per_target ? shards_per_target : t->shards;
                for (unsigned s = 1; s <= count; s++)
                        items[k++] = (struct nb_work_item) { .target = t, .shard_index = s, .shard_count = count };
        }
        int r = nb_items_repeat(&items, &n, runs);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(items);
        *ret_n = n;
        return 0;
}
