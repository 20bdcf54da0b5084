/* SPDX-License-Identifier: MIT */
/* nestbox doctor: what this kernel offers and exactly what a run will get. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "nestbox/probe.h"
#include "nestbox/sandbox.h"

static const char usage[] =
        "usage: nestbox doctor [--syscalls]\n"
        "\n"
        "Prints what this kernel offers (user namespaces, seccomp and its user notification,\n"
        "cgroup v2 and its delegated controllers, the cgroup v1 hierarchies, overlayfs,\n"
        "pidfd, openat2, the new mount API) and which isolation and limits a run will get;\n"
        "with cgroup limits, whether joining a cgroup is slow here and the setting that\n"
        "fixes it. The limits lines say which backend memory and pids get and why: the\n"
        "delegated cgroup v2 subtree a run uses, or why this process's cgroup is none;\n"
        "with rlimits only (memory per process), the command that gets a sandbox-wide limit.\n"
        "NESTBOX_CGROUP=systemd-scope in the environment of any nestbox command runs it\n"
        "in such a scope (systemd-run --user --scope -p Delegate=yes) when it is in no\n"
        "delegated cgroup v2 subtree; unset or auto, nestbox never asks for one.\n"
        "Exits 3 when a feature nestbox cannot work without is missing, else 0.\n"
        "\n"
        "  --syscalls   also list the seccomp deny list and the refused socket address\n"
        "               families, with the reason for each entry\n"
        "  -h, --help   this text\n";

static const char *yes_no(bool b) {
        return b ? "yes" : "no";
}

/* Whether some cgroup hierarchy is mounted with favordynmods, or the kernel was booted
 * with it: the one setting under which writing a pid to cgroup.procs does not wait for
 * an RCU grace period once the last such write is a few tens of ms old (the kernel's
 * cgroup_threadgroup_rwsem leaves its fast mode). */
static bool cgroup_favors_dynmods(void) {
        bool yes = false;
        char *line = NULL;
        size_t cap = 0;
        FILE *f = fopen("/proc/self/mountinfo", "re");
        while (f && !yes && getline(&line, &cap, f) > 0)
                yes = strstr(line, " - cgroup") && strstr(line, "favordynmods");
        if (f)
                fclose(f);
        f = fopen("/proc/cmdline", "re");
        if (f && !yes && getline(&line, &cap, f) > 0)
                yes = strstr(line, "cgroup_favordynmods=1") || strstr(line, "cgroup_favordynmods=y") ||
                      strstr(line, "cgroup_favordynmods=true");
        if (f)
                fclose(f);
        free(line);
        return yes;
}

/* Which backend memory and pids get and why: the cgroup v2 subtree a run uses, or why
 * this process's cgroup is none; with rlimits only, the command that gets a real one. */
static void print_limits(void) {
        struct nb_limits_report lr;
        nb_limits_report(&lr);
        bool v2 = lr.memory_backend == NB_LIMIT_CGROUP2;
        printf("  memory limit           %s%s%s%s\n", nb_limit_backend_name(lr.memory_backend),
               v2 ? " (delegated subtree " : "", v2 ? lr.cgroup2_dir : "",
               v2 ? ")" : lr.memory_backend == NB_LIMIT_RLIMIT ? " (memory limited per process only: no delegated "
                                                                "cgroup; /tmp and /out pages not counted)" : "");
        printf("  pids limit             %s\n", nb_limit_backend_name(lr.pids_backend));
        if (lr.cgroup2_dir)
                printf("  cgroup v2 subtree      %s%s\n", lr.cgroup2_dir,
                       lr.cgroup2_moves ? ": a run moves nestbox into its nestbox-supervisor leaf, then makes a "
                                          "cgroup per sandbox beside it" : "");
        else
                printf("  cgroup v2 subtree      none: %s\n", lr.cgroup2_why);
        if (lr.memory_backend == NB_LIMIT_RLIMIT && geteuid() != 0) {
                /* The args are the user's: doctor cannot know them, "..." says so. */
                printf("  for a sandbox limit    run nestbox alone in a delegated scope of your systemd user manager:\n"
                       "                         systemd-run --user --scope -p Delegate=yes nestbox ...\n"
                       "                         or set NESTBOX_CGROUP=systemd-scope, which does that for you\n");
                if (getenv("NESTBOX_CGROUP_SCOPED"))
                        printf("                         (this is such a scope, and it is not delegated: see above)\n");
                else if (lr.scope_why)
                        printf("                         (not here: %s)\n", lr.scope_why);
        }
        nb_limits_report_done(&lr);
}

int cmd_doctor(int argc, char **argv) {
        bool syscalls = false;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
                        return nb_usage(stdout, usage, 0);
                if (strcmp(argv[i], "--syscalls") == 0)
                        syscalls = true;
                else
                        return nb_die(NB_EXIT_USAGE, "doctor: unknown argument %s; see 'nestbox doctor --help'", argv[i]);
        }
        struct nb_features f;
        nb_probe_features(&f);

        printf("kernel features\n");
        printf("  user namespaces        %s%s%s\n", yes_no(f.user_namespaces), f.user_namespaces ? "" : ": ", f.userns_why);
        printf("  seccomp filter         %s\n", yes_no(f.seccomp_filter));
        printf("  seccomp user notif     %s\n", yes_no(f.seccomp_user_notif));
        printf("  cgroup v2              %s%s%s\n", f.cgroup2_mounted ? "mounted at " : "no", f.cgroup2_path,
               "");
        if (f.cgroup2_mounted)
                printf("  cgroup v2 controllers  %s\n", *f.cgroup2_controllers ? f.cgroup2_controllers : "(none)");
        printf("  cgroup v1 memory       %s\n", f.cgroup1_memory_writable ? "writable" : "not usable");
        printf("  cgroup v1 pids         %s\n", f.cgroup1_pids_writable ? "writable" : "not usable");
        printf("  overlayfs              %s\n", yes_no(f.overlayfs));
        printf("  pidfd                  %s\n", yes_no(f.pidfd));
        printf("  openat2                %s\n", yes_no(f.openat2));
        printf("  new mount API          %s\n", yes_no(f.new_mount_api));
        int abi = nb_landlock_abi();
        if (abi > 0)
                printf("  landlock               ABI %d\n", abi);
        else
                printf("  landlock               no%s\n", getenv("NESTBOX_TEST_NO_LANDLOCK") ? " (NESTBOX_TEST_NO_LANDLOCK)" : "");

        size_t n;
        nb_seccomp_deny_list(&n);
        printf("a run gets\n");
        printf("  namespaces             user mount pid net uts ipc cgroup\n");
        printf("  uid/gid inside         1000/1000 (host %s)\n", geteuid() == 0 ? "nobody/nogroup" : "the caller");
        printf("  capabilities           none (bounding set cleared, no_new_privs)\n");
        printf("  seccomp                %zu denied syscalls (EPERM; clone3 ENOSYS), prebuilt filter\n", n);
        printf("  denial report          %s\n", f.seccomp_user_notif ? "on (seccomp user notification; the supervisor counts)"
                                                                    : "off (no seccomp user notification)");
        if (abi >= 6)
                printf("  landlock rules         reads beneath the sandbox's mounts, writes beneath /tmp /out and\n"
                       "                         binds; abstract unix sockets and signals scoped\n");
        else if (abi > 0)
                printf("  landlock rules         reads beneath the sandbox's mounts, writes beneath /tmp /out and binds\n");
        else
                printf("  landlock rules         none: namespaces and seccomp only\n");
        printf("  network                loopback only\n");
        print_limits();
        printf("  timeout                SIGABRT, then SIGKILL of the pid namespace\n");
        /* cgroup v1 is not slow: pid 1 joins it itself, a single-thread self-migration
         * the kernel does without that lock (limits_cgroup1.c). */
        bool cgroup = f.memory_backend == NB_LIMIT_CGROUP2 || f.pids_backend == NB_LIMIT_CGROUP2;
        if (cgroup && !cgroup_favors_dynmods())
                /* Measured (README "Performance"): 8-15 ms per target without, 0.02 ms with. */
                printf("  cgroup attach          slow: each target waits an RCU grace period (about 10 ms) to join\n"
                       "                         its cgroup; as root: mount -o remount,favordynmods %s\n"
                       "                         (or boot with cgroup_favordynmods=1)\n",
                       *f.cgroup2_path ? f.cgroup2_path : "/sys/fs/cgroup");
        if (syscalls) {
                const struct nb_denied_syscall *list = nb_seccomp_deny_list(&n);
                printf("seccomp deny list\n");
                for (size_t i = 0; i < n; i++)
                        printf("  %-20s %s\n", list[i].name, list[i].reason);
                const struct nb_denied_family *fam = nb_seccomp_denied_families(&n);
                printf("socket address families refused\n");
                for (size_t i = 0; i < n; i++)
                        printf("  %-20s %s\n", fam[i].name, fam[i].reason);
        }

        bool ok = f.user_namespaces && f.seccomp_filter && f.openat2 && f.new_mount_api && f.pidfd;
        if (!ok) {
                const char *what = !f.user_namespaces ? "user namespaces" : !f.seccomp_filter ? "seccomp" :
                                   !f.openat2 ? "openat2" : !f.new_mount_api ? "the new mount API" : "pidfd";
                return nb_die(NB_EXIT_INFRA, "doctor: %s missing: nestbox cannot sandbox on this kernel", what);
        }
        printf("ok\n");
        return 0;
}
