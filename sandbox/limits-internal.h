/* SPDX-License-Identifier: MIT */
/* Inside limits: the backends' table (crun's struct libcrun_cgroup_manager in spirit)
 * and what the two cgroup backends share. limits.c chooses a backend per resource in
 * one place and calls it only through this table. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox-internal.h"

enum nb_limit_res {
        NB_RES_MEMORY,
        NB_RES_PIDS,
        NB_RES__MAX,
};
#define NB_RES_BIT(r) (1u << (r))

struct nb_limits {
        uint64_t value[NB_RES__MAX];                  /* the limit; 0 = none */
        const struct nb_limits_ops *ops[NB_RES__MAX]; /* its backend; NULL = none */
        char *dir[NB_RES__MAX];                       /* the cgroup holding it (cgroup
                                                       * backends; one cgroup on v2) */
        int self_fd[NB_RES__MAX];                     /* cgroup v1: that cgroup's tasks
                                                       * file, opened by the parent for
                                                       * pid 1 to join itself; -1 */
};

/* One backend. mask holds the resources (NB_RES_BIT) limits.c chose it for. Every
 * member but available may be NULL: that backend has nothing to do at that step. */
struct nb_limits_ops {
        enum nb_limit_backend backend;
        /* Can this backend limit res on this machine, for this process? */
        bool (*available)(enum nb_limit_res res);
        /* In the parent, before the sandbox exists: create what holds the limits. */
        int (*prepare)(struct nb_limits *l, unsigned mask, struct nb_error *err);
        /* In the parent, once pid 1 exists (host pid): put it under the limits. */
        int (*attach)(const struct nb_limits *l, unsigned mask, pid_t pid, struct nb_error *err);
        /* In the sandbox's pid 1 while it has one thread, before anything else: join
         * what holds the limits itself. A backend that has this step is not attached
         * by the parent on the cold path (nb_limits_attach_rest); zygote.c's runs,
         * whose processes are not ours to start, attach it the parent's way. */
        int (*join_self)(const struct nb_limits *l, unsigned mask, struct nb_error *err);
        /* In the command's own process, before exec. */
        int (*apply)(const struct nb_limits *l, unsigned mask, struct nb_error *err);
        /* After the run: whether a limit was hit, peak memory. */
        void (*read_result)(const struct nb_limits *l, unsigned mask, struct nb_sandbox_result *res);
        /* Undoes prepare, also a partial one. */
        void (*cleanup)(struct nb_limits *l, unsigned mask);
};

extern const struct nb_limits_ops nb_limits_cgroup2_ops; /* limits_cgroup2.c */
extern const struct nb_limits_ops nb_limits_cgroup1_ops; /* limits_cgroup1.c */
extern const struct nb_limits_ops nb_limits_rlimit_ops;  /* limits_rlimit.c */

/* The choice itself: for each resource with a value, the first of backends (in order
 * of preference) available for it, else NULL. nb_limits_choose and nb_limits_prepare
 * call it with the real table; tests with their own. */
void nb_limits_choose_from(const struct nb_limits_ops *const *backends, size_t n_backends,
                           const uint64_t value[NB_RES__MAX], const struct nb_limits_ops *ret[NB_RES__MAX]);

/* limits_cgroup.c: what cgroup v1 and v2 share. controller "" means the v2 hierarchy. */
char *nb_cgroup_dir(const char *controller);                       /* ours; NULL if none */
int nb_cgroup_write(const char *dir, const char *file, const char *value);
int nb_cgroup_write_u64(const char *dir, const char *file, uint64_t value);
uint64_t nb_cgroup_read_key(const char *dir, const char *file, const char *key); /* 0 if absent */
int nb_cgroup_create_child(const char *parent, char **ret);           /* nestbox-<pid>-<n> */
void nb_cgroup_destroy(const char *dir);                              /* kill, rmdir */

/* limits_delegate.c: the cgroup v2 subtree the cgroup2 backend uses. */
struct nb_cgroup2_subtree {
        char *dir;    /* the delegated cgroup; the sandboxes' cgroups are made in it */
        bool in_leaf; /* this process lives in dir/nestbox-supervisor already */
        bool enabled; /* dir's cgroup.subtree_control hands out memory and pids */
};
/* The subtree this process may use, changing nothing: 0, or -errno with why set to
 * the reason there is none (for doctor). */
int nb_cgroup2_find(struct nb_cgroup2_subtree *ret, struct nb_error *why);
/* Makes it ready: moves this process into the leaf and enables memory and pids. */
int nb_cgroup2_enter(struct nb_cgroup2_subtree *s, struct nb_error *err);
void nb_cgroup2_subtree_done(struct nb_cgroup2_subtree *s);
/* NESTBOX_TEST_CGROUP2_ROOT (test only), or NULL. */
const char *nb_cgroup2_test_root(void);
/* NULL when `systemd-run --user --scope` can work here, else why not (malloc'd). */
char *nb_systemd_scope_unavailable(void);
