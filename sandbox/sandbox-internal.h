/* SPDX-License-Identifier: MIT */
/* The steps of building a sandbox, one file each, called in order from sandbox.c. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "nestbox/sandbox.h"

/* userns.c: who the sandbox's uid/gid 1000 is on the host. */
struct nb_id_map {
        uid_t host_uid;
        gid_t host_gid;
        bool caller_is_root; /* then host ids are nobody/nogroup, never root */
};
void nb_userns_choose_ids(struct nb_id_map *m);
int nb_userns_write_maps(pid_t pid, const struct nb_sandbox_config *cfg, const struct nb_id_map *m, struct nb_error *err);
int nb_userns_become(const struct nb_sandbox_config *cfg, const struct nb_id_map *m, struct nb_error *err);

/* mounts.c: the root filesystem, assembled then pivot_root'ed into. Prepare runs with
 * the caller's credentials (it opens the bind sources), setup as the sandbox's uid. */
struct nb_mount_plan;
int nb_mounts_prepare(const struct nb_sandbox_config *cfg, struct nb_mount_plan **ret, struct nb_error *err);
int nb_mounts_setup(const struct nb_sandbox_config *cfg, const struct nb_mount_plan *plan, int export_sock,
                    struct nb_error *err);
void nb_mount_plan_free(struct nb_mount_plan *p);

/* net.c */
int nb_net_setup(const struct nb_sandbox_config *cfg, struct nb_error *err);

/* caps.c: drops every capability and sets no_new_privs. */
int nb_caps_drop_all(struct nb_error *err);

/* seccomp.c: the parent compiles the filter into fd while the child sets up; the
 * child loads it as its last step. */
int nb_seccomp_export(const struct nb_sandbox_config *cfg, int fd, struct nb_error *err);
int nb_seccomp_load(int fd, struct nb_error *err);

/* limits.c: memory and pids limits behind one table of backends (cgroup v2, cgroup
 * v1, rlimit; limits-internal.h), chosen per resource. prepare and attach run in the
 * parent, apply in the command's process, collect after the run. */
struct nb_limits;
int nb_limits_prepare(const struct nb_sandbox_config *cfg, struct nb_limits **ret, struct nb_error *err);
int nb_limits_attach(struct nb_limits *l, pid_t pid, struct nb_error *err);
int nb_limits_apply_in_child(const struct nb_limits *l, struct nb_error *err);
void nb_limits_collect(struct nb_limits *l, struct nb_sandbox_result *res);
void nb_limits_free(struct nb_limits *l);
void nb_limits_freep(struct nb_limits **l);
/* The backend each limit would get here (NB_LIMIT_NONE for a zero limit). */
void nb_limits_choose(uint64_t memory, uint64_t pids, enum nb_limit_backend *mem, enum nb_limit_backend *pids_b);

/* init.c: pid 1 of the sandbox. Never returns. */
struct nb_init_args {
        const struct nb_sandbox_config *cfg;
        const struct nb_limits *limits; /* rlimits apply to the command, not to pid 1 */
        int err_fd;    /* setup and exec errors go here */
        int status_fd; /* the command's wait status goes here */
};
__attribute__((noreturn)) void nb_init_main(const struct nb_init_args *a);

/* fdpass.c: SCM_RIGHTS over a unix socket. nb_recv_fd does not block. */
int nb_send_fd(int sock, int fd);
int nb_recv_fd(int sock);

/* Child-side error reporting through the error pipe: "errno<TAB>message". */
void nb_child_report(int fd, const struct nb_error *err);

/* capture.c: the command's stdout and stderr through a pipe the supervisor drains,
 * first `head` and last `tail` bytes kept. drain reads what is there (1 at EOF);
 * drain_to_eof waits for EOF, giving up after quiet_ms without a byte. */
struct nb_capture {
        char *head, *tail;
        size_t head_cap, head_len, tail_cap, tail_len, tail_pos;
        uint64_t total;
};
int nb_capture_init(struct nb_capture *c, size_t head, size_t tail);
void nb_capture_done(struct nb_capture *c);
int nb_capture_drain(struct nb_capture *c, int fd);
int nb_capture_drain_to_eof(struct nb_capture *c, int fd, int quiet_ms);
int nb_capture_take(struct nb_capture *c, struct nb_sandbox_result *res);
