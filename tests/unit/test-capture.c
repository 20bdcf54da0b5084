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
        CHECK_EQ_INT(nb_capture_init(&p->c, head, tail), 0);
        CHECK_EQ_INT(nb_capture_pipe(&p->c, p->fds), 0);
}

static void write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                CHECK(k > 0);
                p += k;
                n -= (size_t) k;
        }
}

TEST(capture_pipe_is_as_large_as_allowed) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 16, 16);
        int size = fcntl(p.fds[0], F_GETPIPE_SZ);
        CHECK(size > 0);
        CHECK_EQ_INT((int) p.c.pipe_size, size);
        /* The kernel's own default is 64 KiB; nestbox asks for fs.pipe-max-size. */
        CHECK(size >= 64 * 1024);
        /* Our end never blocks, the command's does. */
        CHECK(fcntl(p.fds[0], F_GETFL) & O_NONBLOCK);
        CHECK(!(fcntl(p.fds[1], F_GETFL) & O_NONBLOCK));
        CHECK(fcntl(p.fds[0], F_GETFD) & FD_CLOEXEC);
}

TEST(capture_pauses_after_a_small_drain) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 1024, 1024);
        write_all(p.fds[1], ".", 1);
        CHECK_EQ_INT(nb_capture_drain_paced(&p.c, p.fds[0], 100.0), 0);
        CHECK(p.c.total == 1);

        /* Paused: poll is not to watch the pipe, and wakes when the pause ends. */
        int wait_ms = -1;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], 100.0, &wait_ms), -1);
        CHECK(wait_ms >= 1 && wait_ms <= 21);
        /* A nearer deadline (the timeout's) is kept. */
        wait_ms = 3;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], 100.0, &wait_ms), -1);
        CHECK_EQ_INT(wait_ms, 3);
        /* Over: watched again, whatever piled up read in one go. */
        wait_ms = -1;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], 100.021, &wait_ms), p.fds[0]);
        CHECK_EQ_INT(wait_ms, -1);
        for (int i = 0; i < 500; i++)
                write_all(p.fds[1], ".", 1);
        CHECK_EQ_INT(nb_capture_drain_paced(&p.c, p.fds[0], 100.021), 0);
        CHECK(p.c.total == 501);
        /* No fd, nothing to watch. */
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, -1, 100.021, &wait_ms), -1);
}

TEST(capture_reads_a_filling_pipe_at_once) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 1024, 1024);
        size_t half = p.c.pipe_size / 2;
        _cleanup_free_ char *bulk = malloc(half);
        CHECK(bulk);
        memset(bulk, 'y', half);
        write_all(p.fds[1], bulk, half);
        CHECK_EQ_INT(nb_capture_drain_paced(&p.c, p.fds[0], 100.0), 0);
        CHECK(p.c.total == half);
        /* A writer this fast may be blocked on a full pipe: no pause. */
        int wait_ms = -1;
        CHECK_EQ_INT(nb_capture_poll_fd(&p.c, p.fds[0], 100.0, &wait_ms), p.fds[0]);
        CHECK_EQ_INT(wait_ms, -1);
}

TEST(capture_keeps_head_and_tail_across_paced_drains) {
        __attribute__((cleanup(pipe_capture_done))) struct pipe_capture p;
        open_capture(&p, 4, 4);
        const char *pieces[] = { "ab", "cdef", "g", "hij" };
        double now = 100.0;
        for (size_t i = 0; i < NB_ELEMENTSOF(pieces); i++, now += 0.05)
                write_all(p.fds[1], pieces[i], strlen(pieces[i]));
        CHECK_EQ_INT(nb_capture_drain_paced(&p.c, p.fds[0], now), 0);
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
