/* SPDX-License-Identifier: MIT */
/* NB_MOUNT_OUT_TMPFS: what the command writes to it is readable by the caller after
 * the sandbox is gone, through the returned descriptor, and it cannot grow past its
 * size: a test cannot fill the host's disk through /out. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/sandbox.h"
#include "test.h"

static void config_donep(struct nb_sandbox_config *c) {
        nb_sandbox_config_done(c);
}

TEST(out_tmpfs_outlives_the_sandbox_and_is_capped) {
        __attribute__((cleanup(config_donep))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        CHECK_EQ_INT(nb_sandbox_add_system_dirs(&cfg), 0);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_OUT_TMPFS, NULL, "/out", 1 << 20), 0);
        char *argv[] = { (char *) "/bin/sh", (char *) "-c",
                         (char *) "echo kept > /out/small; "
                                  "head -c 4194304 /dev/zero > /out/big; echo \"big=$?\" > /out/status; "
                                  "ln -s /etc/passwd /out/link",
                         NULL };
        CHECK_EQ_INT(nb_sandbox_set_argv(&cfg, argv), 0);
        _cleanup_close_ int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        cfg.stderr_fd = devnull;

        struct nb_sandbox_result res;
        struct nb_error err = NB_ERROR_INIT;
        int r = nb_sandbox_run(&cfg, &res, &err);
        CHECK_EQ_INT(r, 0);
        if (r < 0) {
                fprintf(stderr, "%s\n", nb_error_message(&err));
                nb_error_clear(&err);
                return;
        }
        _cleanup_close_ int out = res.out_fd;
        CHECK(out >= 0);

        _cleanup_free_ char *small = NULL, *status = NULL;
        size_t len = 0;
        CHECK_EQ_INT(nb_read_file_beneath(out, "small", 100, &small, &len), 0);
        CHECK_EQ_STR(small, "kept\n");
        /* The write of 4 MiB into a 1 MiB tmpfs failed, and what landed is at most 1 MiB. */
        CHECK_EQ_INT(nb_read_file_beneath(out, "status", 100, &status, &len), 0);
        CHECK(status && strcmp(status, "big=0\n") != 0);
        struct stat st;
        CHECK(fstatat(out, "big", &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size <= (1 << 20));
        /* A link planted there is refused by the reader, never followed. */
        char *data = NULL;
        CHECK_EQ_INT(nb_read_file_beneath(out, "link", 1 << 20, &data, &len), -ELOOP);
}
