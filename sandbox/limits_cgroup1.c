/* SPDX-License-Identifier: MIT */
/* The cgroup v1 backend, for hybrid hosts: the memory and the pids hierarchies are
 * separate, so each limit gets its own child cgroup in its own hierarchy, and one may
 * be usable where the other is not. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "limits-internal.h"

static const struct {
        const char *controller, *limit_file;
} v1[NB_RES__MAX] = {
        [NB_RES_MEMORY] = { "memory", "memory.limit_in_bytes" },
        [NB_RES_PIDS] = { "pids", "pids.max" },
};

static bool cgroup1_available(enum nb_limit_res res) {
        _cleanup_free_ char *dir = nb_cgroup_dir(v1[res].controller);
        return dir && access(dir, W_OK) == 0;
}

static int prepare_one(struct nb_limits *l, enum nb_limit_res res, struct nb_error *err) {
        const char *controller = v1[res].controller;
        _cleanup_free_ char *parent = nb_cgroup_dir(controller);
        if (!parent)
                return nb_error_setx(err, ENOENT, "cgroup1: no %s hierarchy", controller);
        int r = nb_cgroup_create_child(parent, &l->dir[res]);
        if (r < 0)
                return nb_error_set(err, -r, "cgroup1: creating a %s cgroup under %s", controller, parent);
        r = nb_cgroup_write_u64(l->dir[res], v1[res].limit_file, l->value[res]);
        if (r < 0)
                return nb_error_set(err, -r, "cgroup1: %s/%s", l->dir[res], v1[res].limit_file);
        /* Swap must not stretch the memory limit: memsw is limit + 0 swap. Without swap
         * accounting the file is absent, and there is nothing to stretch it with. */
        if (res == NB_RES_MEMORY)
                (void) nb_cgroup_write_u64(l->dir[res], "memory.memsw.limit_in_bytes", l->value[res]);
        return 0;
}

static int cgroup1_prepare(struct nb_limits *l, unsigned mask, struct nb_error *err) {
        for (int res = 0; res < NB_RES__MAX; res++)
                if (mask & NB_RES_BIT(res)) {
                        int r = prepare_one(l, (enum nb_limit_res) res, err);
                        if (r < 0)
                                return r;
                }
        return 0;
}

static int cgroup1_attach(const struct nb_limits *l, unsigned mask, pid_t pid, struct nb_error *err) {
        for (int res = 0; res < NB_RES__MAX; res++)
                if ((mask & NB_RES_BIT(res)) && l->dir[res]) {
                        int r = nb_cgroup_write_u64(l->dir[res], "cgroup.procs", (uint64_t) pid);
                        if (r < 0)
                                return nb_error_set(err, -r, "joining cgroup %s", l->dir[res]);
                }
        return 0;
}

static void cgroup1_read_result(const struct nb_limits *l, unsigned mask, struct nb_sandbox_result *res) {
        const char *mem = l->dir[NB_RES_MEMORY], *pids = l->dir[NB_RES_PIDS];
        if ((mask & NB_RES_BIT(NB_RES_MEMORY)) && mem)
                res->oom_killed = nb_cgroup_read_key(mem, "memory.oom_control", "oom_kill") > 0;
        if ((mask & NB_RES_BIT(NB_RES_PIDS)) && pids)
                res->pids_limited = nb_cgroup_read_key(pids, "pids.events", "max") > 0;
}

static void cgroup1_cleanup(struct nb_limits *l, unsigned mask) {
        for (int res = 0; res < NB_RES__MAX; res++)
                if (mask & NB_RES_BIT(res)) {
                        nb_cgroup_destroy(l->dir[res]);
                        free(l->dir[res]);
                        l->dir[res] = NULL;
                }
}

const struct nb_limits_ops nb_limits_cgroup1_ops = {
        .backend = NB_LIMIT_CGROUP1,
        .available = cgroup1_available,
        .prepare = cgroup1_prepare,
        .attach = cgroup1_attach,
        .read_result = cgroup1_read_result,
        .cleanup = cgroup1_cleanup,
};
