/* SPDX-License-Identifier: MIT */
/* The mount plan and the paths it walks: targets with ".." are refused when added,
 * the walker keeps the new root's symlinks inside it and refuses them where it walks
 * beneath, and mounts are made in the order given. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "nestbox/sandbox.h"
#include "test.h"

static void config_donep(struct nb_sandbox_config *c) {
        nb_sandbox_config_done(c);
}

static int make_tmpdir(char *tmpl) {
        if (!mkdtemp(tmpl))
                return -1;
        return open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static bool is_dir_at(int dfd, const char *path) {
        struct stat st;
        return fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

TEST(targets_must_be_absolute_without_dotdot) {
        __attribute__((cleanup(config_donep))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_RO_BIND, "/usr", "/work/../etc", 0), -EINVAL);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_BIND, "/usr", "/..", 0), -EINVAL);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/work/..", 0), -EINVAL);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_TMPFS, NULL, "work", 0), -EINVAL);
        CHECK_EQ_INT(cfg.n_mounts, 0);
        /* ".." inside a name is only a name. */
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/work/..data", 0), 0);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/work/data..", 0), 0);
        CHECK_EQ_INT(cfg.n_mounts, 2);
}

TEST(walker_in_root_keeps_symlinks_inside) {
        char tmpl[] = "/tmp/nb-test-mounts.XXXXXX";
        _cleanup_close_ int root = make_tmpdir(tmpl);
        CHECK(root >= 0);
        /* Links that would leave the root if followed on the host. */
        CHECK(symlinkat("/", root, "abs") == 0);
        CHECK(symlinkat("../../../..", root, "rel") == 0);
        char name[64];
        snprintf(name, sizeof(name), "nb-walker-%d", (int) getpid());
        char path[128];

        snprintf(path, sizeof(path), "/abs/%s/x", name);
        _cleanup_close_ int a = nb_mkdir_p_in_root(root, path, 0755);
        CHECK(a >= 0);
        snprintf(path, sizeof(path), "rel/%s/y", name);
        _cleanup_close_ int b = nb_mkdir_p_in_root(root, path, 0755);
        CHECK(b >= 0);
        /* Both landed in the root, nothing on the host's "/". */
        snprintf(path, sizeof(path), "%s/x", name);
        CHECK(is_dir_at(root, path));
        snprintf(path, sizeof(path), "%s/y", name);
        CHECK(is_dir_at(root, path));
        snprintf(path, sizeof(path), "/%s", name);
        CHECK(access(path, F_OK) < 0 && errno == ENOENT);

        snprintf(path, sizeof(path), "/abs/%s", name);
        _cleanup_close_ int c = nb_open_in_root(root, path, O_PATH | O_DIRECTORY);
        CHECK(c >= 0);
        CHECK_EQ_INT(nb_mkdir_p_in_root(root, "/a/../b", 0755), -EXDEV);
        CHECK(!is_dir_at(root, "a") && !is_dir_at(root, "b"));
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, tmpl), 0);
}

TEST(walker_beneath_refuses_a_symlink_on_the_way) {
        char tmpl[] = "/tmp/nb-test-mounts.XXXXXX";
        _cleanup_close_ int dfd = make_tmpdir(tmpl);
        CHECK(dfd >= 0);
        CHECK(mkdirat(dfd, "sub", 0755) == 0);
        CHECK(symlinkat("sub", dfd, "link") == 0);
        CHECK_EQ_INT(nb_mkdir_p_beneath(dfd, "link/x", 0755), -ELOOP);
        CHECK(!is_dir_at(dfd, "sub/x"));
        CHECK_EQ_INT(nb_open_beneath(dfd, "link/x", O_PATH, 0), -ELOOP);
        CHECK_EQ_INT(nb_mkdir_p_beneath(dfd, "sub/../../x", 0755), -EXDEV);
        CHECK_EQ_INT(nb_mkdir_p_beneath(dfd, "/x", 0755), -EXDEV);
        _cleanup_close_ int ok = nb_mkdir_p_beneath(dfd, "sub/x/y", 0755);
        CHECK(ok >= 0);
        CHECK(is_dir_at(dfd, "sub/x/y"));
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, tmpl), 0);
}

/* Runs script in a sandbox with the system dirs and the given mounts added first. */
static int run_script(struct nb_sandbox_config *cfg, const char *script, int *exit_code) {
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) script, NULL };
        int r = nb_sandbox_set_argv(cfg, argv);
        if (r < 0)
                return r;
        struct nb_sandbox_result res;
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        r = nb_sandbox_run(cfg, &res, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", nb_error_message(&err));
                return r;
        }
        if (res.out_fd >= 0)
                close(res.out_fd);
        *exit_code = res.exit_code;
        return 0;
}

TEST(mounts_are_made_in_the_order_given) {
        __attribute__((cleanup(config_donep))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        CHECK_EQ_INT(nb_sandbox_add_system_dirs(&cfg), 0);
        /* /a/b, then a tmpfs over /a hides it; a tmpfs /c, then /c/d on it shows. */
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/a/b", 0), 0);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_TMPFS, NULL, "/a", 0), 0);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_TMPFS, NULL, "/c", 0), 0);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/c/d", 0), 0);
        /* A link in the new root is followed inside it: /e/f lands at the root's /etc/f. */
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_SYMLINK, "/etc", "/e", 0), 0);
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_DIR, NULL, "/e/f", 0), 0);
        /* A /tmp of the caller's replaces the default one (256 MiB): 1 MiB fills it. */
        CHECK_EQ_INT(nb_sandbox_add_mount(&cfg, NB_MOUNT_TMPFS, NULL, "/tmp", 1 << 20), 0);
        _cleanup_close_ int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        cfg.stderr_fd = devnull;
        int code = -1;
        CHECK_EQ_INT(run_script(&cfg,
                                "test -d /a && test ! -e /a/b || exit 10; "
                                "test -d /c/d || exit 11; "
                                "test -d /etc/f && test -L /e || exit 12; "
                                "head -c 2097152 /dev/zero > /tmp/big && exit 13; "
                                "exit 0",
                                &code),
                     0);
        CHECK_EQ_INT(code, 0);
        CHECK(access("/etc/f", F_OK) < 0); /* the host's /etc is untouched */
}
