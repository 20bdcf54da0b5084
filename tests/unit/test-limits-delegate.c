/* SPDX-License-Identifier: MIT */
/* The delegated cgroup v2 subtree (limits_delegate.c) against the kernel: a cgroup made
 * under the v2 mount and handed to nobody as Delegate=yes would, nobody alone in it.
 * The move into the leaf is the kernel's to allow (write access to the cgroup.procs of
 * the delegated cgroup, the common ancestor); after it, the subtree found is the
 * delegated cgroup, not the leaf. The fake tree's cases are in tests/e2e/test_limits.py. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "limits-internal.h"
#include "test.h"

#define NOBODY 65534

static const char *v2_mount(void) {
        static const char *const mounts[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        for (size_t i = 0; i < NB_ELEMENTSOF(mounts); i++) {
                _cleanup_free_ char *f = NULL;
                if (asprintf(&f, "%s/cgroup.controllers", mounts[i]) >= 0 && access(f, R_OK) == 0)
                        return mounts[i];
        }
        return NULL;
}

static char *slurp(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        char *data = NULL;
        if (fd < 0 || nb_read_fd(fd, 1 << 16, &data, NULL) < 0)
                return NULL;
        return data;
}

static int chown_at(const char *dir, const char *file) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s%s%s", dir, *file ? "/" : "", file) < 0)
                return -1;
        return chown(p, NOBODY, NOBODY);
}

/* In a child started in cg by root, then nobody: the verdict is the exit code. */
static int child_moves_into_the_leaf(const char *cg, const char *rel) {
        if (nb_cgroup_write_u64(cg, "cgroup.procs", (uint64_t) getpid()) < 0)
                return 10;
        if (setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
                return 11;
        _cleanup_free_ char *controllers = NULL, *ctrl_path = NULL;
        if (asprintf(&ctrl_path, "%s/cgroup.controllers", cg) < 0 || !(controllers = slurp(ctrl_path)))
                return 12;
        bool has_both = strstr(controllers, "memory") && strstr(controllers, "pids");

        struct nb_cgroup2_subtree s;
        struct nb_error why = NB_ERROR_INIT;
        int r = nb_cgroup2_find(&s, &why);
        if (has_both ? r < 0 || strcmp(s.dir, cg) != 0 || s.in_leaf || s.enabled
                     : r != -ENOTSUP || !strstr(nb_error_message(&why), "not among its controllers"))
                return 13;
        nb_cgroup2_subtree_done(&s);
        nb_error_clear(&why);

        /* The move itself, whatever the controllers: nobody may, into a cgroup of its own. */
        s = (struct nb_cgroup2_subtree) { .dir = strdup(cg) };
        r = nb_cgroup2_enter(&s, &why);
        if (!s.in_leaf)
                return 14;
        if (has_both ? r < 0 || !s.enabled : r >= 0 || !strstr(nb_error_message(&why), "handing memory and pids"))
                return 15;
        nb_cgroup2_subtree_done(&s);
        nb_error_clear(&why);
        _cleanup_free_ char *self = slurp("/proc/self/cgroup"), *want = NULL;
        if (!self || asprintf(&want, "0::%s/nestbox-supervisor\n", rel) < 0 || !strstr(self, want))
                return 16;

        /* From the leaf, the subtree is its parent: what forked items find. */
        r = nb_cgroup2_find(&s, &why);
        if (has_both ? r < 0 || strcmp(s.dir, cg) != 0 || !s.in_leaf || !s.enabled
                     : r >= 0 || !strstr(nb_error_message(&why), cg) || strstr(nb_error_message(&why), "supervisor"))
                return 17;
        nb_cgroup2_subtree_done(&s);
        nb_error_clear(&why);
        return 0;
}

TEST(real_subtree_nobody_moves_into_its_leaf) {
        const char *mnt = v2_mount();
        if (geteuid() != 0 || !mnt || access(mnt, W_OK) < 0) {
                printf("skip: needs root and a writable cgroup v2 mount\n");
                return;
        }
        unsetenv("NESTBOX_TEST_CGROUP2_ROOT");
        /* The test's cgroup is made at the top, where this process may not be: the
         * path /proc/self/cgroup gives a process in it is relative to the top. */
        _cleanup_free_ char *cg = NULL, *rel = NULL, *leaf = NULL;
        CHECK(asprintf(&rel, "/nestbox-unit-%d", (int) getpid()) > 0);
        CHECK(asprintf(&cg, "%s%s", mnt, rel) > 0);
        CHECK(asprintf(&leaf, "%s/nestbox-supervisor", cg) > 0);
        _cleanup_free_ char *self = slurp("/proc/self/cgroup");
        if (!self || !strstr(self, "0::/\n")) {
                printf("skip: this process is not at the top of the cgroup v2 hierarchy\n");
                return;
        }
        CHECK(mkdir(cg, 0755) == 0);
        static const char *const delegated[] = { "", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads" };
        for (size_t i = 0; i < NB_ELEMENTSOF(delegated); i++)
                CHECK(chown_at(cg, delegated[i]) == 0);

        pid_t pid = fork();
        if (pid == 0)
                _exit(child_moves_into_the_leaf(cg, rel));
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK_EQ_INT(WEXITSTATUS(status), 0);
        for (int i = 0; i < 100 && rmdir(leaf) < 0 && errno == EBUSY; i++)
                usleep(10000); /* the exited child leaves the leaf a moment later */
        CHECK(rmdir(cg) == 0);
}
