/* SPDX-License-Identifier: MIT */
/* libnestbox-sandbox: run one command in a namespace-isolated sandbox.
 *
 * The library knows nothing of Python or of the CLI. A caller fills an nb_sandbox_config
 * (the nb_sandbox_* helpers below grow its arrays), calls nb_sandbox_run(), and gets an
 * nb_sandbox_result back. See the README, "What a test sees". */
#pragma once

#include <signal.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "nestbox/error.h"

enum nb_mount_kind {
        NB_MOUNT_RO_BIND, /* src (host) -> dst, read-only, nosuid, nodev */
        NB_MOUNT_BIND,    /* src (host) -> dst, read-write, nosuid, nodev */
        NB_MOUNT_TMPFS,   /* fresh tmpfs at dst, size-capped */
        NB_MOUNT_SYMLINK, /* symlink dst -> src (src is the link text) */
        NB_MOUNT_DIR,     /* empty directory dst on the (read-only) root */
        NB_MOUNT_OUT_TMPFS, /* a size-capped tmpfs at dst that outlives the sandbox: its
                             * root comes back as nb_sandbox_result.out_fd (at most one) */
};

struct nb_mount {
        enum nb_mount_kind kind;
        char *src;
        char *dst;
        uint64_t size; /* tmpfs only; 0 = default */
        /* Test only (`nestbox sandbox --test-wrong-mount`): no Landlock rule is made for
         * this mount, so it stands for a mistake in the mount table that Landlock must
         * still contain. */
        bool test_unlisted;
};

enum nb_network {
        NB_NET_LOOPBACK, /* new net namespace with lo up */
        NB_NET_NONE,     /* new net namespace, lo down */
};

enum nb_limit_backend {
        NB_LIMIT_NONE,
        NB_LIMIT_CGROUP2,
        NB_LIMIT_CGROUP1,
        NB_LIMIT_RLIMIT,
};

struct nb_sandbox_config {
        struct nb_mount *mounts;
        size_t n_mounts;
        char **argv;           /* NULL-terminated; argv[0] resolved inside via PATH */
        char **env;            /* NULL-terminated "K=V"; the only environment */
        size_t n_env;
        char **allow_syscalls; /* names removed from the deny list */
        size_t n_allow_syscalls;
        char *cwd;             /* inside; default "/" */
        char *hostname;        /* default "nestbox" */
        double timeout_sec;    /* 0 = none */
        double kill_grace_sec; /* SIGABRT -> SIGKILL; default 5 */
        uint64_t memory_bytes; /* 0 = unlimited */
        uint64_t pids_max;     /* 0 = unlimited */
        uint64_t tmp_size;     /* size of the default /tmp; default 256 MiB */
        enum nb_network network;
        uid_t uid;             /* inside; default 1000 */
        gid_t gid;
        int stdin_fd, stdout_fd, stderr_fd; /* -1: inherit ours */
        /* stdin_fd is a terminal the command takes as its controlling terminal (TIOCSCTTY
         * in its new session), so a shell on it has job control. Give it a pty of the
         * caller's own (nestbox repro --shell relays it), never the caller's terminal:
         * the sandbox then holds nothing of the host's tty, before or after. */
        bool controlling_tty;
        /* NULL: SIGINT and SIGTERM are forwarded to the command like any signal. Else a
         * run is cancellable: it does not start when *cancel is already set (-ECANCELED),
         * and the first SIGINT/SIGTERM during it gets the timeout treatment (SIGABRT, the
         * grace, SIGKILL) and is stored in *cancel; a second kills at once. The caller's
         * own handler sets *cancel for signals that arrive between runs. */
        volatile sig_atomic_t *cancel;
        /* Either non-zero: stdout and stderr are one pipe the supervisor drains while
         * the command runs (stdout_fd and stderr_fd are then ignored), so nothing it
         * prints reaches a host file; the first capture_head and the last
         * capture_tail bytes come back in nb_sandbox_result.output. */
        size_t capture_head, capture_tail;
        /* The denial report (denials.c) is on unless this is set, where the kernel has
         * seccomp user notification: denied calls are counted into
         * nb_sandbox_result.denied. Off, they answer EPERM from the filter itself. */
        bool no_denial_report;
        /* The warm interpreter's own sandbox (zygote.c): /proc is left unmasked and no
         * Landlock is applied, because the kernel lets a nested namespace mount a fresh
         * procfs only where one is fully visible, and refuses mounts to a Landlock
         * domain. Each target forked from it masks its own /proc and applies Landlock;
         * the zygote itself runs only nestbox's code and pytest's, never a test. */
        bool zygote;
        /* Called in the parent once the sandbox's pid 1 exists (host pid). */
        void (*on_started)(pid_t init_pid, void *userdata);
        void *userdata;
};

struct nb_sandbox_result {
        int exit_code;        /* when exited normally, else -1 */
        int signal;           /* the signal that ended the command, else 0 */
        bool timed_out;
        int cancelled;        /* the SIGINT/SIGTERM that cancelled the run (cfg->cancel), else 0 */
        int passed_on;        /* without cfg->cancel: the SIGINT/SIGTERM forwarded to the
                               * command, raised again in the caller once the run is over */
        bool oom_killed;
        bool pids_limited;    /* the pids limit refused at least one fork */
        bool exec_failed;     /* the command could not be executed (err says why) */
        bool warm;            /* run by nb_zygote_run, forked from a warm interpreter */
        int out_fd;           /* the NB_MOUNT_OUT_TMPFS root, O_DIRECTORY; the caller
                               * closes it; -1 when there is none */
        double wall_sec, user_sec, sys_sec;
        uint64_t peak_rss_bytes;
        /* With capture_head/capture_tail: output_head bytes of the head, then the tail
         * (output_len in all, NUL-terminated); output_total bytes were written, so
         * output_total > output_len means the middle was dropped. Freed by
         * nb_sandbox_result_done(). */
        char *output;
        size_t output_len, output_head;
        uint64_t output_total;
        enum nb_limit_backend memory_backend, pids_backend;
        /* The Landlock ABI the sandbox ran under; 0: none (no Landlock in the kernel). */
        int landlock_abi;
        /* Whether denied calls were counted (the report was on), and the counts, by
         * name; freed by nb_sandbox_result_done(). */
        bool denials_reported;
        struct nb_denial *denied;
        size_t n_denied;
};

/* A denied syscall the command made, and how often. name is the syscall's, with
 * "[i386]" or "[x32]" for a compat entry point. */
struct nb_denial {
        char *name;
        uint32_t arch;
        int nr;
        uint64_t count;
};
void nb_denial_list_free(struct nb_denial *v, size_t n);
/* The Landlock ABI of this kernel, 0 when it has none (or NESTBOX_TEST_NO_LANDLOCK,
 * a test-only switch that simulates such a kernel, is set). */
int nb_landlock_abi(void);

void nb_sandbox_config_init(struct nb_sandbox_config *cfg);
void nb_sandbox_config_done(struct nb_sandbox_config *cfg);
void nb_sandbox_result_done(struct nb_sandbox_result *res);
/* Appends a mount; they are made in the order added, after the default /tmp (left out
 * when one is added at /tmp). -EINVAL when dst is not absolute or has a ".." component. */
int nb_sandbox_add_mount(struct nb_sandbox_config *cfg, enum nb_mount_kind kind,
                         const char *src, const char *dst, uint64_t size);
int nb_sandbox_setenv(struct nb_sandbox_config *cfg, const char *key, const char *value);
int nb_sandbox_allow_syscall(struct nb_sandbox_config *cfg, const char *name, struct nb_error *err);
int nb_sandbox_set_argv(struct nb_sandbox_config *cfg, char *const *argv);

/* Runs the command. Returns 0 when the sandbox ran (whatever the command's outcome,
 * which is in *res), -errno with err filled when the sandbox could not be built. */
int nb_sandbox_run(const struct nb_sandbox_config *cfg, struct nb_sandbox_result *res,
                   struct nb_error *err);

const char *nb_limit_backend_name(enum nb_limit_backend b);

/* When this process, not root, is the only one in a delegated cgroup v2 subtree
 * (`systemd-run --user --scope -p Delegate=yes nestbox ...`), moves it into the
 * subtree's leaf and hands memory and pids to the subtree's children, so that its
 * sandboxes and those of the processes it forks from now on get a cgroup each there.
 * A program that forks workers calls it first; a lone sandbox run does it anyway.
 * 0 also when there is no such subtree. */
int nb_limits_enter_delegated(struct nb_error *err);

/* NESTBOX_CGROUP=systemd-scope (the invoker's opt-in; unset or "auto": nothing): when
 * this process, not root, is in no delegated cgroup v2 subtree, *ret is the command
 * that runs argv again in a new delegated scope of the invoker's systemd user manager
 * (systemd-run --user --scope -p Delegate=yes), to be exec'd; else *ret is NULL. -EINVAL
 * for another value, -ENOENT when no user manager can be asked, each with *why. */
int nb_limits_scope_command(char *const *argv, char ***ret, char **why);

/* The host uid/gid the sandbox's user will be: the caller's, or nobody/nogroup when
 * the caller is root. A directory the sandbox must write (a --bind) belongs to them. */
void nb_sandbox_host_ids(uid_t *uid, gid_t *gid);

/* Adds the host's /usr read-only, and /bin, /sbin, /lib, /lib32, /lib64 as the host
 * has them (symlinks into /usr on a merged-/usr system, read-only binds otherwise):
 * the closure of any interpreter installed from the distribution. */
int nb_sandbox_add_system_dirs(struct nb_sandbox_config *cfg);
/* True when path (already resolved, no symlinks) lies beneath one of those
 * directories, so that the sandbox sees it. */
bool nb_sandbox_is_system_path(const char *path);

/* The syscalls the seccomp filter denies, each with its one-line reason. */
struct nb_denied_syscall {
        const char *name;
        const char *reason;
};
const struct nb_denied_syscall *nb_seccomp_deny_list(size_t *n);
/* The default policy's filter as the kernel gets it (the BPF built with nestbox):
 * what an action digest hashes, so a change to the filter's arguments (socket
 * families, personality values) is a change to every action. false when none was
 * built in (a run then compiles its own from the same tables). */
bool nb_seccomp_default_filter(const void **bpf, size_t *len);
/* The address families socket() refuses, each with its reason (family -1: the rest). */
struct nb_denied_family {
        const char *name;
        int family;
        const char *reason;
};
const struct nb_denied_family *nb_seccomp_denied_families(size_t *n);

/* The warm interpreter (zygote.c; README "Warm interpreter"): a process started once in
 * a sandbox of its own (zcfg: its mounts, argv and env, with zcfg->zygote set) that forks
 * into a fresh nested sandbox per target. views name where the zygote sees host paths
 * ("host prefix", "inside"), so a target's read-only bind sources can be translated.
 * nb_zygote_start does not wait for the zygote: requests queue until it serves them. */
struct nb_zygote;
int nb_zygote_start(struct nb_sandbox_config *zcfg, const char *const *views, struct nb_zygote **ret,
                    struct nb_error *err);
void nb_zygote_stop(struct nb_zygote *z);
/* Runs cfg as nb_sandbox_run would, forked from the zygote. -EXDEV or -ENOTSUP
 * (with err set) when the zygote cannot give what cfg asks (a bind it does not see,
 * a read-write bind, a terminal): the caller runs it cold. Any
 * other error: the zygote failed; nothing of the test ran past its setup. */
int nb_zygote_run(struct nb_zygote *z, const struct nb_sandbox_config *cfg, struct nb_sandbox_result *res,
                  struct nb_error *err);
