/* SPDX-License-Identifier: MIT */
/* The command's stdout and stderr when the caller asks for them captured: one pipe
 * whose write end is the sandbox's fds 1 and 2 and whose read end the supervisor
 * drains while it waits. Nothing the command writes touches a host file, so it can
 * neither fill the host's disk nor learn a host path through /proc/self/fd. Memory is
 * bounded: the first `head` bytes and the last `tail` bytes are kept, the rest only
 * counted.
 *
 * Read in batches. A reader waiting in poll is woken by every write, and pytest writes
 * one progress dot per test: 5,000 tests cost the writer 5,000 wake-ups of the
 * supervisor (on a VM, an inter-processor interrupt each) and the CPUs 5,000 turns of
 * the supervisor, taken from the tests when two shards share two cores. So a writer
 * that wakes us more often than every CAPTURE_PAUSE_SEC is left alone for that long
 * after each drain and read in one go when the pause ends: about 1 / CAPTURE_PAUSE_SEC
 * wake-ups a second, however many writes. A writer slower than that is read at each
 * write, as before. A writer fast enough to fill half the pipe within one pause is
 * never paused (judged again every pause-long window), so no writer ever waits on a
 * full pipe for more than one pause. The pipe keeps the kernel's default size: a
 * larger one would count against the user's pipe quota at once, for every sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "sandbox-internal.h"

#define CAPTURE_PAUSE_SEC 0.02

int nb_capture_init(struct nb_capture *c, size_t head, size_t tail, int fds[2]) {
        *c = (struct nb_capture) { .head_cap = head, .tail_cap = tail };
        if (head && !(c->head = malloc(head)))
                return -ENOMEM;
        if (tail && !(c->tail = malloc(tail)))
                return -ENOMEM;
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        /* Only our end is non-blocking: the command blocks when it outruns us. */
        if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        int size = fcntl(fds[0], F_GETPIPE_SZ);
        c->pipe_size = size > 0 ? (size_t) size : 0; /* unknown: never paused */
        return 0;
}

int nb_capture_poll_fd(const struct nb_capture *c, int fd, double now, int *wait_ms) {
        if (fd < 0 || c->resume_at <= now)
                return fd;
        int ms = (int) ((c->resume_at - now) * 1000) + 1;
        if (*wait_ms < 0 || ms < *wait_ms)
                *wait_ms = ms;
        return -1;
}

/* Half a pipe or more read within one pause-long window: pausing would block the
 * writer. Judged when a window ends, so a fast writer stays unpaused while it is. */
static bool writer_is_fast(struct nb_capture *c, uint64_t got, double now) {
        if (c->fast_since > 0 && now - c->fast_since < CAPTURE_PAUSE_SEC) {
                c->fast_bytes += got;
                return true;
        }
        uint64_t window = c->fast_since > 0 ? c->fast_bytes + got : got;
        bool fast = window >= c->pipe_size / 2;
        c->fast_since = fast ? now : 0;
        c->fast_bytes = 0;
        return fast;
}

int nb_capture_drain_paced(struct nb_capture *c, int fd, double now) {
        /* The first drain once a pause is over reads what the writer wrote meanwhile. */
        bool pause_ended = c->resume_at > 0 && now - c->resume_at < CAPTURE_PAUSE_SEC;
        uint64_t before = c->total;
        int r = nb_capture_drain(c, fd);
        c->resume_at = 0;
        if (r != 0 || c->pipe_size == 0)
                return r;
        uint64_t got = c->total - before;
        bool fast = writer_is_fast(c, got, now);
        bool chatty = pause_ended ? got > 0 : c->last_drain > 0 && now - c->last_drain < CAPTURE_PAUSE_SEC;
        c->last_drain = now;
        if (!fast && chatty)
                c->resume_at = now + CAPTURE_PAUSE_SEC;
        return 0;
}

void nb_capture_done(struct nb_capture *c) {
        free(c->head);
        free(c->tail);
        *c = (struct nb_capture) {};
}

static void keep(struct nb_capture *c, const char *p, size_t n) {
        size_t h = c->head_cap - c->head_len;
        if (h > n)
                h = n;
        memcpy(c->head + c->head_len, p, h);
        c->head_len += h;
        p += h;
        n -= h;
        c->total += h;
        if (n == 0)
                return;
        c->total += n;
        if (c->tail_cap == 0)
                return;
        /* The tail is a ring: only its last tail_cap bytes matter. */
        if (n > c->tail_cap) {
                p += n - c->tail_cap;
                n = c->tail_cap;
        }
        while (n > 0) {
                size_t k = c->tail_cap - c->tail_pos;
                if (k > n)
                        k = n;
                memcpy(c->tail + c->tail_pos, p, k);
                c->tail_pos = (c->tail_pos + k) % c->tail_cap;
                if (c->tail_len < c->tail_cap)
                        c->tail_len = c->tail_len + k > c->tail_cap ? c->tail_cap : c->tail_len + k;
                p += k;
                n -= k;
        }
}

int nb_capture_drain(struct nb_capture *c, int fd) {
        char buf[64 * 1024];
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN ? 0 : -errno;
                if (n == 0)
                        return 1;
                keep(c, buf, (size_t) n);
        }
}

int nb_capture_drain_to_eof(struct nb_capture *c, int fd, int quiet_ms) {
        for (;;) {
                int r = nb_capture_drain(c, fd);
                if (r != 0)
                        return r < 0 ? r : 0;
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int n = poll(&pfd, 1, quiet_ms);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n == 0)
                        return 0; /* a writer that neither writes nor dies: stop waiting */
        }
}

int nb_capture_take(struct nb_capture *c, struct nb_sandbox_result *res) {
        size_t len = c->head_len + c->tail_len;
        char *out = malloc(len + 1);
        if (!out)
                return -ENOMEM;
        memcpy(out, c->head, c->head_len);
        /* The ring's oldest byte is at tail_pos once it has wrapped. */
        size_t start = c->tail_len < c->tail_cap ? 0 : c->tail_pos;
        for (size_t i = 0; i < c->tail_len; i++)
                out[c->head_len + i] = c->tail[(start + i) % c->tail_cap];
        out[len] = 0;
        free(res->output);
        res->output = out;
        res->output_len = len;
        res->output_head = c->head_len;
        res->output_total = c->total;
        return 0;
}
