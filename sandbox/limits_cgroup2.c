/* SPDX-License-Identifier: MIT */
/* The cgroup v2 backend: one cgroup per sandbox holds both memory.max and pids.max, made
 * in the subtree limits_delegate.c finds (a delegated cgroup, readied on first use, or
 * root's own cgroup when it already hands out both controllers). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "limits-internal.h"

static bool cgroup2_available(enum nb_limit_res res) {
        (void) res; /* both controllers or none: the two limits share one cgroup */
        struct nb_cgroup2_subtree s;
        int r = nb_cgroup2_find(&s, NULL);
        nb_cgroup2_subtree_done(&s);
        return r == 0;
}

/* The one cgroup: the first resource's directory (all in mask hold the same). */
static const char *the_dir(const struct nb_limits *l, unsigned mask) {
        for (int r = 0; r < NB_RES__MAX; r++)
                if ((mask & NB_RES_BIT(r)) && l->dir[r])
                        return l->dir[r];
        return NULL;
}

static int cgroup2_prepare(struct nb_limits *l, unsigned mask, struct nb_error *err) {
        struct nb_cgroup2_subtree s;
        int r = nb_cgroup2_find(&s, err);
        if (r < 0)
                return r;
        r = nb_cgroup2_enter(&s, err);
        _cleanup_free_ char *parent = TAKE_PTR(s.dir);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = NULL;
        r = nb_cgroup_create_child(parent, &dir);
        if (r < 0)
                return nb_error_set(err, -r, "cgroup2: creating a cgroup under %s", parent);
        /* Every resource in mask names the same cgroup; cleanup removes it once. */
        for (int i = 0; i < NB_RES__MAX; i++)
                if ((mask & NB_RES_BIT(i)) && !(l->dir[i] = strdup(dir)))
                        return nb_error_set(err, ENOMEM, "cgroup2");
        if (mask & NB_RES_BIT(NB_RES_MEMORY)) {
                r = nb_cgroup_write_u64(dir, "memory.max", l->value[NB_RES_MEMORY]);
                if (r < 0)
                        return nb_error_set(err, -r, "cgroup2: %s/memory.max", dir);
                /* Swap must not stretch the limit; a kernel without swap accounting
                 * has no such file, and then there is nothing to stretch it with. */
                (void) nb_cgroup_write(dir, "memory.swap.max", "0");
        }
        if (mask & NB_RES_BIT(NB_RES_PIDS)) {
                r = nb_cgroup_write_u64(dir, "pids.max", l->value[NB_RES_PIDS]);
                if (r < 0)
                        return nb_error_set(err, -r, "cgroup2: %s/pids.max", dir);
        }
        return 0;
}

static int cgroup2_attach(const struct nb_limits *l, unsigned mask, pid_t pid, struct nb_error *err) {
        const char *dir = the_dir(l, mask);
        int r = dir ? nb_cgroup_write_u64(dir, "cgroup.procs", (uint64_t) pid) : -ENOENT;
        if (r < 0)
                return nb_error_set(err, -r, "joining cgroup %s", dir ? dir : "(none)");
        return 0;
}

static void cgroup2_read_result(const struct nb_limits *l, unsigned mask, struct nb_sandbox_result *res) {
        const char *dir = the_dir(l, mask);
        if (!dir)
                return;
        if (mask & NB_RES_BIT(NB_RES_MEMORY)) {
                res->oom_killed = nb_cgroup_read_key(dir, "memory.events", "oom_kill") > 0;
                uint64_t peak = nb_cgroup_read_key(dir, "memory.peak", NULL);
                if (peak > res->peak_rss_bytes)
                        res->peak_rss_bytes = peak;
        }
        if (mask & NB_RES_BIT(NB_RES_PIDS))
                res->pids_limited = nb_cgroup_read_key(dir, "pids.events", "max") > 0;
}

static void cgroup2_cleanup(struct nb_limits *l, unsigned mask) {
        nb_cgroup_destroy(the_dir(l, mask));
        for (int r = 0; r < NB_RES__MAX; r++)
                if (mask & NB_RES_BIT(r)) {
                        free(l->dir[r]);
                        l->dir[r] = NULL;
                }
}

const struct nb_limits_ops nb_limits_cgroup2_ops = {
        .backend = NB_LIMIT_CGROUP2,
        .available = cgroup2_available,
        .prepare = cgroup2_prepare,
        .attach = cgroup2_attach,
        .read_result = cgroup2_read_result,
        .cleanup = cgroup2_cleanup,
};
