/* SPDX-License-Identifier: MIT */
/* The pool behind -j N.
 *
 * Each running item has a process of its own, forked from this one: it runs the item
 * exactly as a serial run would (nb_action_execute: cache or sandbox, then store) and
 * sends what the parent needs over a pipe as frames. Processes, not threads, because
 * the sandbox's supervisor takes SIGCHLD and SIGINT/SIGTERM through a signalfd with
 * those signals blocked, which is a per-process arrangement; and because a fork taken
 * while another thread holds a lock (malloc's, libcurl's) deadlocks the child. The
 * parent alone prints, writes --output and the combined report, and keeps the
 * summary, so nothing it owns is written by two processes.
 *
 * The parent waits in poll() on a signalfd (SIGCHLD, SIGINT, SIGTERM blocked meanwhile)
 * and the items' pipes. Each item process is its own process group, so a ^C at the
 * terminal reaches the parent alone, which hands it on once per item: a running
 * sandbox gets the timeout treatment as in a serial run, a second signal kills at
 * once. An item is over when its process is reaped and its pipe drained: a dead
 * writer's bytes are all in the pipe (a larger frame blocks the writer until read). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/artifact.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "schedule/pool.h"

/* A frame: type, 7 bytes of padding, the length (host order: both ends are this
 * binary), then the bytes. Anything larger than an artifact may be is refused. */
#define FRAME_HEADER 16
#define FRAME_MAX ((size_t) NB_ARTIFACT_MAX_TOTAL + (64u << 20))

int nb_frame_send(int fd, char type, const void *data, size_t len) {
        char header[FRAME_HEADER] = { type };
        uint64_t n = len;
        memcpy(header + 8, &n, sizeof(n));
        int r = nb_write_all(fd, header, sizeof(header));
        return r < 0 ? r : nb_write_all(fd, data, len);
}

struct slot {
        struct nb_work_item *item;
        pid_t pid; /* 0: reaped */
        int fd;    /* the pipe's read end; -1: drained */
        int wstatus;
        char *buf;
        size_t len, cap;
};

/* Hands every complete frame in s->buf to ops->frame; keeps the rest. */
static int deliver(struct slot *s, const struct nb_pool_ops *ops, void *userdata) {
        size_t at = 0;
        while (s->len - at >= FRAME_HEADER) {
                uint64_t n;
                memcpy(&n, s->buf + at + 8, sizeof(n));
                if (n > FRAME_MAX)
                        return -EBADMSG;
                if (s->len - at - FRAME_HEADER < n)
                        break;
                struct nb_frame f = { s->buf[at], s->buf + at + FRAME_HEADER, (size_t) n };
                ops->frame(s->item, &f, userdata);
                at += FRAME_HEADER + (size_t) n;
        }
        memmove(s->buf, s->buf + at, s->len - at);
        s->len -= at;
        return 0;
}

/* Reads what is there; 1 at end of file. */
static int drain(struct slot *s, const struct nb_pool_ops *ops, void *userdata) {
        for (;;) {
                if (s->cap - s->len < 65536) {
                        size_t cap = s->cap ? s->cap * 2 : 131072;
                        if (cap > FRAME_MAX + FRAME_HEADER + 65536)
                                return -EFBIG;
                        char *b = realloc(s->buf, cap);
                        if (!b)
                                return -ENOMEM;
                        s->buf = b;
                        s->cap = cap;
                }
                ssize_t got = read(s->fd, s->buf + s->len, s->cap - s->len);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0)
                        return errno == EAGAIN ? 0 : -errno;
                s->len += (size_t) got;
                int r = deliver(s, ops, userdata);
                if (r < 0)
                        return r;
                if (got == 0)
                        return 1;
        }
}

static void slot_close(struct slot *s) {
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
        free(s->buf);
        s->buf = NULL;
        s->len = s->cap = 0;
}

struct pool {
        struct slot *slots;
        struct pollfd *pfds; /* the signalfd and one per slot */
        size_t n_slots;
        unsigned running;
        uint64_t memory;
        sigset_t old_mask;
        int sigfd;
};

/* Kills and reaps every item still running: the pool's own failure. */
static void pool_done(struct pool *p) {
        for (size_t i = 0; i < p->n_slots; i++) {
                struct slot *s = &p->slots[i];
                if (s->item && s->pid > 0) {
                        (void) kill(s->pid, SIGKILL);
                        (void) waitpid(s->pid, NULL, 0);
                }
                slot_close(s);
        }
        free(p->slots);
        free(p->pfds);
        if (p->sigfd >= 0)
                close(p->sigfd);
        (void) sigprocmask(SIG_SETMASK, &p->old_mask, NULL);
}

static int start(struct pool *p, struct slot *s, struct nb_work_item *it, const struct nb_pool_ops *ops,
                 void *userdata, struct nb_error *err) {
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return nb_error_set(err, errno, "pipe");
        /* Buffered output would be written twice, once by each process. */
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
                close(pipefd[0]);
                close(pipefd[1]);
                return nb_error_set(err, errno, "fork");
        }
        if (pid == 0) {
                (void) setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(pipefd[0]);
                close(p->sigfd);
                for (size_t i = 0; i < p->n_slots; i++)
                        if (p->slots[i].fd >= 0)
                                close(p->slots[i].fd);
                (void) sigprocmask(SIG_SETMASK, &p->old_mask, NULL);
                int code = ops->run(it, pipefd[1], userdata);
                fflush(stdout);
                fflush(stderr);
                _exit(code);
        }
        close(pipefd[1]);
        (void) fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
        *s = (struct slot) { .item = it, .pid = pid, .fd = pipefd[0] };
        p->running++;
        p->memory += it->memory;
        return 0;
}

static void forward(struct pool *p, int sig) {
        for (size_t i = 0; i < p->n_slots; i++)
                if (p->slots[i].item && p->slots[i].pid > 0)
                        (void) kill(p->slots[i].pid, sig);
}

static void reap(struct pool *p) {
        for (size_t i = 0; i < p->n_slots; i++) {
                struct slot *s = &p->slots[i];
                int st;
                if (s->item && s->pid > 0 && waitpid(s->pid, &st, WNOHANG) == s->pid) {
                        s->wstatus = st;
                        s->pid = 0;
                }
        }
}

static void read_signals(struct pool *p, volatile sig_atomic_t *cancel) {
        struct signalfd_siginfo si;
        while (read(p->sigfd, &si, sizeof(si)) == (ssize_t) sizeof(si)) {
                int sig = (int) si.ssi_signo;
                if (sig != SIGINT && sig != SIGTERM)
                        continue;
                if (cancel && !*cancel)
                        *cancel = sig;
                forward(p, sig); /* the second one as well: the items kill at once */
        }
}

/* An item whose process is reaped and whose pipe is drained is over. */
static int finish(struct pool *p, const struct nb_pool_ops *ops, void *userdata, struct nb_error *err) {
        for (size_t i = 0; i < p->n_slots; i++) {
                struct slot *s = &p->slots[i];
                if (!s->item || s->fd < 0)
                        continue;
                int r = drain(s, ops, userdata);
                if (r < 0)
                        return nb_error_set(err, -r, "reading item \"%s\"", s->item->target->name);
                if (s->pid == 0 || r == 1) {
                        if (s->pid > 0 && waitpid(s->pid, &s->wstatus, 0) == s->pid)
                                s->pid = 0;
                        if (s->pid == 0) {
                                slot_close(s);
                                ops->ended(s->item, s->wstatus, userdata);
                                p->running--;
                                p->memory -= s->item->memory;
                                s->item = NULL;
                        }
                }
        }
        return 0;
}

int nb_pool_run(struct nb_work_item *items, size_t n, const struct nb_pool_config *cfg, const struct nb_pool_ops *ops,
                void *userdata, size_t *ret_started, struct nb_error *err) {
        __attribute__((cleanup(pool_done))) struct pool p = { .sigfd = -1 };
        *ret_started = 0;
        p.n_slots = cfg->jobs ? cfg->jobs : 1;
        p.slots = calloc(p.n_slots, sizeof(*p.slots));
        p.pfds = calloc(p.n_slots + 1, sizeof(*p.pfds));
        if (!p.slots || !p.pfds)
                return nb_error_set(err, ENOMEM, "-j");
        for (size_t i = 0; i < p.n_slots; i++)
                p.slots[i].fd = -1;
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGCHLD);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &sigs, &p.old_mask) < 0)
                return nb_error_set(err, errno, "sigprocmask");
        if ((p.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
                return nb_error_set(err, errno, "signalfd");
        size_t next = 0, throttled = SIZE_MAX;
        while (p.running > 0 || (next < n && !(cfg->cancel && *cfg->cancel))) {
                while (next < n && !(cfg->cancel && *cfg->cancel) && p.running < p.n_slots) {
                        struct nb_work_item *it = &items[next];
                        /* An item whose limit alone is over the budget still runs, alone. */
                        if (cfg->memory_budget && p.running > 0 && p.memory + it->memory > cfg->memory_budget) {
                                if (throttled != next && ops->throttled)
                                        ops->throttled(it, p.memory, cfg->memory_budget, userdata);
                                throttled = next;
                                break;
                        }
                        next++;
                        (*ret_started)++;
                        if (ops->starting(it, userdata) < 0)
                                continue;
                        struct slot *s = p.slots;
                        while (s->item)
                                s++;
                        int r = start(&p, s, it, ops, userdata, err);
                        if (r < 0)
                                return r;
                }
                if (p.running == 0)
                        continue;
                struct pollfd *pfds = p.pfds;
                size_t k = 0;
                pfds[k++] = (struct pollfd) { .fd = p.sigfd, .events = POLLIN };
                for (size_t i = 0; i < p.n_slots; i++)
                        if (p.slots[i].item && p.slots[i].fd >= 0)
                                pfds[k++] = (struct pollfd) { .fd = p.slots[i].fd, .events = POLLIN };
                int got = poll(pfds, k, cfg->tick_ms ? (int) cfg->tick_ms : -1);
                if (got < 0 && errno != EINTR)
                        return nb_error_set(err, errno, "poll");
                read_signals(&p, cfg->cancel);
                reap(&p);
                int r = finish(&p, ops, userdata, err);
                if (r < 0)
                        return r;
                if (ops->tick && cfg->tick_ms)
                        ops->tick(userdata);
        }
        return 0;
}
