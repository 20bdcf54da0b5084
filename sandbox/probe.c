/* SPDX-License-Identifier: MIT */
/* What this kernel offers. Each probe tries the real thing in a throwaway child or
 * reads the kernel's own answer; none changes the machine. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/probe.h"
#include "sandbox-internal.h"

static bool file_contains(const char *path, const char *needle) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *data = NULL;
        if (fd < 0 || nb_read_fd(fd, 1 << 20, &data, NULL) < 0)
                return false;
        return strstr(data, needle) != NULL;
}

static void read_sysctl(const char *path, char *out, size_t n) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *data = NULL;
        out[0] = 0;
        if (fd < 0 || nb_read_fd(fd, 4096, &data, NULL) < 0)
                return;
        data[strcspn(data, "\n")] = 0;
        snprintf(out, n, "%s", data);
}

/* Tries what the sandbox does first: a child in new user, mount and pid namespaces. */
static void probe_userns(struct nb_features *f) {
        pid_t pid = (pid_t) syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
                _exit(0);
        int e = errno, status = 0;
        if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                f->user_namespaces = true;
                return;
        }
        char clone_knob[32], max_ns[32], apparmor[32];
        read_sysctl("/proc/sys/kernel/unprivileged_userns_clone", clone_knob, sizeof(clone_knob));
        read_sysctl("/proc/sys/user/max_user_namespaces", max_ns, sizeof(max_ns));
        read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", apparmor, sizeof(apparmor));
        snprintf(f->userns_why, sizeof(f->userns_why),
                 "%s (kernel.unprivileged_userns_clone=%s, user.max_user_namespaces=%s, "
                 "kernel.apparmor_restrict_unprivileged_userns=%s)",
                 strerror(e), *clone_knob ? clone_knob : "n/a", *max_ns ? max_ns : "n/a", *apparmor ? apparmor : "n/a");
}

static void probe_cgroup2(struct nb_features *f) {
        _cleanup_fclose_ FILE *m = fopen("/proc/self/mountinfo", "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (m && getline(&line, &cap, m) > 0) {
                char *sep = strstr(line, " - cgroup2 ");
                char mnt[256];
                if (sep && sscanf(line, "%*s %*s %*s %*s %255s", mnt) == 1) {
                        f->cgroup2_mounted = true;
                        snprintf(f->cgroup2_path, sizeof(f->cgroup2_path), "%s", mnt);
                        break;
                }
        }
        if (!f->cgroup2_mounted)
                return;
        char path[512];
        snprintf(path, sizeof(path), "%s/cgroup.controllers", f->cgroup2_path);
        read_sysctl(path, f->cgroup2_controllers, sizeof(f->cgroup2_controllers));
}

void nb_probe_features(struct nb_features *f) {
        memset(f, 0, sizeof(*f));
        probe_userns(f);
        f->seccomp_filter = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 &&
                            file_contains("/proc/sys/kernel/seccomp/actions_avail", "errno");
        f->seccomp_user_notif = file_contains("/proc/sys/kernel/seccomp/actions_avail", "user_notif");
        probe_cgroup2(f);
        f->overlayfs = file_contains("/proc/filesystems", "overlay");
        int pfd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        f->pidfd = pfd >= 0;
        if (pfd >= 0)
                close(pfd);
        int fd = nb_open_beneath(AT_FDCWD, ".", O_PATH | O_DIRECTORY, 0);
        f->openat2 = fd >= 0;
        if (fd >= 0)
                close(fd);
        /* fsopen exists when it fails for any reason but ENOSYS. */
        int fs = fsopen("nestbox-no-such-fs", FSOPEN_CLOEXEC);
        f->new_mount_api = fs >= 0 || errno != ENOSYS;
        if (fs >= 0)
                close(fs);
        nb_limits_choose(1, 1, &f->memory_backend, &f->pids_backend);
        f->cgroup1_memory_writable = f->memory_backend == NB_LIMIT_CGROUP1;
        f->cgroup1_pids_writable = f->pids_backend == NB_LIMIT_CGROUP1;
}
