/* SPDX-License-Identifier: MIT */
/* The warm interpreter, the supervisor's side (README "Warm interpreter").
 *
 * nb_zygote_start runs the zygote as an ordinary sandbox (nb_sandbox_run, in a keeper
 * process of its own group that waits for it) whose stdin is one end of a
 * SOCK_SEQPACKET pair: its request socket. Every process forked from ours afterwards
 * (the -j N item processes) sends on the other end; a message is atomic, so requests
 * from several processes never interleave.
 *
 * nb_zygote_run is nb_sandbox_run's twin for one target: the same configuration, the
 * same limits backends (the target's pid 1 joins its cgroups before it builds its
 * root), the same supervision loop (timeout, signals, capture) and the same result;
 * zygote_enter.c builds the walls in the zygote's fork, and the denial report's
 * listener comes back as in the cold path. What differs: the rusage is the command's
 * (pid 1's own is a few pages of a fork). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <linux/magic.h>
#include <linux/close_range.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "sandbox-internal.h"
#include "zygote-internal.h"

#define MAX_REQUEST (192u << 10) /* below the socket's default buffer */

struct nb_zygote {
        int sock; /* our end of the request socket */
        pid_t keeper;
        struct nb_zygote_view *views;
        size_t n_views;
};

void nb_zygote_stop(struct nb_zygote *z) {
        if (!z)
                return;
        if (z->sock >= 0)
                close(z->sock);
        /* Not waiting for it to read EOF: a run of cache hits would wait for its import
         * of pytest. The keeper's death is its sandbox's (the parent-death signal of
         * pid 1), and with pid 1 goes everything in its namespace. */
        if (z->keeper > 0)
                (void) kill(z->keeper, SIGKILL);
        if (z->keeper > 0)
                while (waitpid(z->keeper, NULL, 0) < 0 && errno == EINTR)
                        ;
        for (size_t i = 0; i < z->n_views; i++) {
                free(z->views[i].host);
                free(z->views[i].inside);
        }
        free(z->views);
        free(z);
}

static void zygote_stopp(struct nb_zygote **z) {
        nb_zygote_stop(*z);
}

/* Closes every fd above 2 but a and b. */
static void close_others(int a, int b) {
        int lo = a < b ? a : b, hi = a < b ? b : a;
        if (lo > 3)
                (void) close_range(3, (unsigned) lo - 1, 0);
        if (hi > lo + 1)
                (void) close_range((unsigned) lo + 1, (unsigned) hi - 1, 0);
        (void) close_range((unsigned) hi + 1, ~0U, 0);
}

__attribute__((noreturn)) static void keeper(struct nb_sandbox_config *zcfg, int devnull) {
        /* Nothing of ours: another zygote's socket held here would keep that zygote
         * from ever reading its EOF. */
        close_others(zcfg->stdin_fd, devnull);
        /* Not in the terminal's group (a ^C is the run's to hand on) and not outliving
         * the run if it is killed. */
        (void) setpgid(0, 0);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        struct nb_sandbox_result res;
        struct nb_error err = NB_ERROR_INIT;
        int r = nb_sandbox_run(zcfg, &res, &err);
        if (r < 0 && getenv("NESTBOX_ZYGOTE_DEBUG"))
                fprintf(stderr, "nestbox: zygote: %s\n", nb_error_message(&err));
        _exit(r < 0 ? 3 : 0);
}

int nb_zygote_start(struct nb_sandbox_config *zcfg, const char *const *views, struct nb_zygote **ret,
                    struct nb_error *err) {
        _cleanup_(zygote_stopp) struct nb_zygote *z = calloc(1, sizeof(*z));
        if (!z)
                return nb_error_set(err, ENOMEM, "zygote");
        z->sock = -1;
        for (const char *const *v = views; v && v[0]; v += 2) {
                struct nb_zygote_view *nv = realloc(z->views, (z->n_views + 1) * sizeof(*nv));
                if (!nv)
                        return nb_error_set(err, ENOMEM, "zygote");
                z->views = nv;
                nv[z->n_views] = (struct nb_zygote_view) { strdup(v[0]), strdup(v[1]) };
                if (!nv[z->n_views++].inside || !nv[z->n_views - 1].host)
                        return nb_error_set(err, ENOMEM, "zygote");
        }
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return nb_error_set(err, errno, "the zygote's socket");
        z->sock = sp[0];
        _cleanup_close_ int theirs = sp[1];
        _cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return nb_error_set(err, errno, "/dev/null");
        zcfg->zygote = true;
        /* A filter chain holds one listener (EBUSY): each target's own filter carries
         * the denial report, so the zygote's has none and denies with TRACE, which
         * ranks below the target's notifications (seccomp.c deny_action). */
        zcfg->no_denial_report = true;
        zcfg->stdin_fd = theirs;
        if (!getenv("NESTBOX_ZYGOTE_DEBUG"))
                zcfg->stdout_fd = zcfg->stderr_fd = devnull;
        z->keeper = fork();
        if (z->keeper < 0)
                return nb_error_set(err, errno, "fork");
        if (z->keeper == 0)
                keeper(zcfg, devnull);
        /* Not waiting for it to be ready: requests queue on the socket meanwhile, and a
         * run whose targets are all cache hits pays for a fork, not for an import of
         * pytest. A zygote that failed to start is a closed socket: EPIPE, the cold
         * path. */
        *ret = TAKE_PTR(z);
        return 0;
}

/* A message on a target's connection, and the descriptor it carried (or -1). */
static ssize_t recv_msg(int conn, char *buf, size_t size, int *fd, int flags) {
        union {
                char b[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = buf, .iov_len = size };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b) };
        *fd = -1;
        ssize_t n;
        do
                n = recvmsg(conn, &msg, flags | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL;
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(fd, CMSG_DATA(c), sizeof(int));
        return n < 0 ? -errno : n;
}

static int send_request(int sock, const char *spec, size_t len, const int *fds, size_t n_fds) {
        union {
                char b[CMSG_SPACE(5 * sizeof(int))];
                struct cmsghdr align;
        } u;
        memset(&u, 0, sizeof(u));
        struct iovec iov = { .iov_base = (void *) spec, .iov_len = len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                              .msg_controllen = CMSG_SPACE(n_fds * sizeof(int)) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
        return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* The host pid behind a pidfd: its fdinfo names it in our pid namespace. */
static pid_t pidfd_pid(int pidfd) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *text = NULL;
        if (fd < 0 || nb_read_fd(fd, 1 << 16, &text, NULL) < 0)
                return -1;
        const char *p = strstr(text, "\nPid:");
        return p ? (pid_t) strtol(p + 5, NULL, 10) : -1;
}

static void status_to_result(const struct nb_zygote_status *s, double start, struct nb_sandbox_result *res) {
        nb_sandbox_fill_status(s->wait_status, res);
        res->user_sec = (double) s->utime_us / 1e6;
        res->sys_sec = (double) s->stime_us / 1e6;
        res->peak_rss_bytes = (uint64_t) s->maxrss_kb * 1024;
        res->wall_sec = nb_sandbox_now() - start;
}

/* An 'E' message ("E<errno>\t<text>"): from the zygote's side, so not trusted: its
 * text escaped (it is printed where it surfaces) and never a cancellation, which only
 * our own signal handling may declare (a cancelled warm run is not re-run cold). */
static int zygote_error(struct nb_error *err, const char *msg, const char *prefix) {
        int code = atoi(msg + 1);
        if (code <= 0 || code == ECANCELED)
                code = EIO;
        const char *tab = strchr(msg, '\t');
        _cleanup_free_ char *text = nb_escape(tab ? tab + 1 : msg + 1, 0);
        return nb_error_setx(err, code, "%s%s", prefix, text ? text : "(out of memory)");
}

/* /out as the cold path has it: a tmpfs directory, nothing else the zygote could hold
 * (a read-only view of trees/, its own /tmp) stands in for it. */
static bool is_out_dir(int fd) {
        struct stat st;
        struct statfs sf;
        return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && fstatfs(fd, &sf) == 0 &&
               sf.f_type == TMPFS_MAGIC;
}

/* After pid 1 is gone: /out, then a setup error or the command's status. */
static int read_back(int conn, double start, struct nb_sandbox_result *res, struct nb_error *err) {
        bool have_status = false;
        for (;;) {
                char buf[4096];
                int fd;
                ssize_t n = recv_msg(conn, buf, sizeof(buf) - 1, &fd, MSG_DONTWAIT);
                if (n <= 0)
                        break;
                buf[n] = 0;
                if (buf[0] == 'f' && fd >= 0 && res->out_fd < 0 && is_out_dir(fd))
                        res->out_fd = fd;
                else if (fd >= 0)
                        close(fd);
                if (buf[0] == 'E')
                        return zygote_error(err, buf, "");
                if (buf[0] == 'S' && (size_t) n == 1 + sizeof(struct nb_zygote_status)) {
                        struct nb_zygote_status s;
                        memcpy(&s, buf + 1, sizeof(s));
                        status_to_result(&s, start, res);
                        have_status = true;
                }
        }
        if (!have_status) { /* pid 1 was killed (the timeout's SIGKILL) */
                res->exit_code = -1;
                res->signal = SIGKILL;
                res->wall_sec = nb_sandbox_now() - start;
        }
        return 0;
}

struct run_fds {
        int conn[2], output[2], notify[2], pidfd, sigfd;
};

static void run_fds_close(struct run_fds *f) {
        int *all[] = { &f->conn[0], &f->conn[1], &f->output[0], &f->output[1], &f->notify[0], &f->notify[1], &f->pidfd,
                       &f->sigfd };
        for (size_t i = 0; i < NB_ELEMENTSOF(all); i++)
                if (*all[i] >= 0) {
                        close(*all[i]);
                        *all[i] = -1;
                }
}

/* Until pid 1 of the target exists and has joined its cgroups. */
static int start_target(struct nb_zygote *z, const struct nb_sandbox_config *cfg, const char *spec, size_t len,
                        struct run_fds *f, struct nb_limits *limits, pid_t *ret_pid, struct nb_error *err) {
        _cleanup_close_ int devnull = cfg->stdin_fd < 0 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
        int in = cfg->stdin_fd >= 0 ? cfg->stdin_fd : devnull;
        int out = f->output[1] >= 0 ? f->output[1] : cfg->stdout_fd >= 0 ? cfg->stdout_fd : 1;
        int errfd = f->output[1] >= 0 ? f->output[1] : cfg->stderr_fd >= 0 ? cfg->stderr_fd : 2;
        if (in < 0)
                return nb_error_set(err, errno, "/dev/null");
        const int fds[] = { f->conn[1], in, out, errfd, f->notify[1] >= 0 ? f->notify[1] : in };
        int r = send_request(z->sock, spec, len, fds, NB_ELEMENTSOF(fds));
        if (r < 0)
                return nb_error_set(err, -r, "sending the request to the zygote");
        nb_closep(&f->conn[1]);
        f->conn[1] = -1;
        nb_closep(&f->output[1]);
        f->output[1] = -1;
        nb_closep(&f->notify[1]);
        f->notify[1] = -1;
        char buf[4096];
        ssize_t n = recv_msg(f->conn[0], buf, sizeof(buf) - 1, &f->pidfd, 0);
        if (n > 0 && buf[0] == 'E') {
                buf[n] = 0;
                return zygote_error(err, buf, "zygote: ");
        }
        pid_t pid = f->pidfd >= 0 ? pidfd_pid(f->pidfd) : -1;
        if (n <= 0 || pid <= 0)
                return nb_error_setx(err, EPIPE, "the zygote did not start the target");
        /* Privileged (joining cgroups): as in sandbox.c, our own cgroups for a process
         * that is ours to place. */
        if ((r = nb_limits_attach(limits, pid, err)) < 0)
                return r;
        if (send(f->conn[0], "g", 1, MSG_NOSIGNAL) != 1)
                return nb_error_set(err, errno, "starting the target");
        *ret_pid = pid;
        return 0;
}

int nb_zygote_run(struct nb_zygote *z, const struct nb_sandbox_config *cfg, struct nb_sandbox_result *res,
                  struct nb_error *err) {
        memset(res, 0, sizeof(*res));
        res->exit_code = -1;
        res->out_fd = -1;
        enum nb_limit_backend mb, pb;
        nb_limits_choose(cfg->memory_bytes, cfg->pids_max, &mb, &pb);
        mode_t mask = umask(022);
        umask(mask);
        struct nb_zygote_extra x = { .landlock_abi = nb_landlock_abi(), .umask = mask,
                                     .rlimit_as = mb == NB_LIMIT_RLIMIT ? cfg->memory_bytes : 0,
                                     .rlimit_nproc = pb == NB_LIMIT_RLIMIT ? cfg->pids_max : 0,
                                     .notify = !cfg->no_denial_report && nb_seccomp_notify_available() };
#if defined(__SANITIZE_ADDRESS__)
        /* ASan's runtime reserves terabytes of address space, which no RLIMIT_AS holds:
         * an ASan build (tests/run --sanitize) serves such a target cold. */
        if (x.rlimit_as)
                return nb_error_setx(err, ENOTSUP, "not a target for the zygote (an ASan build under RLIMIT_AS)");
#endif
        _cleanup_free_ char *spec = NULL;
        size_t len = 0;
        int r = nb_zygote_spec_encode(cfg, &x, z->views, z->n_views, &spec, &len);
        if (r == -EXDEV || r == -ENOTSUP || (r >= 0 && len > MAX_REQUEST))
                return nb_error_setx(err, r < 0 ? -r : ENOTSUP, "not a target for the zygote");
        if (r < 0)
                return nb_error_set(err, -r, "the zygote's request");
        _cleanup_(nb_limits_freep) struct nb_limits *limits = NULL;
        if ((r = nb_limits_prepare(cfg, &limits, err)) < 0)
                return r;
        _cleanup_(run_fds_close) struct run_fds f = { { -1, -1 }, { -1, -1 }, { -1, -1 }, -1, -1 };
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f.conn) < 0)
                return nb_error_set(err, errno, "the target's socket");
        /* The denial report as in sandbox.c: the filter's listener comes back over
         * notify, and the supervision loop answers it. */
        _cleanup_(nb_denials_done) struct nb_denials denials = { .sock = -1, .listener = -1 };
        if (x.notify && (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f.notify) < 0 ||
                         fcntl(f.notify[0], F_SETFL, O_NONBLOCK) < 0 || nb_denials_init(&denials, f.notify[0]) < 0))
                return nb_error_set(err, errno ? errno : ENOMEM, "the denial report's socket");
        res->denials_reported = x.notify;
        _cleanup_(nb_capture_done) struct nb_capture capture = {};
        bool capturing = cfg->capture_head > 0 || cfg->capture_tail > 0;
        if (capturing && (r = nb_capture_init(&capture, cfg->capture_head, cfg->capture_tail, f.output)) < 0)
                return nb_error_set(err, -r, "the output pipe");
        _cleanup_(nb_saved_mask_restore) struct nb_saved_mask sig = { .saved = false };
        if ((f.sigfd = nb_sandbox_block_signals(&sig.old, err)) < 0)
                return f.sigfd;
        sig.saved = true;
        if (cfg->cancel && *cfg->cancel)
                return nb_error_setx(err, ECANCELED, "interrupted before the sandbox started");
        res->landlock_abi = x.landlock_abi;
        double start = nb_sandbox_now();
        pid_t pid = 0;
        if ((r = start_target(z, cfg, spec, len, &f, limits, &pid, err)) < 0)
                return r;
        if (cfg->on_started)
                cfg->on_started(pid, cfg->userdata);
        r = nb_sandbox_supervise(pid, f.pidfd, f.sigfd, f.output[0], &capture, &denials, cfg, start, res);
        if (r < 0) {
                (void) kill(pid, SIGKILL);
                return nb_error_set(err, -r, "supervising the sandbox");
        }
        if ((r = read_back(f.conn[0], start, res, err)) < 0)
                return r;
        nb_limits_collect(limits, res);
        nb_denials_take(&denials, res);
        res->warm = true;
        if (capturing && ((r = nb_capture_drain_to_eof(&capture, f.output[0], 5000)) < 0 ||
                          (r = nb_capture_take(&capture, res)) < 0))
                return nb_error_set(err, -r, "reading the command's output");
        return 0;
}
