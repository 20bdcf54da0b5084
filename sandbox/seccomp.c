/* SPDX-License-Identifier: MIT */
/* The seccomp deny list. Default allow: a test suite may legitimately use almost any
 * syscall; what is denied here either changes the sandbox itself, reaches the kernel's
 * riskiest attack surface, or touches machine-wide state. Denied calls answer EPERM so
 * code degrades gracefully instead of being killed; clone3 answers ENOSYS so libc
 * falls back to clone, whose flags (unlike clone3's struct) a filter can inspect. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "sandbox-internal.h"

static const struct nb_denied_syscall deny_list[] = {
        { "mount", "could remount the sandbox's read-only views writable or graft host trees" },
        { "umount2", "could uncover what the sandbox's mounts hide" },
        { "pivot_root", "could change the sandbox's root" },
        { "chroot", "a step in classic chroot escapes" },
        { "fsopen", "new mount API: creates filesystems like mount" },
        { "fsconfig", "new mount API: configures a filesystem context" },
        { "fsmount", "new mount API: turns a context into a mount" },
        { "move_mount", "new mount API: attaches mounts anywhere" },
        { "open_tree", "new mount API: clones mount trees" },
        { "fspick", "new mount API: reconfigures existing mounts" },
        { "mount_setattr", "new mount API: could clear read-only flags" },
        { "unshare", "new namespaces would give the test fresh capabilities" },
        { "setns", "joining namespaces would leave the sandbox" },
        { "clone", "only with CLONE_NEW* flags: namespace creation" },
        { "clone3", "flags are hidden in a struct; ENOSYS makes libc fall back to clone" },
        { "ptrace", "inspects and rewrites other processes" },
        { "process_vm_readv", "reads another process's memory" },
        { "process_vm_writev", "writes another process's memory" },
        { "pidfd_getfd", "steals another process's file descriptors" },
        { "kcmp", "leaks kernel pointers ordering between processes" },
        { "bpf", "loads programs into the kernel" },
        { "perf_event_open", "kernel profiling: a large attack surface and side channels" },
        { "keyctl", "the kernel keyring is not namespaced" },
        { "add_key", "the kernel keyring is not namespaced" },
        { "request_key", "the kernel keyring is not namespaced" },
        { "userfaultfd", "a classic tool for exploiting kernel races" },
        { "open_by_handle_at", "opens files by handle, bypassing the mount tree (shocker)" },
        { "name_to_handle_at", "the other half of open_by_handle_at" },
        { "init_module", "loads kernel modules" },
        { "finit_module", "loads kernel modules" },
        { "delete_module", "unloads kernel modules" },
        { "kexec_load", "replaces the running kernel" },
        { "kexec_file_load", "replaces the running kernel" },
        { "reboot", "machine-wide" },
        { "swapon", "machine-wide" },
        { "swapoff", "machine-wide" },
        { "settimeofday", "the clock is machine-wide" },
        { "clock_settime", "the clock is machine-wide" },
        { "clock_adjtime", "the clock is machine-wide" },
        { "adjtimex", "the clock is machine-wide" },
        { "iopl", "raw I/O port access" },
        { "ioperm", "raw I/O port access" },
        { "acct", "process accounting is machine-wide" },
        { "quotactl", "filesystem quotas are machine-wide" },
        { "quotactl_fd", "filesystem quotas are machine-wide" },
        { "io_uring_setup", "a large, often exploited attack surface that bypasses seccomp" },
        { "io_uring_enter", "a large, often exploited attack surface that bypasses seccomp" },
        { "io_uring_register", "a large, often exploited attack surface that bypasses seccomp" },
        { "ioctl", "only TIOCSTI and TIOCLINUX: typing into or controlling a terminal" },
        { "syslog", "reads the kernel log" },
        { "lookup_dcookie", "kernel profiling internals" },
        { "uselib", "obsolete, only useful to exploits" },
        { "vhangup", "hangs up the terminal" },
        { "fanotify_init", "watches filesystem events machine-wide" },
};

const struct nb_denied_syscall *nb_seccomp_deny_list(size_t *n) {
        *n = NB_ELEMENTSOF(deny_list);
        return deny_list;
}

static bool is_allowed(const struct nb_sandbox_config *cfg, const char *name) {
        for (size_t i = 0; i < cfg->n_allow_syscalls; i++)
                if (strcmp(cfg->allow_syscalls[i], name) == 0)
                        return true;
        return false;
}

static void seccomp_ctx_release(scmp_filter_ctx *ctx) {
        if (*ctx)
                seccomp_release(*ctx);
}

/* 32-bit entry points reach the same kernel through other syscall numbers: a filter
 * for the native ABI alone would leave them open. */
static int add_compat_arches(scmp_filter_ctx ctx) {
        static const uint32_t arches[] = {
#if defined(__x86_64__)
                SCMP_ARCH_X86, SCMP_ARCH_X32,
#elif defined(__aarch64__)
                SCMP_ARCH_ARM,
#endif
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(arches); i++) {
                int r = seccomp_arch_add(ctx, arches[i]);
                if (r < 0 && r != -EEXIST)
                        return r;
        }
        return 0;
}

static int deny_namespace_clones(scmp_filter_ctx ctx) {
        static const uint64_t ns_flags[] = {
                CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET,
                CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWCGROUP, CLONE_NEWTIME,
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(ns_flags); i++) {
                int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                         SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int deny_terminal_ioctls(scmp_filter_ctx ctx) {
        static const uint64_t requests[] = { TIOCSTI, TIOCLINUX };
        for (size_t i = 0; i < NB_ELEMENTSOF(requests); i++) {
                /* The request is an int: compare only the low 32 bits. */
                int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, requests[i]));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Compiles the filter to BPF in fd (a memfd the child shares). The parent does this
 * while the child builds its mounts, so compiling costs the sandbox no time. */
int nb_seccomp_export(const struct nb_sandbox_config *cfg, int fd, struct nb_error *err) {
        _cleanup_(seccomp_ctx_release) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return nb_error_set(err, ENOMEM, "seccomp_init");
        int r = add_compat_arches(ctx);
        if (r < 0)
                return nb_error_set(err, -r, "seccomp: adding compat architectures");
        for (size_t i = 0; i < NB_ELEMENTSOF(deny_list); i++) {
                const char *name = deny_list[i].name;
                if (is_allowed(cfg, name))
                        continue;
                if (strcmp(name, "clone") == 0)
                        r = deny_namespace_clones(ctx);
                else if (strcmp(name, "ioctl") == 0)
                        r = deny_terminal_ioctls(ctx);
                else {
                        int nr = seccomp_syscall_resolve_name(name);
                        if (nr == __NR_SCMP_ERROR)
                                continue; /* not a syscall on this architecture */
                        int action = strcmp(name, "clone3") == 0 ? SCMP_ACT_ERRNO(ENOSYS) : SCMP_ACT_ERRNO(EPERM);
                        r = seccomp_rule_add(ctx, action, nr, 0);
                }
                if (r < 0)
                        return nb_error_set(err, -r, "seccomp: rule for %s", name);
        }
        r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return nb_error_set(err, -r, "seccomp: exporting the filter");
        return 0;
}

int nb_seccomp_load(int fd, struct nb_error *err) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return nb_error_set(err, errno, "seccomp: the compiled filter");
        size_t len = (size_t) st.st_size;
        if (len == 0 || len % sizeof(struct sock_filter) != 0 || len / sizeof(struct sock_filter) > BPF_MAXINSNS)
                return nb_error_setx(err, EINVAL, "seccomp: the compiled filter has a bad size (%zu bytes)", len);
        _cleanup_free_ struct sock_filter *insns = malloc(len);
        if (!insns)
                return nb_error_set(err, ENOMEM, "seccomp");
        size_t done = 0;
        while (done < len) {
                ssize_t n = pread(fd, (char *) insns + done, len - done, (off_t) done);
                if (n <= 0)
                        return nb_error_set(err, n < 0 ? errno : EIO, "seccomp: reading the compiled filter");
                done += (size_t) n;
        }
        struct sock_fprog prog = { .len = (unsigned short) (len / sizeof(struct sock_filter)), .filter = insns };
        /* no_new_privs is already set (caps.c), so an unprivileged process may do this. */
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
                return nb_error_set(err, errno, "seccomp: loading the filter");
        return 0;
}
