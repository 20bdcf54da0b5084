/* SPDX-License-Identifier: MIT */
/* The output pipe (sandbox/capture.c): what is kept of it, and the batched reading
 * that spares a chatty writer a wake-up of the supervisor per write. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/sandbox.h"
#include "sandbox-internal.h"
#include "test.h"

struct pipe_capture {
        struct nb_capture c;
        int fds[2];
};

static void pipe_capture_done(struct pipe_capture *p) {
        nb_capture_done(&p->c);
        for (int i = 0; i < 2; i++)
                if (p->fds[i] >= 0)
                        close(p->fds[i]);
}

static void open_capture(struct pipe_capture *p, size_t head, size_t tail) {
        p->fds[0] = p->fds[1] = -1;
        CHECK_EQ_INT(nb_capture_init(&p->c, head, tail, p->fds), 0);
}

static void write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                CHECK(k > 0);
                p += k;
                n -= (size_t) k;
        }
}

TEST(capture_pipe_blocks_the_writer_only) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 16, 16);
        int size = fcntl(p.fds[0], F_GETPIPE_SZ);
        CHECK(size > 0);
        CHECK_EQ_INT((int) p.c.pipe_size, size);
        /* Our end never blocks, the command's does. */
        CHECK(fcntl(p.fds[0], F_GETFL) & O_NONBLOCK);
        CHECK(!(fcntl(p.fds[1], F_GETFL) & O_NONBLOCK));
        CHECK(fcntl(p.fds[0], F_GETFD) & FD_CLOEXEC);
}

/* One write of n dots, then a paced drain at `now`: whether reading pauses after it. */
static bool drain_pauses(struct pipe_capture *p, size_t n, double now) {
        _cleanup_free_ char *dots = malloc(n ? n : 1);
        CHECK(dots);
        memset(dots, '.', n);
        write_all(p->fds[1], dots, n);
        CHECK_EQ_INT(nb_capture_drain_paced(&p->c, p->fds[0], now), 0);
        int wait_ms = -1;
        return nb_capture_poll_fd(&p->c, p->fds[0], now, &wait_ms) < 0;
}

TEST(capture_pauses_a_chatty_writer) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 1024, 1024);
        /* A first write is read at once: nothing says more will follow. */
        CHECK(!drain_pauses(&p, 1, 100.0));
        /* A second within the pause's length: from now on, batches. */
        CHECK(drain_pauses(&p, 1, 100.001));
        CHECK(p.c.total == 2);

        /* Paused: poll is not to watch the pipe, and wakes when the pause ends. */
        int wait_ms = -1;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], 100.001, &wait_ms), -1);
        CHECK(wait_ms >= 1 && wait_ms <= 21);
        /* A nearer deadline (the timeout's) is kept. */
        wait_ms = 3;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], 100.001, &wait_ms), -1);
        CHECK_EQ_INT(wait_ms, 3);
        /* Over: watched again, and what piled up meanwhile read in one go... */
        wait_ms = -1;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], 100.022, &wait_ms), p.fds[0]);
        CHECK_EQ_INT(wait_ms, -1);
        /* ...after which the writer, still writing, is paused again. */
        CHECK(drain_pauses(&p, 40, 100.022));
        CHECK(drain_pauses(&p, 40, 100.043));
        CHECK(p.c.total == 82);
        /* No fd, nothing to watch. */
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, -1, 100.0, &wait_ms), -1);
}

TEST(capture_reads_a_slow_writer_at_each_write) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 1024, 1024);
        /* Writes 30 ms apart: a pause would only add a wake-up to each. */
        for (int i = 0; i < 5; i++)
                CHECK(!drain_pauses(&p, 80, 100.0 + 0.03 * i));
        /* A pause that found nothing when it ended: the next write, long after, is
         * read at once. */
        CHECK(drain_pauses(&p, 1, 100.131));
        CHECK(!drain_pauses(&p, 1, 100.5));
}

TEST(capture_never_pauses_a_writer_that_fills_the_pipe) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 1024, 1024);
        size_t half = p.c.pipe_size / 2;
        CHECK(!drain_pauses(&p, 1, 100.0));
        CHECK(drain_pauses(&p, 1, 100.001));
        /* The pause's end finds half a pipe: the writer may have blocked on it. */
        CHECK(!drain_pauses(&p, half, 100.022));
        /* Unpaused for the window, however little each drain then finds... */
        CHECK(!drain_pauses(&p, 10, 100.023));
        CHECK(!drain_pauses(&p, half, 100.030));
        /* ...and the next window, since the last one read half a pipe and more. */
        CHECK(!drain_pauses(&p, 10, 100.043));
        CHECK(!drain_pauses(&p, 10, 100.050));
        /* A window that read little: the writer slowed down, batches again. */
        CHECK(drain_pauses(&p, 10, 100.064));
}

TEST(capture_keeps_head_and_tail_across_paced_drains) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 4, 4);
        const char *pieces[] = { "ab", "cdef", "g", "hij" };
        double now = 100.0;
        for (size_t i = 0; i < NB_ELEMENTSOF(pieces); i++, now += 0.005) {
                write_all(p.fds[1], pieces[i], strlen(pieces[i]));
                CHECK_EQ_INT(nb_capture_drain_paced(&p.c, p.fds[0], now), 0);
        }
        close(p.fds[1]);
        p.fds[1] = -1;
        /* Every writer gone: the end, and no pause after it. */
        CHECK_EQ_INT(nb_capture_drain_paced(&p.c, p.fds[0], now), 1);
        int wait_ms = -1;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], now, &wait_ms), p.fds[0]);

        struct nb_sandbox_result res = {};
        CHECK_EQ_INT(nb_capture_take(&p.c, &res), 0);
        CHECK_EQ_STR(res.output, "abcdghij");
        CHECK(res.output_total == 10);
        CHECK(res.output_head == 4);
        nb_sandbox_result_done(&res);
}
