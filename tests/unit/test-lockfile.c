/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "python/interp.h"
#include "python/lockfile.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "test.h"

#define H1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define H2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

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

static int parse(const char *text, struct nb_lockfile *l, struct nb_error *err) {
        return nb_lockfile_parse("default.lock", text, strlen(text), &env311, l, err);
}

/* Parses text expecting -EINVAL and a message containing want. */
static void check_bad(const char *text, const char *want, int line) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        int r = parse(text, &l, &err);
        if (r != -EINVAL || !strstr(nb_error_message(&err), want)) {
                fprintf(stderr, "test-lockfile.c:%d: r=%d message \"%s\", wanted -EINVAL and \"%s\"\n", line, r,
                        nb_error_message(&err), want);
                nb_failures++;
        }
        nb_lockfile_done(&l);
}
#define CHECK_BAD(text, want) check_bad(text, want, __LINE__)

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

TEST(pep503) {
        _cleanup_free_ char *a = nb_pep503_normalize("Typing_Extensions");
        _cleanup_free_ char *b = nb_pep503_normalize("zope.interface");
        _cleanup_free_ char *c = nb_pep503_normalize("A-_.-b");
        CHECK_EQ_STR(a, "typing-extensions");
        CHECK_EQ_STR(b, "zope-interface");
        CHECK_EQ_STR(c, "a-b");
}

TEST(basic) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        const char *text =
                "# generated\n"
                "\n"
                "pytest==7.2.1 \\\n"
                "    --hash=sha256:" H1 " \\\n"
                "    --hash=sha256:" H2 "\n"
                "Typing_Extensions==4.5.0 --hash sha256:" H1 "   # trailing comment\n"
                "attrs[tests]==22.2.0 --hash=sha256:" H2 "\r\n";
        CHECK_EQ_INT(parse(text, &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 3);
        CHECK_EQ_INT(l.n_skipped, 0);
        if (l.n_reqs == 3) {
                /* Sorted by name. */
                CHECK_EQ_STR(l.reqs[0].name, "attrs");
                CHECK_EQ_STR(l.reqs[0].version, "22.2.0");
                CHECK_EQ_INT(l.reqs[0].line, 7);
                CHECK_EQ_STR(l.reqs[1].name, "pytest");
                CHECK_EQ_INT(l.reqs[1].line, 3);
                CHECK_EQ_STR(l.reqs[1].hashes[0], H1);
                CHECK_EQ_STR(l.reqs[1].hashes[1], H2);
                CHECK(l.reqs[1].hashes[2] == NULL);
                CHECK_EQ_STR(l.reqs[2].name, "typing-extensions");
                CHECK_EQ_STR(l.reqs[2].version, "4.5.0");
        }
        nb_lockfile_done(&l);
}

TEST(empty_and_options) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        CHECK_EQ_INT(parse("", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 0);
        nb_lockfile_done(&l);
        CHECK_EQ_INT(parse("--require-hashes\n--index-url https://x/simple\n# c\n", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 0);
        nb_lockfile_done(&l);
        /* No trailing newline, uppercase hex is lowercased. */
        CHECK_EQ_INT(parse("a==1 --hash=sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 1);
        if (l.n_reqs == 1)
                CHECK_EQ_STR(l.reqs[0].hashes[0], H1);
        nb_lockfile_done(&l);
        /* sha512 next to sha256 is tolerated, the sha256 is what counts. */
        CHECK_EQ_INT(parse("a==1 --hash=sha512:abcd --hash=sha256:" H2 "\n", &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 1);
        nb_lockfile_done(&l);
}

TEST(markers_in_lockfile) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        const char *text =
                "tomli==2.0.1 ; python_version < \"3.11\" --hash=sha256:" H1 "\n"
                "exceptiongroup==1.1.0 ; python_version < '3.11' \\\n"
                "    --hash=sha256:" H1 "\n"
                "pywin32==305 ; sys_platform == 'win32' --hash=sha256:" H1 "\n"
                "uvloop==0.17.0 ; sys_platform != \"win32\" and platform_machine == 'x86_64' --hash=sha256:" H2 "\n";
        CHECK_EQ_INT(parse(text, &l, &err), 0);
        CHECK_EQ_INT(l.n_reqs, 1);
        CHECK_EQ_INT(l.n_skipped, 3);
        if (l.n_reqs == 1)
                CHECK_EQ_STR(l.reqs[0].name, "uvloop");
        nb_lockfile_done(&l);
}

TEST(bad_input) {
        CHECK_BAD("pytest --hash=sha256:" H1 "\n", "default.lock:1: pytest is not pinned");
        CHECK_BAD("# x\npytest>=7 --hash=sha256:" H1 "\n", "default.lock:2: pytest is not pinned");
        CHECK_BAD("pytest==7.*  --hash=sha256:" H1 "\n", "is a wildcard");
        CHECK_BAD("pytest===7.2 --hash=sha256:" H1 "\n", "not pinned");
        CHECK_BAD("pytest==7.2,<8 --hash=sha256:" H1 "\n", "only one specifier");
        CHECK_BAD("pytest==7.2.1\n", "default.lock:1: pytest==7.2.1 has no --hash=sha256");
        CHECK_BAD("\n\npytest==7.2.1 --hash=sha512:abcd\n", "default.lock:3: pytest==7.2.1 has no --hash=sha256");
        CHECK_BAD("pytest==7.2.1 --hash=md5:abcd\n", "unsupported algorithm");
        CHECK_BAD("pytest==7.2.1 --hash=sha256:abcd\n", "64 hex characters");
        CHECK_BAD("pytest==7.2.1 --hash=sha256:" H1 "0\n", "64 hex characters");
        CHECK_BAD("pytest==7.2.1 --hash\n", "--hash needs a value");
        CHECK_BAD("pytest==7.2.1 --hash=" H1 "\n", "expected ALGORITHM:HEX");
        CHECK_BAD("pytest==7.2.1 --install-option=x --hash=sha256:" H1 "\n", "option '--install-option=x' is not supported");
        CHECK_BAD("-r other.txt\n", "default.lock:1: option '-r' is not supported");
        CHECK_BAD("-e ./src\n", "option '-e'");
        CHECK_BAD("pytest @ https://x/p.whl --hash=sha256:" H1 "\n", "URL requirements are not supported");
        CHECK_BAD("./local.whl --hash=sha256:" H1 "\n", "expected a package name");
        CHECK_BAD("pytest== --hash=sha256:" H1 "\n", "missing version");
        CHECK_BAD("pytest==7.2.1 extra --hash=sha256:" H1 "\n", "unexpected 'extra'");
        CHECK_BAD("pytest[cov==7.2.1 --hash=sha256:" H1 "\n", "unterminated extras");
        CHECK_BAD("a==1 --hash=sha256:" H1 "\nb==1 --hash=sha256:" H1 "\nA==2 --hash=sha256:" H2 "\n",
                  "default.lock:3: a is pinned twice (also on line 1)");
        CHECK_BAD("a==1 ; --hash=sha256:" H1 "\n", "empty marker");
        CHECK_BAD("a==1 ; extra == 'x' --hash=sha256:" H1 "\n",
                  "default.lock:1: a==1: marker 'extra == 'x'': variable 'extra' is not supported");
        CHECK_BAD("a==1 ; platform_release >= '5' --hash=sha256:" H1 "\n", "variable 'platform_release' is not supported");
        CHECK_BAD("a==1 ; os_name < 'z' --hash=sha256:" H1 "\n", "cannot order");
        CHECK_BAD("a==1 ; python_version < '3.11' or --hash=sha256:" H1 "\n", "expected a variable");
}

TEST(nul_byte) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        CHECK_EQ_INT(nb_lockfile_parse("x.lock", "a==1\0b", 6, &env311, &l, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "NUL") != NULL);
}

TEST(comments_like_pip) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_lockfile l = {};
        /* A '#' inside a word is not a comment; a comment line ends a continuation. */
        const char *text =
                "a==1 \\\n"
                "# comment \\\n"
                "--hash=sha256:" H1 "\n";
        CHECK_EQ_INT(parse(text, &l, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "default.lock:1: a==1 has no --hash") != NULL);
        nb_lockfile_done(&l);
        nb_error_clear(&err);
        CHECK_EQ_INT(parse("a==1+local#x --hash=sha256:" H1 "\n", &l, &err), -EINVAL);
        nb_lockfile_done(&l);
}

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

/* Wheel tags: the interpreter is described by hand so the test is the same on any
 * host. */
TEST(wheel_tags) {
        struct nb_python py = {
                .major = 3, .minor = 11, .implementation = (char *) "cpython", .abiflags = (char *) "",
                .interp_tag = (char *) "cp311", .abi_tag = (char *) "cp311", .plat_tag = (char *) "linux_x86_64",
                .glibc_major = 2, .glibc_minor = 36,
        };
        int any = nb_python_tag_score(&py, "py3", "none", "any");
        int many = nb_python_tag_score(&py, "cp311", "cp311", "manylinux_2_17_x86_64.manylinux2014_x86_64");
        int abi3 = nb_python_tag_score(&py, "cp37", "abi3", "manylinux2010_x86_64");
        int plat_none = nb_python_tag_score(&py, "py3", "none", "manylinux1_x86_64");
        CHECK(any > 0);
        CHECK(nb_python_tag_score(&py, "py2.py3", "none", "any") > 0);
        CHECK(nb_python_tag_score(&py, "py38", "none", "any") > 0);
        CHECK(nb_python_tag_score(&py, "cp311", "none", "any") > 0);
        CHECK(nb_python_tag_score(&py, "cp311", "cp311", "linux_x86_64") > 0);
        CHECK(many > abi3 && abi3 > plat_none && plat_none > any);
        CHECK_EQ_INT(nb_python_tag_score(&py, "py2", "none", "any"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "py312", "none", "any"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp310", "none", "any"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp311", "cp311", "manylinux_2_38_x86_64"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp311", "cp311", "manylinux_2_17_aarch64"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp310", "cp310", "manylinux1_x86_64"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp312", "abi3", "linux_x86_64"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp311", "cp311", "win_amd64"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp311", "cp311", "macosx_11_0_arm64"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp311", "cp311d", "linux_x86_64"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "pp39", "pypy39_pp73", "any"), 0);
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp311", "cp311", "musllinux_1_1_x86_64"), 0);
        /* A newer glibc manylinux tag is preferred over an older one. */
        CHECK(nb_python_tag_score(&py, "cp311", "cp311", "manylinux_2_28_x86_64") > many);
        py.abiflags = (char *) "t";
        CHECK_EQ_INT(nb_python_tag_score(&py, "cp37", "abi3", "linux_x86_64"), 0);
}
