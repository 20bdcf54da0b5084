/* SPDX-License-Identifier: MIT */
/* PEP 508 environment markers (runner/python/marker.c, nb_marker_eval). */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "python/lockfile.h"
#include "marker-env.h"
#include "test.h"

static const struct nb_marker_env env38_windows = {
        .python_version = "3.8",
        .python_full_version = "3.8.10",
        .sys_platform = "win32",
        .platform_system = "Windows",
        .platform_machine = "AMD64",
        .os_name = "nt",
        .implementation_name = "cpython",
        .platform_python_implementation = "CPython",
};

static int marker(const char *m, struct nb_error *err) {
        bool v = false;
        int r = nb_marker_eval(m, &env311, &v, err);
        return r < 0 ? r : v;
}

/* 1 true, 0 false, -EINVAL refused. */
#define CHECK_MARKER(m, want)                                                   \
        do {                                                                    \
                _cleanup_error_ struct nb_error _e = NB_ERROR_INIT;             \
                int _r = marker(m, &_e);                                        \
                if (_r != (want)) {                                             \
                        fprintf(stderr, "%s:%d: marker %s = %d (%s), expected %d\n", \
                                __FILE__, __LINE__, m, _r, nb_error_message(&_e), want); \
                        nb_failures++;                                          \
                }                                                               \
        } while (0)

TEST(marker_eval) {
        CHECK_MARKER("python_version >= '3.8'", 1);
        CHECK_MARKER("python_version < '3.8'", 0);
        CHECK_MARKER("python_version == '3.11'", 1);
        CHECK_MARKER("python_version > '3.9'", 1);
        CHECK_MARKER("python_version <= \"3.10\"", 0);
        CHECK_MARKER("'3.12' > python_version", 1);
        CHECK_MARKER("python_full_version >= '3.11.1'", 1);
        CHECK_MARKER("python_full_version < '3.11.10'", 1);
        CHECK_MARKER("python_full_version == '3.11.*'", 1);
        CHECK_MARKER("python_full_version != '3.10.*'", 1);
        CHECK_MARKER("python_full_version > '3.11.2rc1'", 1);
        CHECK_MARKER("python_version ~= '3.8'", 1);
        CHECK_MARKER("python_full_version ~= '3.10.0'", 0);
        CHECK_MARKER("sys_platform == 'linux'", 1);
        CHECK_MARKER("sys_platform != 'linux'", 0);
        CHECK_MARKER("platform_system == 'Windows'", 0);
        CHECK_MARKER("os_name == 'posix' and implementation_name == 'cpython'", 1);
        CHECK_MARKER("os_name == 'nt' or platform_python_implementation == 'CPython'", 1);
        CHECK_MARKER("os_name == 'nt' or platform_python_implementation == 'PyPy'", 0);
        CHECK_MARKER("(os_name == 'nt' or os_name == 'posix') and (python_version < '3.8')", 0);
        CHECK_MARKER("os_name == 'nt' and python_version < '3.8' or sys_platform == 'linux'", 1);
        CHECK_MARKER("((((sys_platform == 'linux'))))", 1);
        CHECK_MARKER("platform_machine in 'x86_64 aarch64'", 1);
        CHECK_MARKER("platform_machine not in 'arm64 aarch64'", 1);
        CHECK_MARKER("'linux' in sys_platform", 1);
        CHECK_MARKER("sys.platform == 'linux'", 1);
        CHECK_MARKER("platform_machine === 'x86_64'", 1);
}

TEST(marker_refused) {
        CHECK_MARKER("", -EINVAL);
        CHECK_MARKER("extra == 'test'", -EINVAL);
        CHECK_MARKER("implementation_version >= '3'", -EINVAL);
        CHECK_MARKER("platform_release == '5.10'", -EINVAL);
        CHECK_MARKER("python_version >= 'three'", -EINVAL);
        CHECK_MARKER("python_version < '3.*'", -EINVAL);
        CHECK_MARKER("sys_platform > 'linux'", -EINVAL);
        CHECK_MARKER("sys_platform == 'linux", -EINVAL);
        CHECK_MARKER("sys_platform = 'linux'", -EINVAL);
        CHECK_MARKER("(sys_platform == 'linux'", -EINVAL);
        CHECK_MARKER("sys_platform == 'linux')", -EINVAL);
        CHECK_MARKER("sys_platform == 'linux' and", -EINVAL);
        CHECK_MARKER("sys_platform == 'linux' xor os_name == 'posix'", -EINVAL);
        CHECK_MARKER("sys_platform not 'linux'", -EINVAL);
        CHECK_MARKER("sys_platform == $x", -EINVAL);
        CHECK_MARKER("python_version ~= '3'", -EINVAL);
        /* Both sides are checked even when the first decides: a refused marker is
         * refused on every interpreter. */
        CHECK_MARKER("sys_platform == 'linux' or extra == 'x'", -EINVAL);
        char deep[200];
        memset(deep, '(', 100);
        strcpy(deep + 100, "os_name == 'posix'");
        CHECK_MARKER(deep, -EINVAL);
}

/* The same marker answers by the environment it is evaluated in. */
TEST(marker_env) {
        const char *m = "python_version < '3.9' and sys_platform == 'win32'";
        bool v = true;
        CHECK_EQ_INT(nb_marker_eval(m, &env311, &v, NULL), 0);
        CHECK(!v);
        CHECK_EQ_INT(nb_marker_eval(m, &env38_windows, &v, NULL), 0);
        CHECK(v);
        CHECK_EQ_INT(nb_marker_eval("platform_machine in 'x86_64 aarch64'", &env38_windows, &v, NULL), 0);
        CHECK(!v);
        CHECK_EQ_INT(nb_marker_eval("python_full_version >= '3.8.9' and python_full_version < '3.8.10'",
                                    &env38_windows, &v, NULL), 0);
        CHECK(!v);
}

/* "and" binds tighter than "or"; parentheses override; not in / in are substring tests. */
TEST(marker_precedence) {
        CHECK_MARKER("os_name == 'posix' or os_name == 'nt' and sys_platform == 'win32'", 1);
        CHECK_MARKER("(os_name == 'posix' or os_name == 'nt') and sys_platform == 'win32'", 0);
        CHECK_MARKER("sys_platform == 'win32' and os_name == 'nt' or python_version >= '3.11'", 1);
        CHECK_MARKER("sys_platform == 'win32' and (os_name == 'nt' or python_version >= '3.11')", 0);
        CHECK_MARKER("'x86' not in platform_machine", 0);
        CHECK_MARKER("'arm' not in platform_machine", 1);
        CHECK_MARKER("'_64' in platform_machine and 'lin' in sys_platform", 1);
        CHECK_MARKER("  python_version\t>=\t'3.10'  ", 1);
        /* Versions compare as versions, not strings: "3.9" < "3.11". */
        CHECK_MARKER("python_version > '3.9'", 1);
        CHECK_MARKER("python_version < '3.9'", 0);
        CHECK_MARKER("python_full_version >= '3.11'", 1);
        CHECK_MARKER("python_full_version != '3.11'", 1);
        CHECK_MARKER("python_full_version == '3.11.2.0'", 1);
}

/* A refused marker says why, is the user's to fix (NB_ERROR_INPUT), and sets nothing. */
TEST(marker_error_message) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        bool v = true;
        CHECK_EQ_INT(nb_marker_eval("extra == 'test'", &env311, &v, &err), -EINVAL);
        CHECK(v);
        CHECK_EQ_STR(nb_error_message(&err), "marker 'extra == 'test'': variable 'extra' is not supported");
        CHECK_EQ_INT(err.klass, NB_ERROR_INPUT);
        nb_error_clear(&err);
        CHECK_EQ_INT(nb_marker_eval("os_name < 'z'", &env311, &v, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "cannot order") != NULL);
}
