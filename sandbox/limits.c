/* SPDX-License-Identifier: MIT */
/* Memory and pids limits behind one table of backends (crun's cgroup managers in
 * spirit), a file each:
 *
 *   limits_cgroup2.c   cgroup v2, where a writable cgroup of ours has both the memory
 *                      and the pids controllers delegated to its subtree;
 *   limits_cgroup1.c   the cgroup v1 memory and pids hierarchies (hybrid hosts);
 *   limits_rlimit.c    RLIMIT_AS and RLIMIT_NPROC, where neither can be used;
 *   limits_cgroup.c    what the two cgroup backends share.
 *
 * This file chooses, in one place (nb_limits_choose_from), the first backend in that
 * order that is available for each resource: memory and pids are chosen independently,
 * since on a v1 host one may be writable and the other not. Every later step calls
 * the chosen backends through their struct nb_limits_ops, and the result names the
 * backend used for each. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/probe.h"
#include "limits-internal.h"

static const struct nb_limits_ops *const backends[] = {
        &nb_limits_cgroup2_ops,
        &nb_limits_cgroup1_ops,
        &nb_limits_rlimit_ops,
};

void nb_limits_choose_from(const struct nb_limits_ops *const *list, size_t n,
                           const uint64_t value[NB_RES__MAX], const struct nb_limits_ops *ret[NB_RES__MAX]) {
        for (int res = 0; res < NB_RES__MAX; res++) {
                ret[res] = NULL;
                if (!value[res])
                        continue; /* nothing to limit: no need to look at cgroups at all */
                for (size_t b = 0; b < n && !ret[res]; b++)
                        if (list[b]->available((enum nb_limit_res) res))
                                ret[res] = list[b];
        }
}

static enum nb_limit_backend backend_of(const struct nb_limits_ops *ops) {
        return ops ? ops->backend : NB_LIMIT_NONE;
}

void nb_limits_choose(uint64_t memory, uint64_t pids, enum nb_limit_backend *mem, enum nb_limit_backend *pids_b) {
        const uint64_t value[NB_RES__MAX] = { [NB_RES_MEMORY] = memory, [NB_RES_PIDS] = pids };
        const struct nb_limits_ops *chosen[NB_RES__MAX];
        nb_limits_choose_from(backends, NB_ELEMENTSOF(backends), value, chosen);
        *mem = backend_of(chosen[NB_RES_MEMORY]);
        *pids_b = backend_of(chosen[NB_RES_PIDS]);
}

/* The resources l uses ops for. */
static unsigned mask_of(const struct nb_limits *l, const struct nb_limits_ops *ops) {
        unsigned mask = 0;
        for (int res = 0; res < NB_RES__MAX; res++)
                if (l->ops[res] == ops)
                        mask |= NB_RES_BIT(res);
        return mask;
}

/* Each backend l uses, once, with the resources it serves; in the table's order. */
#define FOREACH_USED_BACKEND(l, ops, mask)                                              \
        for (size_t _i = 0; _i < NB_ELEMENTSOF(backends); _i++)                         \
                for (const struct nb_limits_ops *ops = backends[_i]; ops; ops = NULL)   \
                        for (unsigned mask = mask_of(l, ops); mask; mask = 0)

int nb_limits_prepare(const struct nb_sandbox_config *cfg, struct nb_limits **ret, struct nb_error *err) {
        _cleanup_(nb_limits_freep) struct nb_limits *l = calloc(1, sizeof(*l));
        if (!l)
                return nb_error_set(err, ENOMEM, "limits");
        for (int res = 0; res < NB_RES__MAX; res++)
                l->self_fd[res] = -1;
        l->value[NB_RES_MEMORY] = cfg->memory_bytes;
        l->value[NB_RES_PIDS] = cfg->pids_max;
        nb_limits_choose_from(backends, NB_ELEMENTSOF(backends), l->value, l->ops);
        FOREACH_USED_BACKEND(l, ops, mask)
                if (ops->prepare) {
                        int r = ops->prepare(l, mask, err);
                        if (r < 0)
                                return r; /* nb_limits_freep undoes what was prepared */
                }
        *ret = TAKE_PTR(l);
        return 0;
}

static int attach(struct nb_limits *l, pid_t pid, bool joined_self, struct nb_error *err) {
        FOREACH_USED_BACKEND(l, ops, mask)
                if (ops->attach && !(joined_self && ops->join_self)) {
                        int r = ops->attach(l, mask, pid, err);
                        if (r < 0)
                                return r;
                }
        return 0;
}

int nb_limits_attach(struct nb_limits *l, pid_t pid, struct nb_error *err) {
        return attach(l, pid, false, err);
}

int nb_limits_attach_rest(struct nb_limits *l, pid_t pid, struct nb_error *err) {
        return attach(l, pid, true, err);
}

int nb_limits_join_self(const struct nb_limits *l, struct nb_error *err) {
        FOREACH_USED_BACKEND(l, ops, mask)
                if (ops->join_self) {
                        int r = ops->join_self(l, mask, err);
                        if (r < 0)
                                return r;
                }
        return 0;
}

int nb_limits_apply_in_child(const struct nb_limits *l, struct nb_error *err) {
        FOREACH_USED_BACKEND(l, ops, mask)
                if (ops->apply) {
                        int r = ops->apply(l, mask, err);
                        if (r < 0)
                                return r;
                }
        return 0;
}

void nb_limits_collect(struct nb_limits *l, struct nb_sandbox_result *res) {
        res->memory_backend = backend_of(l->ops[NB_RES_MEMORY]);
        res->pids_backend = backend_of(l->ops[NB_RES_PIDS]);
        FOREACH_USED_BACKEND(l, ops, mask)
                if (ops->read_result)
                        ops->read_result(l, mask, res);
}

void nb_limits_free(struct nb_limits *l) {
        if (!l)
                return;
        FOREACH_USED_BACKEND(l, ops, mask)
                if (ops->cleanup)
                        ops->cleanup(l, mask);
        for (int res = 0; res < NB_RES__MAX; res++) {
                free(l->dir[res]);
                if (l->self_fd[res] >= 0)
                        close(l->self_fd[res]);
        }
        free(l);
}

void nb_limits_freep(struct nb_limits **l) {
        nb_limits_free(*l);
}

void nb_limits_report(struct nb_limits_report *r) {
        *r = (struct nb_limits_report) { 0 };
        nb_limits_choose(1, 1, &r->memory_backend, &r->pids_backend);
        struct nb_cgroup2_subtree s;
        _cleanup_error_ struct nb_error why = NB_ERROR_INIT;
        if (nb_cgroup2_find(&s, &why) == 0) {
                r->cgroup2_moves = !s.enabled;
                r->cgroup2_dir = TAKE_PTR(s.dir);
        } else
                r->cgroup2_why = strdup(nb_error_message(&why));
        if (geteuid() != 0)
                r->scope_why = nb_systemd_scope_unavailable();
}

void nb_limits_report_done(struct nb_limits_report *r) {
        free(r->cgroup2_dir);
        free(r->cgroup2_why);
        free(r->scope_why);
        *r = (struct nb_limits_report) { 0 };
}
