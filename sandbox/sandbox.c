/* SPDX-License-Identifier: MIT */
/* nb_sandbox_run: the whole sequence, in the order it happens.
 *
 * parent (the caller's credentials)           child (pid 1 of the new namespaces)
 *   choose host ids, prepare limits (cgroups)
 *   pipes, seccomp memfd; block SIGINT, SIGTERM,
 *   SIGHUP, SIGQUIT (and SIGPIPE): a signalfd
 *   clone3(NEWUSER|NEWNS|NEWPID|NEWUTS|...) ->  joins its cgroup v1 cgroups itself
 *                                               (limits_cgroup1.c), stdio, close all
 *                                               other fds, own process group; a thread
 *                                               makes the net namespace (net.c); waits
 *                                               for "go"
 *   write uid_map/gid_map, join cgroups (v2)
 *   "go" ------------------------------------>  private mounts, pin the bind sources,
 *   write the seccomp filter (prebuilt)         become uid/gid 1000, parent-death
 *                                               signal, not dumpable, hostname, cgroup
 *                                               namespace, mounts + pivot_root,
 *                                               join the net thread and its namespace
 *                                               (lo up), drop all capabilities (and
 *                                               no_new_privs), Landlock (landlock.c);
 *   "filter ready" -------------------------->  waits for the filter; seccomp (its
 *   receive the seccomp listener <------------  listener, with the denial report, to
 *                                               the parent); then init (init.c): fork; the
 *                                               command's process takes a new session,
 *                                               rlimits, cwd, closes fds, execs; pid 1
 *                                               reaps and forwards signals
 *   supervise: forward signals, timeout,
 *   answer denied calls (denials.c)
 *   (SIGABRT, grace, SIGKILL of pid 1)
 *   reap pid 1, read status and errors, collect limits
 *
 * Whatever way the parent leaves, pid 1 is killed (and with it its pid namespace) and
 * reaped once (kill_and_reap, crun's cleanup_pid), the signal mask is restored, the
 * pipes are closed and the cgroups removed. Each privileged step says why it is safe. */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "sandbox-internal.h"

#define SETUP_FAILED 125

struct pipes {
        int sync[2];   /* parent -> child: "go", then "filter ready"; held open by the
                        * parent as a lifeline */
        int err[2];    /* child -> parent: setup or exec error */
        int status[2]; /* init -> parent: the command's wait status */
        int export[2]; /* child -> parent: the NB_MOUNT_OUT_TMPFS root (SCM_RIGHTS) */
        int output[2]; /* the command's stdout+stderr -> the supervisor (when captured) */
        int notify[2]; /* child -> parent: the seccomp listener (SCM_RIGHTS), with the report */
};

struct child_args {
        const struct nb_sandbox_config *cfg;
        int filter_fd; /* memfd the parent compiles the seccomp filter into */
        const struct nb_id_map *ids;
        const struct nb_limits *limits;
        struct pipes *p;
        bool notify;      /* the denial report: denied calls are user notifications */
        int landlock_abi; /* 0: no Landlock */
};

static double now_sec(void) {
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return 0; /* not for CLOCK_MONOTONIC, which every kernel has */
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void close_pair(int p[2]) {
        for (int i = 0; i < 2; i++)
                if (p[i] >= 0) {
                        close(p[i]);
                        p[i] = -1;
                }
}

static void pipes_close(struct pipes *p) {
        close_pair(p->sync);
        close_pair(p->err);
        close_pair(p->status);
        close_pair(p->export);
        close_pair(p->output);
        close_pair(p->notify);
}

/* One byte from the parent: 'g' go, 's' the seccomp filter is ready. */
static int wait_for(int fd, char want) {
        char c;
        ssize_t n;
        do
                n = read(fd, &c, 1);
        while (n < 0 && errno == EINTR);
        return n == 1 && c == want ? 0 : -EPIPE;
}

/* The parent-death signal is reset by the uid change, so it is set after it; the
 * lifeline pipe tells us if the parent died in between. */
static int arm_parent_death(int lifeline, struct nb_error *err) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                return nb_error_set(err, errno, "PR_SET_PDEATHSIG");
        struct pollfd pfd = { .fd = lifeline, .events = 0 };
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
                _exit(SETUP_FAILED);
        return 0;
}

static int redirect_stdio(const struct nb_sandbox_config *cfg, const struct pipes *p, struct nb_error *err) {
        bool capture = p->output[1] >= 0;
        const int fds[] = { cfg->stdin_fd, capture ? p->output[1] : cfg->stdout_fd,
                            capture ? p->output[1] : cfg->stderr_fd };
        for (int i = 0; i < 3; i++)
                if (fds[i] >= 0 && fds[i] != i && dup2(fds[i], i) < 0)
                        return nb_error_set(err, errno, "dup2 to fd %d", i);
        return 0;
}

static int cmp_int(const void *x, const void *y) {
        int a = *(const int *) x, b = *(const int *) y;
        return (a > b) - (a < b);
}

/* Closes every descriptor above 2 but those in keep. */
static void close_all_but(const int *keep, size_t n) {
        int sorted[8];
        if (n > NB_ELEMENTSOF(sorted))
                n = NB_ELEMENTSOF(sorted);
        memcpy(sorted, keep, n * sizeof(int));
        nb_qsort(sorted, n, sizeof(int), cmp_int);
        unsigned lo = 3;
        for (size_t i = 0; i < n; i++) {
                if (sorted[i] < (int) lo)
                        continue;
                if ((unsigned) sorted[i] > lo)
                        (void) close_range(lo, (unsigned) sorted[i] - 1, 0);
                lo = (unsigned) sorted[i] + 1;
        }
        (void) close_range(lo, ~0U, 0);
}

__attribute__((noreturn)) static void sandbox_child(const struct child_args *a) {
        const struct nb_sandbox_config *cfg = a->cfg;
        struct nb_error err = NB_ERROR_INIT;
        int r;
        /* Before anything else, and before a second thread (net.c's) exists: our
         * cgroups, so the limits hold from here on, for every process we start.
         * Privileged (moving into a cgroup): safe because the files were opened by the
         * parent, in cgroups it made for this sandbox, and the kernel checks the
         * opener's credentials; it moves this thread alone, and only into them. */
        if ((r = nb_limits_join_self(a->limits, &err)) < 0)
                goto fail;
        /* Nothing of the supervisor's crosses in: not the workspace or cache directories
         * it holds, not what its own caller left open. pid 1 never execs, so CLOEXEC
         * alone would not protect these, and the command could reach pid 1's fds
         * through /proc/1/fd. */
        if ((r = redirect_stdio(cfg, a->p, &err)) < 0)
                goto fail;
        const int keep[] = { a->p->sync[0], a->p->err[1], a->p->status[1], a->p->export[1], a->p->notify[1], a->filter_fd };
        close_all_but(keep, NB_ELEMENTSOF(keep));
        /* Our own process group: a terminal's ^C reaches the command once, through us. */
        (void) setpgid(0, 0);
        /* The net namespace is made beside the mounts, by a thread (net.c). */
        struct nb_net_job net;
        if ((r = nb_net_start(cfg, &net, &err)) < 0)
                goto fail;

        /* /proc/1/cmdline would show the supervisor's host command line. */
        nb_init_set_title();
        if (wait_for(a->p->sync[0], 'g') < 0)
                _exit(SETUP_FAILED);
        struct nb_mount_plan *plan = NULL;
        /* Privileged (mount propagation, open_tree): safe because our CAP_SYS_ADMIN is
         * that of our new user namespace over our own copy of the mount table, and the
         * bind sources are opened with the caller's credentials, so nothing is pinned
         * that the caller could not read. */
        if ((r = nb_mounts_prepare(cfg, &plan, &err)) < 0)
                goto fail;
        /* Privileged (setresuid/setresgid, setgroups): safe because the parent mapped
         * only the caller's own ids, or nobody/nogroup for root: never host root. */
        if ((r = nb_userns_become(cfg, a->ids, &err)) < 0 ||
            (r = arm_parent_death(a->p->sync[0], &err)) < 0)
                goto fail;
        /* Not dumpable: the command, same uid as we are, cannot open /proc/1/fd,
         * /proc/1/mem or ptrace us. exec gives the command its own flag back. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                nb_error_set(&err, errno, "PR_SET_DUMPABLE");
                goto fail;
        }
        /* Privileged: safe because it names our own new UTS namespace only. */
        const char *host = cfg->hostname ? cfg->hostname : "nestbox";
        if (sethostname(host, strlen(host)) < 0) {
                nb_error_set(&err, errno, "sethostname %s", host);
                goto fail;
        }
        /* Now that the parent put us in our cgroups, make them our cgroup root.
         * Privileged: safe because a cgroup namespace only narrows what we see of the
         * hierarchy; it grants nothing over it. */
        if (unshare(CLONE_NEWCGROUP) < 0) {
                nb_error_set(&err, errno, "cgroup namespace");
                goto fail;
        }
        /* Privileged (tmpfs, binds, procfs, pivot_root): safe because every mount is in
         * our own mount namespace, from sources pinned above, onto targets resolved
         * inside the new root (fs.c's walker), nosuid and nodev; the old root is
         * detached, so no path leads back to the host's tree. */
        if ((r = nb_mounts_setup(cfg, plan, a->p->export[1], &err)) < 0)
                goto fail;
        /* Privileged (a net namespace, bringing lo up, joining it): safe because the
         * namespace is new and owned by ours: lo is its only device and nothing in it
         * reaches the host's network. From here on pid 1 has one thread again. */
        if ((r = nb_net_finish(&net, &err)) < 0)
                goto fail;
        /* From here on we hold no capability: the bounding set is cleared and
         * no_new_privs is set, which seccomp needs to be loaded unprivileged. */
        if ((r = nb_caps_drop_all(&err)) < 0)
                goto fail;
        /* Unprivileged (no_new_privs is set): the second wall, landlock.c. */
        if ((r = nb_landlock_apply(cfg, a->landlock_abi, &err)) < 0)
                goto fail;
        if (wait_for(a->p->sync[0], 's') < 0)
                _exit(SETUP_FAILED); /* the parent reports why */
        int listener = -1;
        if ((r = nb_seccomp_load(a->filter_fd, a->notify, &listener, &err)) < 0)
                goto fail;
        if (close(a->filter_fd) < 0) {
                nb_error_set(&err, errno, "closing the seccomp filter");
                goto fail;
        }
        /* The listener goes to the supervisor and nowhere else: the command must not be
         * able to answer (or read) its own denials. */
        if (listener >= 0) {
                r = nb_send_fd(a->p->notify[1], listener);
                close(listener);
                if (r < 0) {
                        nb_error_set(&err, -r, "handing the seccomp listener to the supervisor");
                        goto fail;
                }
        }

        nb_mount_plan_free(plan);
        struct nb_init_args init = { .cfg = cfg, .limits = a->limits, .err_fd = a->p->err[1], .status_fd = a->p->status[1] };
        nb_init_main(&init);
fail:
        nb_child_report(a->p->err[1], &err);
        _exit(SETUP_FAILED);
}

static pid_t clone_sandbox(int *pidfd) {
        struct clone_args ca = {
                /* No CLONE_NEWNET: pid 1 makes its net namespace itself, in parallel
                 * with its mounts (net.c). */
                .flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
                         CLONE_PIDFD,
                .pidfd = (uint64_t) (uintptr_t) pidfd,
                .exit_signal = SIGCHLD,
        };
        return (pid_t) syscall(SYS_clone3, &ca, sizeof(ca));
}

static int userns_error(int e, struct nb_error *err) {
        if (e == EPERM || e == ENOSPC || e == EUSERS)
                return nb_error_set(err, e,
                                    "cannot create a user namespace (check sysctl kernel.unprivileged_userns_clone=1, "
                                    "user.max_user_namespaces > 0 and kernel.apparmor_restrict_unprivileged_userns=0)");
        return nb_error_set(err, e, "clone3 of the sandbox");
}

/* Waits for pid 1 to exit, forwarding our signals to it and enforcing the timeout:
 * SIGABRT first (Python's faulthandler prints every thread's stack), SIGKILL of pid 1
 * (and with it the whole pid namespace) after the grace period. A kill() may find pid
 * 1 already exiting (ESRCH); the pidfd then says so on the next poll. */
static int supervise(pid_t pid, int pidfd, int sigfd, int output_fd, struct nb_capture *capture,
                     struct nb_denials *denials, const struct nb_sandbox_config *cfg, double start,
                     struct nb_sandbox_end *end, struct nb_sandbox_result *res) {
        double deadline = cfg->timeout_sec > 0 ? start + cfg->timeout_sec : 0;
        double grace = cfg->kill_grace_sec > 0 ? cfg->kill_grace_sec : 0;
        bool aborted = false; /* SIGABRT sent: the deadline is now the grace's end */
        for (;;) {
                int wait_ms = -1;
                if (deadline > 0) {
                        double left = deadline - now_sec();
                        /* Clamped: the loop re-checks the deadline after each wake-up. */
                        wait_ms = left <= 0 ? 0 : left > 86400 ? 86400 * 1000 : (int) (left * 1000) + 1;
                }
                /* A negative fd is skipped by poll: no capture, no denial report, the
                 * report already read. */
                int output_watch = output_fd >= 0 ? nb_capture_poll_fd(capture, output_fd, now_sec(), &wait_ms) : -1;
                struct pollfd pfds[5] = { { .fd = pidfd, .events = POLLIN },
                                          { .fd = sigfd, .events = POLLIN },
                                          { .fd = output_watch, .events = POLLIN },
                                          { .fd = nb_denials_poll_fd(denials), .events = POLLIN },
                                          { .fd = !end || end->have_report ? -1 : end->status_fd, .events = POLLIN } };
                int n = poll(pfds, 5, wait_ms);
                if (n < 0 && errno != EINTR)
                        return -errno;
                /* Before anything else: a denied call waits for this answer. */
                if (n > 0 && pfds[3].fd >= 0 && pfds[3].revents) {
                        int d = nb_denials_ready(denials, pfds[3].revents);
                        if (d < 0)
                                return d;
                }
                if (n > 0 && output_watch >= 0 && (pfds[2].revents & (POLLIN | POLLHUP))) {
                        int d = nb_capture_drain_paced(capture, output_fd, now_sec());
                        if (d < 0)
                                return d;
                        if (d > 0)
                                output_fd = -1; /* every writer is gone */
                }
                if (n > 0 && (pfds[0].revents & (POLLIN | POLLHUP)))
                        return 0;
                if (n > 0 && pfds[4].fd >= 0 && pfds[4].revents) {
                        int d = nb_end_read_report(end);
                        if (d < 0)
                                return d;
                        if (end->have_report && end->report.empty && end->may_leave)
                                return 0; /* pid 1 is only tearing down (teardown.c) */
                }
                if (n > 0 && (pfds[1].revents & POLLIN)) {
                        struct signalfd_siginfo si;
                        ssize_t got = read(sigfd, &si, sizeof(si));
                        if (got < 0 && errno != EAGAIN && errno != EINTR)
                                return -errno;
                        int sig = got == (ssize_t) sizeof(si) ? (int) si.ssi_signo : 0;
                        bool cancels = cfg->cancel && (sig == SIGINT || sig == SIGTERM);
                        if (cancels && (res->cancelled || *cfg->cancel)) {
                                (void) kill(pid, SIGKILL); /* the second: at once */
                                res->cancelled = res->cancelled ? res->cancelled : sig;
                                deadline = 0;
                        } else if (cancels) {
                                res->cancelled = sig;
                                *cfg->cancel = sig;
                                if (!aborted) {
                                        aborted = true;
                                        (void) kill(pid, SIGABRT);
                                        deadline = now_sec() + grace;
                                }
                        } else if (sig) {
                                (void) kill(pid, sig);
                                if (sig == SIGINT || sig == SIGTERM)
                                        res->passed_on = sig;
                        }
                }
                if (deadline > 0 && now_sec() >= deadline) {
                        if (!aborted) {
                                res->timed_out = true;
                                aborted = true;
                                (void) kill(pid, SIGABRT);
                                deadline = now_sec() + grace;
                        } else {
                                (void) kill(pid, SIGKILL);
                                deadline = 0;
                        }
                }
        }
}

/* The loop alone, for zygote.c's warm runs: they end when the target's process does. */
int nb_sandbox_supervise(pid_t pid, int pidfd, int sigfd, int output_fd, struct nb_capture *capture,
                         struct nb_denials *denials, const struct nb_sandbox_config *cfg, double start,
                         struct nb_sandbox_result *res) {
        return supervise(pid, pidfd, sigfd, output_fd, capture, denials, cfg, start, NULL, res);
}

/* Reads the child's error report: "[X]errno<TAB>message". Returns 0 when empty; a
 * pipe that cannot be read is an error too, never taken for "no error". */
static int read_child_error(int fd, bool *exec_failed, struct nb_error *err) {
        _cleanup_free_ char *msg = NULL;
        size_t len = 0;
        int r = nb_read_fd(fd, 64 * 1024, &msg, &len); /* retries EINTR itself */
        if (r < 0)
                return nb_error_set(err, -r, "reading the sandbox's error pipe");
        if (len == 0)
                return 0;
        char *p = msg;
        *exec_failed = *p == 'X';
        if (*exec_failed)
                p++;
        char *tab = strchr(p, '\t');
        int code = tab ? atoi(p) : EIO;
        return nb_error_setx(err, code > 0 ? code : EIO, "%s", tab ? tab + 1 : p);
}

void nb_sandbox_fill_status(int status, struct nb_sandbox_result *res) {
        if (WIFEXITED(status)) {
                res->exit_code = WEXITSTATUS(status);
                res->signal = 0;
        } else if (WIFSIGNALED(status)) {
                res->exit_code = -1;
                res->signal = WTERMSIG(status);
        }
}

/* crun's cleanup_pid: a pid 1 not yet reaped when its variable goes out of scope is
 * killed, and with it everything in its pid namespace, then reaped. */
static void kill_and_reap(pid_t *pid) {
        if (*pid <= 0)
                return;
        int saved = errno;
        (void) kill(*pid, SIGKILL); /* our own unreaped child: it cannot fail */
        while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
                ;
        *pid = 0;
        errno = saved;
}

static void usage_to_result(const struct rusage *ru, double start, struct nb_sandbox_result *res) {
        res->wall_sec = now_sec() - start;
        res->user_sec = (double) ru->ru_utime.tv_sec + (double) ru->ru_utime.tv_usec / 1e6;
        res->sys_sec = (double) ru->ru_stime.tv_sec + (double) ru->ru_stime.tv_usec / 1e6;
        res->peak_rss_bytes = (uint64_t) ru->ru_maxrss * 1024;
}

double nb_sandbox_now(void) {
        return now_sec();
}

int nb_sandbox_run(const struct nb_sandbox_config *cfg, struct nb_sandbox_result *res, struct nb_error *err) {
        memset(res, 0, sizeof(*res));
        res->exit_code = -1;
        res->out_fd = -1;
        if (!cfg->argv || !cfg->argv[0])
                return nb_error_setx(err, EINVAL, "no command to run");
        nb_end_reap_left();

        struct nb_id_map ids;
        nb_userns_choose_ids(&ids);

        /* Privileged (creating cgroups): safe because they are made only beneath our
         * own cgroup, where we can write already, and hold nothing but limits. */
        _cleanup_(nb_limits_freep) struct nb_limits *limits = NULL;
        int r = nb_limits_prepare(cfg, &limits, err);
        if (r < 0)
                return r;

        _cleanup_(pipes_close) struct pipes p = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } };
        if (pipe2(p.sync, O_CLOEXEC) < 0 || pipe2(p.err, O_CLOEXEC) < 0 || pipe2(p.status, O_CLOEXEC) < 0 ||
            socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p.export) < 0)
                return nb_error_set(err, errno, "pipe");
        bool notify = !cfg->no_denial_report && nb_seccomp_notify_available();
        _cleanup_(nb_denials_done) struct nb_denials denials = { .sock = -1, .listener = -1 };
        if (notify) {
                if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p.notify) < 0 ||
                    fcntl(p.notify[0], F_SETFL, O_NONBLOCK) < 0)
                        return nb_error_set(err, errno, "the denial report's socket");
                if ((r = nb_denials_init(&denials, p.notify[0])) < 0)
                        return nb_error_set(err, -r, "the denial report");
        }
        res->denials_reported = notify;
        res->landlock_abi = cfg->zygote ? 0 : nb_landlock_abi();
        _cleanup_(nb_capture_done) struct nb_capture capture = {};
        bool capturing = cfg->capture_head > 0 || cfg->capture_tail > 0;
        if (capturing) {
                if ((r = nb_capture_init(&capture, cfg->capture_head, cfg->capture_tail, p.output)) < 0)
                        return nb_error_set(err, -r, "the output pipe");
        }
        _cleanup_close_ int filter_fd = memfd_create("nestbox-seccomp", MFD_CLOEXEC);
        if (filter_fd < 0)
                return nb_error_set(err, errno, "memfd_create");

        _cleanup_(nb_saved_mask_restore) struct nb_saved_mask mask = { .saved = false };
        _cleanup_close_ int sigfd = nb_sandbox_block_signals(&mask.old, err);
        if (sigfd < 0)
                return sigfd;
        mask.saved = true;
        /* A cancellation that came before the signals were blocked: start nothing. */
        if (cfg->cancel && *cfg->cancel)
                return nb_error_setx(err, ECANCELED, "interrupted before the sandbox started");

        double start = now_sec();
        struct child_args ca = { .cfg = cfg, .filter_fd = filter_fd, .ids = &ids, .limits = limits, .p = &p,
                                 .notify = notify, .landlock_abi = res->landlock_abi };
        /* Privileged (new namespaces): safe because each is new and owned by a new user
         * namespace; the child's capabilities are those of that namespace alone. */
        _cleanup_close_ int pidfd = -1;
        _cleanup_(kill_and_reap) pid_t pid = clone_sandbox(&pidfd);
        if (pid < 0) {
                int e = errno;
                pid = 0;
                return userns_error(e, err);
        }
        if (pid == 0)
                sandbox_child(&ca);

        /* The child's ends; the parent keeps sync[1] as the child's lifeline. */
        int *child_ends[] = { &p.sync[0], &p.err[1], &p.status[1], &p.export[1], &p.output[1], &p.notify[1] };
        for (size_t i = 0; i < NB_ELEMENTSOF(child_ends); i++) {
                nb_closep(child_ends[i]);
                *child_ends[i] = -1;
        }

        /* Privileged (writing the maps, joining cgroups): safe because the maps name
         * only the caller's ids or nobody/nogroup (userns.c), and pid 1 is our own
         * child going into the cgroups we have just made. */
        if ((r = nb_userns_write_maps(pid, cfg, &ids, err)) < 0 ||
            (r = nb_limits_attach_rest(limits, pid, err)) < 0)
                return r;
        if ((r = nb_write_all(p.sync[1], "g", 1)) < 0)
                return nb_error_set(err, -r, "starting the sandbox");
        if ((r = nb_seccomp_export(cfg, notify, filter_fd, err)) < 0)
                return r;
        /* EPIPE: the child failed its setup and is gone; its error pipe says why. */
        r = nb_write_all(p.sync[1], "s", 1);
        if (r < 0 && r != -EPIPE)
                return nb_error_set(err, -r, "handing the seccomp filter to the sandbox");
        if (cfg->on_started)
                cfg->on_started(pid, cfg->userdata);

        /* No limit, no cgroup (asking limits.c which backend a limit got would probe
         * the cgroup hierarchies again: 0.2 ms). */
        struct nb_sandbox_end end = { .status_fd = p.status[0],
                                      .may_leave = cfg->memory_bytes == 0 && cfg->pids_max == 0 };
        if (fcntl(p.status[0], F_SETFL, O_NONBLOCK) < 0)
                return nb_error_set(err, errno, "the status pipe");
        r = supervise(pid, pidfd, sigfd, p.output[0], &capture, &denials, cfg, start, &end, res);
        mask.reraise = res->passed_on;
        if (r < 0)
                return nb_error_set(err, -r, "supervising the sandbox");

        int init_status = 0;
        if (end.have_report && end.report.empty && end.may_leave) {
                nb_end_leave(pid);
                pid = 0; /* not ours to kill: it is exiting */
                usage_to_result(&end.report.usage, start, res);
        } else {
                struct rusage ru = { 0 };
                pid_t reaped;
                while ((reaped = wait4(pid, &init_status, 0, &ru)) < 0 && errno == EINTR)
                        ;
                if (reaped < 0)
                        return nb_error_set(err, errno, "waiting for the sandbox");
                pid = 0; /* reaped: nothing left for kill_and_reap */
                usage_to_result(&ru, start, res);
                if (end.status_fd >= 0 && !end.have_report && (r = nb_end_read_report(&end)) < 0)
                        return nb_error_set(err, -r, "reading the command's status");
        }

        bool exec_failed = false;
        r = read_child_error(p.err[0], &exec_failed, err);
        if (r < 0) {
                res->exec_failed = exec_failed;
                return r;
        }
        /* Without a report pid 1 itself was killed (at the timeout): its status counts. */
        nb_sandbox_fill_status(end.have_report ? end.report.status : init_status, res);
        nb_limits_collect(limits, res);
        nb_denials_take(&denials, res);
        /* pid 1 is gone, so the kernel is killing everything else in its namespace:
         * the pipe reaches EOF as soon as the last of them has exited. */
        if (capturing && ((r = nb_capture_drain_to_eof(&capture, p.output[0], 5000)) < 0 ||
                          (r = nb_capture_take(&capture, res)) < 0))
                return nb_error_set(err, -r, "reading the command's output");
        int out = nb_recv_fd(p.export[0]);
        res->out_fd = out >= 0 ? out : -1;
        return 0;
}
