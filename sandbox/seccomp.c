/* SPDX-License-Identifier: MIT */
/* The seccomp deny list. Default allow: a test suite may legitimately use almost any
 * syscall; what is denied here either changes the sandbox itself, reaches the kernel's
 * riskiest attack surface, or touches machine-wide state. Denied calls answer EPERM so
 * code degrades gracefully instead of being killed; clone3 answers ENOSYS so libc
 * falls back to clone, whose flags (unlike clone3's struct) a filter can inspect.
 *
 * With the denial report on, a denied call is a user notification instead of a plain
 * EPERM: the supervisor (denials.c) counts it by syscall and answers EPERM itself, so
 * the test sees the same errno and the count comes from the kernel, not from the test.
 *
 * The filter depends only on this file, the allow-list and the report mode; the
 * default policy (no allow-list) is compiled once, at build time, by seccomp_gen.c into
 * seccomp_prebuilt.c, and only an allow-list makes a run compile its own. libseccomp's
 * binary tree (SCMP_FLTATR_CTL_OPTIMIZE 2) keeps the kernel's per-syscall walk short. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
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
        { "personality", "only 0, PER_LINUX32, UNAME26 and the 0xffffffff query (Docker's values): "
                         "ADDR_NO_RANDOMIZE and READ_IMPLIES_EXEC would weaken what the test execs" },
        { "socket", "only AF_UNIX, AF_INET, AF_INET6 and NETLINK_ROUTE: the address families below" },
        { "socketcall", "i386 only, socket(): the multiplexer hides the address family from the filter" },
};

/* Address families socket() refuses. Every family but AF_UNIX, AF_INET, AF_INET6 and
 * AF_NETLINK is refused (a test talks to itself over those); these are the ones with
 * a reason beyond "no test needs it". */
static const struct nb_denied_family denied_families[] = {
        { "AF_VSOCK", AF_VSOCK, "reaches the hypervisor and other VMs, outside any net namespace" },
        { "AF_PACKET", AF_PACKET, "raw frames; a recurring source of kernel exploits" },
        { "AF_KEY", AF_KEY, "IPsec key management: kernel attack surface no test needs" },
        { "AF_ALG", AF_ALG, "the kernel's crypto API: a recurring source of kernel exploits" },
        { "AF_BLUETOOTH", AF_BLUETOOTH, "host radios; the protocol stacks are large and exploited" },
        { "AF_TIPC", AF_TIPC, "cluster IPC, autoloaded module, exploited (CVE-2021-43267)" },
        { "AF_RDS", AF_RDS, "autoloaded module with a history of exploits" },
        { "AF_CAN", AF_CAN, "vehicle buses; autoloaded modules with exploits" },
        { "AF_XDP", AF_XDP, "raw access to network device queues" },
        { "AF_NETLINK", AF_NETLINK, "only NETLINK_ROUTE (getifaddrs): audit, uevent, netfilter and "
                                    "the rest configure or watch the machine" },
        { "others", -1, "every other family (X25, AX25, APPLETALK, DECnet, IPX, ATM, CAIF, NFC, "
                        "SMC, MCTP, ...): no test needs them; each is kernel attack surface" },
};

/* The personalities a test may set (Docker's default profile): Linux, PER_LINUX32,
 * UNAME26 and both together, and the query that changes nothing. */
static const uint32_t allowed_personalities[] = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffff };

const struct nb_denied_family *nb_seccomp_denied_families(size_t *n) {
        *n = NB_ELEMENTSOF(denied_families);
        return denied_families;
}

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
static const uint32_t compat_arches[] = {
#if defined(__x86_64__)
        SCMP_ARCH_X86, SCMP_ARCH_X32,
#elif defined(__aarch64__)
        SCMP_ARCH_ARM,
#endif
};

static int add_compat_arches(scmp_filter_ctx ctx) {
        for (size_t i = 0; i < NB_ELEMENTSOF(compat_arches); i++) {
                int r = seccomp_arch_add(ctx, compat_arches[i]);
                if (r < 0 && r != -EEXIST)
                        return r;
        }
        return 0;
}

static int deny_namespace_clones(scmp_filter_ctx ctx, uint32_t deny) {
        static const uint64_t ns_flags[] = {
                CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET,
                CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWCGROUP, CLONE_NEWTIME,
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(ns_flags); i++) {
                int r = seccomp_rule_add(ctx, deny, SCMP_SYS(clone), 1,
                                         SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int deny_terminal_ioctls(scmp_filter_ctx ctx, uint32_t deny) {
        static const uint64_t requests[] = { TIOCSTI, TIOCLINUX };
        for (size_t i = 0; i < NB_ELEMENTSOF(requests); i++) {
                /* The request is an int: compare only the low 32 bits. */
                int r = seccomp_rule_add(ctx, deny, SCMP_SYS(ioctl), 1,
                                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, requests[i]));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* socket(): AF_UNIX (1), AF_INET (2), AF_INET6 (10) and AF_NETLINK (16) with
 * NETLINK_ROUTE (0) only. The family is an int, so the kernel ignores the high 32
 * bits: the small families are matched on the low 32 bits alone, and anything above
 * 16 (high bits set included) is refused. On i386, libseccomp refuses the socketcall
 * multiplexer's SYS_SOCKET outright, since its arguments are out of the filter's reach. */
static int deny_socket_families(scmp_filter_ctx ctx, uint32_t deny) {
        int r = seccomp_rule_add(ctx, deny, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_GT, AF_NETLINK));
        for (uint64_t fam = 0; r >= 0 && fam < AF_NETLINK; fam++)
                if (fam != AF_UNIX && fam != AF_INET && fam != AF_INET6)
                        r = seccomp_rule_add(ctx, deny, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, fam));
        if (r >= 0)
                r = seccomp_rule_add(ctx, deny, SCMP_SYS(socket), 2, SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, AF_NETLINK),
                                     SCMP_A2(SCMP_CMP_NE, 0));
        return r;
}

/* The warm interpreter's own filter (cfg->zygote) denies with TRACE, not EPERM: a
 * target's filter is stacked on it, the kernel answers a call with the strongest of
 * their actions, and ERRNO outranks USER_NOTIF, so an EPERM of the zygote's would hide
 * every denial from the target's report (a chain holds one listener only, so the
 * zygote cannot have one of its own). TRACE ranks below USER_NOTIF and, with no tracer
 * attached, fails the call with ENOSYS without running it: the zygote stays as walled,
 * and nothing can attach one (ptrace itself is denied in every filter of the chain). */
static uint32_t deny_action(const struct nb_sandbox_config *cfg, bool notify, const char *name) {
        if (strcmp(name, "clone3") == 0)
                return SCMP_ACT_ERRNO(ENOSYS); /* libc's cue to fall back: not a denial */
        if (cfg->zygote)
                return SCMP_ACT_TRACE(EPERM);
        return notify ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(EPERM);
}

/* The personality prefix below is raw BPF, written with the kernel's return values;
 * libseccomp's actions are those same values, so one choice serves both. */
_Static_assert(SCMP_ACT_ERRNO(EPERM) == (SECCOMP_RET_ERRNO | EPERM) && SCMP_ACT_NOTIFY == SECCOMP_RET_USER_NOTIF &&
                       SCMP_ACT_TRACE(EPERM) == (SECCOMP_RET_TRACE | EPERM),
               "libseccomp's actions are the kernel's return values");

/* personality(): libseccomp compares 64-bit arguments and takes one condition per
 * argument in a rule, so "none of five values of the low 32 bits" is not a rule it can
 * express. These few instructions go before its program instead (BPF jumps only
 * forward, so a prefix leaves its offsets intact): for each architecture's number of
 * personality, the low 32 bits of the argument, as the kernel reads it, must be one of
 * the allowed values; every other syscall falls through to libseccomp's program. */
static int personality_prefix(uint32_t deny, struct sock_filter *out, size_t cap, size_t *ret_n) {
        uint32_t arches[1 + NB_ELEMENTSOF(compat_arches)];
        arches[0] = seccomp_arch_native();
        memcpy(arches + 1, compat_arches, sizeof(compat_arches));
        size_t n_allowed = NB_ELEMENTSOF(allowed_personalities);
        size_t n = 0, n_arches = NB_ELEMENTSOF(arches);
        size_t need = 4 * n_arches + 1 + 1 + n_allowed + 1;
        if (need > cap)
                return -ENOBUFS;
        /* Per architecture: 4 instructions; then "ja end"; then the check block. */
        size_t check = 4 * n_arches + 1;
        for (size_t i = 0; i < n_arches; i++) {
                int nr = seccomp_syscall_resolve_name_arch(arches[i], "personality");
                if (nr < 0)
                        return -EINVAL;
                /* libseccomp's tokens are the kernel's AUDIT_ARCH values, but for x32:
                 * its calls arrive as x86-64 ones with __X32_SYSCALL_BIT in the number. */
#if defined(__x86_64__)
                uint32_t audit_arch = arches[i] == SCMP_ARCH_X32 ? AUDIT_ARCH_X86_64 : arches[i];
#else
                uint32_t audit_arch = arches[i];
#endif
                out[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
                out[n++] = (struct sock_filter) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, audit_arch, 0, 2);
                out[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
                out[n] = (struct sock_filter) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t) nr, (uint8_t) (check - n - 1), 0);
                n++;
        }
        size_t end = need;
        out[n] = (struct sock_filter) BPF_STMT(BPF_JMP | BPF_JA | BPF_K, (uint32_t) (end - n - 1));
        n++;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        out[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
#else
        out[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4);
#endif
        for (size_t i = 0; i < n_allowed; i++) {
                out[n] = (struct sock_filter) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, allowed_personalities[i],
                                                       (uint8_t) (end - n - 1), 0);
                n++;
        }
        out[n++] = (struct sock_filter) BPF_STMT(BPF_RET | BPF_K, deny);
        *ret_n = n;
        return 0;
}

/* Writes the BPF program for cfg's allow-list into fd: the personality prefix, then
 * libseccomp's program for the rest of the list. */
int nb_seccomp_compile(const struct nb_sandbox_config *cfg, bool notify, int fd, struct nb_error *err) {
        _cleanup_(seccomp_ctx_release) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return nb_error_set(err, ENOMEM, "seccomp_init");
        int r = add_compat_arches(ctx);
        if (r < 0)
                return nb_error_set(err, -r, "seccomp: adding compat architectures");
        /* The kernel walks the filter per syscall number while it builds its cache:
         * a binary tree instead of a list (libseccomp >= 2.5). */
        if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
                return nb_error_set(err, -r, "seccomp: binary tree optimisation");
        for (size_t i = 0; i < NB_ELEMENTSOF(deny_list); i++) {
                const char *name = deny_list[i].name;
                if (is_allowed(cfg, name) || strcmp(name, "personality") == 0)
                        continue;
                uint32_t deny = deny_action(cfg, notify, name);
                if (strcmp(name, "clone") == 0)
                        r = deny_namespace_clones(ctx, deny);
                else if (strcmp(name, "ioctl") == 0)
                        r = deny_terminal_ioctls(ctx, deny);
                else if (strcmp(name, "socket") == 0)
                        r = deny_socket_families(ctx, deny);
                else {
                        int nr = seccomp_syscall_resolve_name(name);
                        if (nr == __NR_SCMP_ERROR)
                                continue; /* not a syscall on this architecture */
                        r = seccomp_rule_add(ctx, deny, nr, 0);
                }
                if (r < 0)
                        return nb_error_set(err, -r, "seccomp: rule for %s", name);
        }
        struct sock_filter prefix[64];
        size_t n_prefix = 0;
        uint32_t deny_personality = deny_action(cfg, notify, "personality");
        if (!is_allowed(cfg, "personality") &&
            (r = personality_prefix(deny_personality, prefix, NB_ELEMENTSOF(prefix), &n_prefix)) < 0)
                return nb_error_set(err, -r, "seccomp: the personality rule");
        if ((r = nb_write_all(fd, prefix, n_prefix * sizeof(prefix[0]))) < 0)
                return nb_error_set(err, -r, "seccomp: writing the filter");
        r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return nb_error_set(err, -r, "seccomp: exporting the filter");
        return 0;
}

/* The parent writes the filter into fd (a memfd the child shares) while the child
 * builds its mounts: the prebuilt one for the default policy, else a fresh compile. */
int nb_seccomp_export(const struct nb_sandbox_config *cfg, bool notify, int fd, struct nb_error *err) {
        const void *bpf;
        size_t len;
        if (cfg->n_allow_syscalls == 0 && !cfg->zygote && nb_seccomp_prebuilt(notify, &bpf, &len)) {
                int r = nb_write_all(fd, bpf, len);
                return r < 0 ? nb_error_set(err, -r, "seccomp: writing the filter") : 0;
        }
        return nb_seccomp_compile(cfg, notify, fd, err);
}

bool nb_seccomp_default_filter(const void **bpf, size_t *len) {
        return nb_seccomp_prebuilt(true, bpf, len);
}

bool nb_seccomp_notify_available(void) {
        struct seccomp_notif_sizes sizes;
        return syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0;
}

int nb_seccomp_load(int fd, bool notify, int *ret_listener, struct nb_error *err) {
        struct stat st;
        *ret_listener = -1;
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
        /* no_new_privs is already set (caps.c), so an unprivileged process may do this.
         * With notify the kernel hands us the listener, which goes to the supervisor. */
        long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, notify ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0, &prog);
        if (r < 0)
                return nb_error_set(err, errno, "seccomp: loading the filter");
        if (notify)
                *ret_listener = (int) r;
        return 0;
}
