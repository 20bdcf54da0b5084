/* SPDX-License-Identifier: MIT */
/* libnestbox-zygote.so: the target's side of the warm interpreter, called by
 * zygote.py through ctypes in the processes it forks. Per target:
 *
 *   zygote (python, its own sandbox) --fork--> A: nb_zygote_unshare: a nested user
 *     namespace mapping only uid/gid 1000 onto itself, then new mount, pid, net, uts
 *     and ipc namespaces for its children; A forks B and exits
 *   B, pid 1 of the new pid namespace: nb_zygote_setup: the pidfd to the supervisor,
 *     waits for "go" (its cgroups are joined), then the cold path's own steps from
 *     the sandbox library: stdio, every other fd closed, mounts + pivot_root (so the
 *     zygote's mount table, its view of the cache's trees included, is detached, not
 *     merely covered), a fresh hardened /proc, hostname, cgroup namespace, loopback,
 *     every capability dropped, Landlock, the same seccomp filter
 *   B forks C, the command (nb_zygote_command: a new session, default signals, the
 *     cwd); B stays as pid 1 (nb_zygote_reap): forwards signals, reaps, reports the
 *     command's status; when B exits the kernel kills everything left in the namespace.
 *
 * Neither the zygote nor the test holds a capability of the host's user namespace: the
 * zygote's were dropped by its own sandbox, and B's are those of the nested namespace
 * it made, dropped before C exists. */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "sandbox-internal.h"
#include "zygote-internal.h"

#define EXPORT __attribute__((visibility("default")))

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGUSR1, SIGUSR2 };

/* The target's configuration, decoded once in B and kept for C (its cwd, rlimits). */
static struct nb_sandbox_config target;
static struct nb_zygote_extra extra;

static int report(int conn, const struct nb_error *err) {
        _cleanup_free_ char *msg = NULL;
        if (asprintf(&msg, "E%d\t%s", err->code ? err->code : EIO, nb_error_message(err)) > 0)
                (void) send(conn, msg, strlen(msg), MSG_NOSIGNAL);
        return -(err->code ? err->code : EIO);
}

static int write_file(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return nb_write_all(fd, text, strlen(text));
}

EXPORT int nb_zygote_unshare(int conn) {
        struct nb_error err = NB_ERROR_INIT;
        uid_t uid = getuid();
        gid_t gid = getgid();
        char map[64];
        int r;
        /* Unprivileged: anyone may make a user namespace and map its own ids in it. */
        if (unshare(CLONE_NEWUSER) < 0)
                return report(conn, (nb_error_set(&err, errno, "nested user namespace"), &err));
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned) uid, (unsigned) uid);
        if ((r = write_file("/proc/self/uid_map", map)) < 0 || (r = write_file("/proc/self/setgroups", "deny")) < 0)
                return report(conn, (nb_error_set(&err, -r, "nested uid_map"), &err));
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned) gid, (unsigned) gid);
        if ((r = write_file("/proc/self/gid_map", map)) < 0)
                return report(conn, (nb_error_set(&err, -r, "nested gid_map"), &err));
        if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC) < 0)
                return report(conn, (nb_error_set(&err, errno, "nested namespaces"), &err));
        return 0;
}

static int wait_go(int conn, struct nb_error *err) {
        char c = 0;
        ssize_t n;
        do
                n = recv(conn, &c, 1, 0);
        while (n < 0 && errno == EINTR);
        return n == 1 && c == 'g' ? 0 : nb_error_setx(err, EPIPE, "the supervisor went away before the start");
}

static int send_pidfd(int conn, struct nb_error *err) {
        _cleanup_close_ int pidfd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        if (pidfd < 0)
                return nb_error_set(err, errno, "pidfd_open");
        int r = nb_send_fd(conn, pidfd); /* its byte is 'f'; the first message is the pidfd */
        return r < 0 ? nb_error_set(err, -r, "handing the pidfd to the supervisor") : 0;
}

static int stdio_and_fds(int conn, int *notify_fd, int in_fd, int out_fd, int err_fd, struct nb_error *err) {
        const int fds[] = { in_fd, out_fd, err_fd };
        for (int i = 0; i < 3; i++)
                if (fds[i] != i && dup2(fds[i], i) < 0)
                        return nb_error_set(err, errno, "dup2 to fd %d", i);
        /* The two we keep, as 3 and 4 (above the stdio just made): nothing else of the
         * zygote's crosses in, neither the fds it serves on nor its own files. */
        if ((conn = fcntl(conn, F_DUPFD_CLOEXEC, 10)) < 0 || (*notify_fd = fcntl(*notify_fd, F_DUPFD_CLOEXEC, 10)) < 0 ||
            dup3(conn, 3, O_CLOEXEC) < 0 || dup3(*notify_fd, 4, O_CLOEXEC) < 0)
                return nb_error_set(err, errno, "dup");
        (void) close_range(5, ~0U, 0);
        *notify_fd = 4;
        return 3;
}

static int steps(const char *spec, size_t len, int conn, int notify_fd, struct nb_error *err) {
        struct nb_zygote_extra x = {};
        struct nb_mount_plan *plan = NULL;
        int r;
        nb_sandbox_config_init(&target);
        if ((r = nb_zygote_spec_decode(spec, len, &target, &x, err)) < 0 || (r = wait_go(conn, err)) < 0)
                return r;
        extra = x;
        nb_init_set_title();
        /* Privileged in our nested namespaces only, as in sandbox.c's child. */
        if ((r = nb_mounts_prepare(&target, &plan, err)) < 0)
                return r;
        const char *host = target.hostname ? target.hostname : "nestbox";
        if (sethostname(host, strlen(host)) < 0)
                r = nb_error_set(err, errno, "sethostname %s", host);
        else if (unshare(CLONE_NEWCGROUP) < 0)
                r = nb_error_set(err, errno, "cgroup namespace");
        else
                r = nb_mounts_setup(&target, plan, conn, err);
        nb_mount_plan_free(plan);
        if (r < 0 || (r = nb_net_setup(&target, err)) < 0 || (r = nb_caps_drop_all(err)) < 0 ||
            (r = nb_landlock_apply(&target, x.landlock_abi, err)) < 0)
                return r;
        _cleanup_close_ int filter = memfd_create("nestbox-seccomp", MFD_CLOEXEC);
        int listener = -1;
        if (filter < 0)
                return nb_error_set(err, errno, "memfd_create");
        bool notify = x.notify != 0;
        if ((r = nb_seccomp_export(&target, notify, filter, err)) < 0 ||
            (r = nb_seccomp_load(filter, notify, &listener, err)) < 0)
                return r;
        /* The listener to the supervisor and nowhere else, as in sandbox.c. */
        if (listener >= 0) {
                r = nb_send_fd(notify_fd, listener);
                close(listener);
                if (r < 0)
                        return nb_error_set(err, -r, "handing the seccomp listener to the supervisor");
        }
        close(notify_fd);
        umask((mode_t) x.umask);
        /* As pid 1 of the cold path: the command, same uid, cannot reach our fds
         * through /proc/1/fd (the supervisor's connection); C turns it back on. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return nb_error_set(err, errno, "PR_SET_DUMPABLE");
        return 0;
}

static void noop_handler(int sig) {
        (void) sig;
}

/* B: everything up to the command. On failure the supervisor has the reason ('E')
 * and B exits. On success the forwarded signals and SIGCHLD are blocked, for the reap
 * loop, before the caller forks the command, and the connection's new descriptor is
 * returned (every other one is closed). */
EXPORT int nb_zygote_setup(const char *spec, size_t len, int conn, int in_fd, int out_fd, int err_fd,
                           int notify_fd) {
        struct nb_error err = NB_ERROR_INIT;
        int r;
        if ((r = send_pidfd(conn, &err)) < 0)
                return report(conn, &err);
        if ((r = stdio_and_fds(conn, &notify_fd, in_fd, out_fd, err_fd, &err)) < 0)
                return report(conn, &err);
        conn = r;
        if ((r = steps(spec, len, conn, notify_fd, &err)) < 0)
                return report(conn, &err);
        sigset_t set;
        sigemptyset(&set);
        struct sigaction sa = { .sa_handler = noop_handler };
        for (size_t i = 0; i < NB_ELEMENTSOF(forwarded); i++) {
                sigaddset(&set, forwarded[i]);
                sigaction(forwarded[i], &sa, NULL);
        }
        sigaddset(&set, SIGCHLD);
        sigaction(SIGCHLD, &sa, NULL);
        sigprocmask(SIG_BLOCK, &set, NULL);
        return conn;
}

/* C, first thing after the fork: what init.c's exec_command does before its exec. */
EXPORT int nb_zygote_command(void) {
        if (setsid() < 0)
                return -errno;
        for (size_t i = 0; i < NB_ELEMENTSOF(forwarded); i++)
                signal(forwarded[i], SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        /* /proc/self/cmdline and comm as the cold path's exec leaves them (the zygote
         * was started with room for it), not pid 1's title. */
        nb_init_set_cmdline(target.argv);
        /* The rlimit backend's limits (limits_rlimit.c): on the command, not pid 1. */
        const struct { int resource; uint64_t v; } rl[] = { { RLIMIT_AS, extra.rlimit_as },
                                                           { RLIMIT_NPROC, extra.rlimit_nproc } };
        for (size_t i = 0; i < NB_ELEMENTSOF(rl); i++) {
                struct rlimit v = { rl[i].v, rl[i].v };
                if (rl[i].v && setrlimit(rl[i].resource, &v) < 0)
                        return -errno;
        }
        const char *cwd = target.cwd ? target.cwd : "/";
        if (chdir(cwd) < 0)
                return -errno;
        return close_range(3, ~0U, 0) < 0 ? -errno : 0;
}

static void send_status(int conn, int status, const struct rusage *ru) {
        char msg[1 + sizeof(struct nb_zygote_status)] = { 'S' };
        struct nb_zygote_status s = {
                .wait_status = status,
                .utime_us = (int64_t) ru->ru_utime.tv_sec * 1000000 + ru->ru_utime.tv_usec,
                .stime_us = (int64_t) ru->ru_stime.tv_sec * 1000000 + ru->ru_stime.tv_usec,
                .maxrss_kb = ru->ru_maxrss,
        };
        memcpy(msg + 1, &s, sizeof(s));
        (void) send(conn, msg, sizeof(msg), MSG_NOSIGNAL);
}

/* B after the fork: pid 1's loop (init.c's), plus the lifeline: a supervisor that
 * went away takes the test with it, as the parent-death signal does in the cold path. */
EXPORT void nb_zygote_reap(int cmd, int conn) {
        sigset_t set;
        sigemptyset(&set);
        for (size_t i = 0; i < NB_ELEMENTSOF(forwarded); i++)
                sigaddset(&set, forwarded[i]);
        sigaddset(&set, SIGCHLD);
        int sigfd = signalfd(-1, &set, SFD_CLOEXEC);
        for (;;) {
                struct pollfd pfds[2] = { { .fd = sigfd, .events = POLLIN }, { .fd = conn, .events = POLLRDHUP } };
                if (poll(pfds, 2, -1) < 0)
                        continue;
                if (pfds[1].revents & (POLLHUP | POLLRDHUP | POLLERR))
                        _exit(137); /* pid 1 exits: the kernel kills the namespace */
                struct signalfd_siginfo si;
                if (!(pfds[0].revents & POLLIN) || read(sigfd, &si, sizeof(si)) != (ssize_t) sizeof(si))
                        continue;
                if ((int) si.ssi_signo != SIGCHLD) {
                        kill(cmd, (int) si.ssi_signo);
                        continue;
                }
                int status;
                struct rusage ru;
                pid_t p;
                while ((p = wait4(-1, &status, WNOHANG, &ru)) > 0) {
                        if (p != cmd || WIFSTOPPED(status))
                                continue;
                        send_status(conn, status, &ru);
                        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
                }
        }
}
