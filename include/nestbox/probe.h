/* SPDX-License-Identifier: MIT */
/* What this kernel offers, for `nestbox doctor` and for choosing limit backends. */
#pragma once

#include <stdbool.h>

#include "nestbox/sandbox.h"

struct nb_features {
        bool user_namespaces;       /* an unprivileged-style user namespace can be made */
        char userns_why[256];       /* when not: the reason, naming the sysctl */
        bool seccomp_filter;
        bool seccomp_user_notif;
        bool cgroup2_mounted;
        char cgroup2_path[256];     /* mount point, "" if none */
        char cgroup2_controllers[256];
        bool cgroup1_memory_writable, cgroup1_pids_writable;
        bool overlayfs;
        bool pidfd;
        bool openat2;
        bool new_mount_api;
        enum nb_limit_backend memory_backend, pids_backend;
};

void nb_probe_features(struct nb_features *f);

/* Why memory and pids limits get the backends they get (nestbox doctor). */
struct nb_limits_report {
        enum nb_limit_backend memory_backend, pids_backend;
        char *cgroup2_dir;  /* the cgroup v2 subtree a run makes its cgroups in; NULL: none */
        bool cgroup2_moves; /* a run first moves nestbox into the subtree's nestbox-supervisor leaf */
        char *cgroup2_why;  /* without a subtree: why this process's cgroup v2 is none */
        char *scope_why;    /* why `systemd-run --user --scope` cannot be used here; NULL: it can */
};
void nb_limits_report(struct nb_limits_report *r);
void nb_limits_report_done(struct nb_limits_report *r);
