/* SPDX-License-Identifier: MIT */
/* The cgroup v1 backend, for hybrid hosts: the memory and the pids hierarchies are
 * separate, so each limit gets its own child cgroup in its own hierarchy, and one may
 * be usable where the other is not.
 *
 * The cold path's pid 1 joins them itself (join_self): the parent opens each cgroup's
 * tasks file beforehand, and pid 1, still single-threaded, writes "0" into it first
 * thing. The kernel migrates a lone `current` without taking cgroup_threadgroup_rwsem
 * (cgroup_procs_write_start: "If we migrate a single thread ..."), whose write side
 * waits an RCU grace period whenever the last writer on the machine is some tens of ms
 * gone: 8-15 ms a target for the parent's two cgroup.procs writes. v1 checks the
 * opener's credentials (the file's f_cred), the parent's own, so nothing is granted
 * to pid 1 that the parent could not do. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
        _cleanup_free_ char *tasks = NULL;
        if (asprintf(&tasks, "%s/tasks", l->dir[res]) < 0)
                return nb_error_set(err, ENOMEM, "cgroup1");
        l->self_fd[res] = open(tasks, O_WRONLY | O_CLOEXEC);
        if (l->self_fd[res] < 0)
                return nb_error_set(err, errno, "cgroup1: %s", tasks);
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

static int cgroup1_join_self(const struct nb_limits *l, unsigned mask, struct nb_error *err) {
        for (int res = 0; res < NB_RES__MAX; res++)
                if ((mask & NB_RES_BIT(res)) && l->self_fd[res] >= 0 && write(l->self_fd[res], "0", 1) != 1)
                        return nb_error_set(err, errno, "joining cgroup %s", l->dir[res]);
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
        .join_self = cgroup1_join_self,
        .read_result = cgroup1_read_result,
        .cleanup = cgroup1_cleanup,
};
