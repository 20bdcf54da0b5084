/* SPDX-License-Identifier: MIT */
/* The marker environment of a CPython 3.11.2 on x86_64 Linux, described by hand so the
 * marker and lockfile tests answer the same on any host. */
#pragma once

#include "python/lockfile.h"

static const struct nb_marker_env env311 = {
        .python_version = "3.11",
        .python_full_version = "3.11.2",
        .sys_platform = "linux",
        .platform_system = "Linux",
        .platform_machine = "x86_64",
        .os_name = "posix",
        .implementation_name = "cpython",
        .platform_python_implementation = "CPython",
};
