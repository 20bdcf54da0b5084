/* SPDX-License-Identifier: MIT */
/* How a run ends (sandbox/teardown.c): the supervisor may return before pid 1 has
 * finished exiting, but only when nothing the command started is alive, and the pid 1
 * it left is reaped by the next run, so a long-lived caller gathers no zombies. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/sandbox.h"
#include "test.h"

static void config_donep(struct nb_sandbox_config *c) {
        nb_sandbox_config_done(c);
}

static void remember_pid(pid_t pid, void *userdata) {
        *(pid_t *) userdata = pid;
}

static int run(char *script, pid_t *pid1, int *out_fd) {
        __attribute__((cleanup(config_donep))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        CHECK_EQ_INT(nb_sandbox_add_system_dirs(&cfg), 0);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_OUT_TMPFS, NULL, "/out", 1 << 20), 0);
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", script, NULL };
        CHECK_EQ_INT(nb_sandbox_set_argv(&cfg, argv), 0);
        cfg.on_started = remember_pid;
        cfg.userdata = pid1;
        struct nb_sandbox_result res;
        struct nb_error err = NB_ERROR_INIT;
        int r = nb_sandbox_run(&cfg, &res, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", nb_error_message(&err));
                nb_error_clear(&err);
                return r;
        }
        int code = res.exit_code;
        if (out_fd)
                *out_fd = res.out_fd;
        else if (res.out_fd >= 0)
                close(res.out_fd);
        nb_sandbox_result_done(&res);
        return code;
}

TEST(a_pid1_left_to_tear_down_is_reaped_by_the_next_run) {
        pid_t first = 0, second = 0;
        CHECK_EQ_INT(run((char *) "exit 7", &first, NULL), 7);
        CHECK(first > 0);
        CHECK_EQ_INT(run((char *) "true", &second, NULL), 0);
        CHECK(second > 0 && second != first);
        /* Reaped, by us: not our child any more, and gone from the process table. */
        CHECK(waitpid(first, NULL, WNOHANG) < 0 && errno == ECHILD);
        CHECK(kill(first, 0) < 0 && errno == ESRCH);
}

TEST(a_process_left_running_is_dead_when_the_run_returns) {
        /* A background writer outlives the command: the run must not return before the
         * kernel has killed it, or it could still write to /out while it is read. */
        pid_t pid1 = 0;
        int out = -1;
        CHECK_EQ_INT(run((char *) "(while :; do echo x >> /out/f; done) & sleep 0.2; exit 0", &pid1, &out), 0);
        CHECK(out >= 0);
        _cleanup_close_ int out_fd = out;
        struct stat a, b;
        CHECK(fstatat(out_fd, "f", &a, AT_SYMLINK_NOFOLLOW) == 0);
        struct timespec pause = { 0, 100 * 1000 * 1000 };
        nanosleep(&pause, NULL);
        CHECK(fstatat(out_fd, "f", &b, AT_SYMLINK_NOFOLLOW) == 0);
        CHECK(a.st_size > 0);
        CHECK(a.st_size == b.st_size);
        /* That run waited for pid 1 itself: it is reaped already. */
        CHECK(waitpid(pid1, NULL, WNOHANG) < 0 && errno == ECHILD);
}
