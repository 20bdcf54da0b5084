/* SPDX-License-Identifier: MIT */
/* The warm interpreter's two halves (README "Warm interpreter"): the supervisor's side
 * (zygote.c, in nestbox) and the target's side (zygote_enter.c, in the zygote's process
 * tree, loaded by zygote.py through ctypes). They share the spec (zygote_spec.c) and the
 * messages on a target's connection, a SOCK_SEQPACKET pair:
 *
 *   the request: the spec, with 5 fds: this connection, stdin, stdout, stderr, and
 *                         the denial report's socket (a listener goes there)
 *   target -> supervisor  'f' + the target's pid-1 pidfd (SCM_RIGHTS), first
 *   supervisor -> target  'g' (limits attached: go on)
 *   target -> supervisor  'f' + the /out root (SCM_RIGHTS, from mounts.c)
 *                         'E' errno<TAB>message: setup failed, nothing of the test ran
 *                         'S' + struct nb_zygote_status: the command's end */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "nestbox/sandbox.h"

struct nb_zygote_status {
        int32_t wait_status;
        int32_t pad;
        int64_t utime_us, stime_us, maxrss_kb;
};

/* A translation of a host path prefix to where the zygote sees it. */
struct nb_zygote_view {
        char *host, *inside;
};

/* What a target needs beyond its sandbox configuration. */
struct nb_zygote_extra {
        int landlock_abi;
        unsigned umask;
        /* Where the rlimit backend holds a limit (no cgroup): the command sets it, as
         * init.c's does before its exec. 0: none. */
        uint64_t rlimit_as, rlimit_nproc;
        /* The denial report: the filter's listener goes to the supervisor over the
         * request's fifth descriptor. */
        int notify;
};

/* Encodes cfg as NUL-separated records (tag, then values), bind sources translated by
 * views; -EXDEV when a bind source is under none of them, -ENOTSUP for what the
 * zygote cannot give (a read-write bind, a controlling terminal). */
int nb_zygote_spec_encode(const struct nb_sandbox_config *cfg, const struct nb_zygote_extra *x,
                          const struct nb_zygote_view *views, size_t n_views, char **ret, size_t *ret_len);
/* The reverse, into an initialised cfg. */
int nb_zygote_spec_decode(const char *buf, size_t len, struct nb_sandbox_config *cfg, struct nb_zygote_extra *x,
                          struct nb_error *err);

/* zygote_enter.c, exported from libnestbox-zygote.so for zygote.py (in order: A, B, C,
 * B). Each returns 0 (setup: the connection's fd) or -errno, having sent the reason
 * ('E') to the supervisor. */
int nb_zygote_unshare(int conn);
int nb_zygote_setup(const char *spec, size_t len, int conn, int in_fd, int out_fd, int err_fd, int notify_fd);
int nb_zygote_command(void);
__attribute__((noreturn)) void nb_zygote_reap(int cmd, int conn);
