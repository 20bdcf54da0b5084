/* SPDX-License-Identifier: MIT */
/* The interpreter probe (runner/python/interp.c): what /usr/bin/python3 says it is,
 * what is refused, that the answer is remembered, and the wheel tags it accepts. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/cache_dir.h"
#include "cache/cas.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "python/interp.h"
#include "test.h"

#define PYTHON "/usr/bin/python3"

/* What python itself prints for code, without its newline. */
static char *ask(const char *python, const char *code) {
        _cleanup_free_ char *real = realpath(python, NULL);
        char *argv[] = { real, (char *) "-I", (char *) "-c", (char *) code, NULL };
        char *out = NULL;
        int status = -1;
        if (nb_python_run(argv, NULL, &out, &status, NULL, NULL) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                free(out);
                return NULL;
        }
        out[strcspn(out, "\n")] = 0;
        return out;
}

TEST(probe_python3) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_python py = {};
        CHECK_EQ_INT(nb_python_probe(NULL, PYTHON, &py, &err), 0);
        _cleanup_free_ char *real = realpath(PYTHON, NULL);
        _cleanup_free_ char *version = ask(PYTHON, "import platform; print(platform.python_version())");
        _cleanup_free_ char *tag = ask(PYTHON, "import sys; print('cp%d%d' % sys.version_info[:2])");
        _cleanup_free_ char *plat = ask(PYTHON, "import sysconfig; print(sysconfig.get_platform().replace('-', '_').replace('.', '_'))");
        _cleanup_free_ char *machine = ask(PYTHON, "import platform; print(platform.machine())");
        CHECK_EQ_STR(py.path, real);
        CHECK_EQ_STR(py.version, version);
        CHECK_EQ_INT(py.major, 3);
        char short_version[16];
        snprintf(short_version, sizeof(short_version), "3.%u", py.minor);
        CHECK_EQ_STR(py.version_short, short_version);
        CHECK(py.version && strncmp(py.version, short_version, strlen(short_version)) == 0);
        CHECK_EQ_STR(py.implementation, "cpython");
        CHECK_EQ_STR(py.interp_tag, tag);
        CHECK_EQ_STR(py.abi_tag, tag); /* a default (not debug, not free-threaded) build */
        CHECK_EQ_STR(py.plat_tag, plat);
        CHECK_EQ_STR(py.sys_platform, "linux");
        CHECK_EQ_STR(py.platform_machine, machine);
        CHECK(py.glibc_major == 2 && py.glibc_minor > 0);
        struct stat st;
        CHECK(stat(real, &st) == 0 && py.size == (uint64_t) st.st_size);
        /* The marker environment points at the same answers. */
        CHECK_EQ_STR(py.env.python_version, short_version);
        CHECK_EQ_STR(py.env.python_full_version, version);
        CHECK_EQ_STR(py.env.os_name, "posix");
        /* It accepts its own most specific tag and a pure wheel. */
        CHECK(nb_python_tag_score(&py, tag, tag, plat) > nb_python_tag_score(&py, "py3", "none", "any"));
        CHECK(nb_python_tag_score(&py, "py3", "none", "any") > 0);
        nb_python_done(&py);
}

TEST(probe_refuses) {
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_python py = {};
        /* Runs, exits 0, says nothing. */
        CHECK_EQ_INT(nb_python_probe(NULL, "/bin/true", &py, &err), -EINVAL);
        CHECK_EQ_STR(nb_error_message(&err), "python /bin/true: not a Python 3 interpreter nestbox understands");
        CHECK(py.path == NULL);
        nb_error_clear(&err);
        /* Runs and fails: the first line of what it said is in the message. */
        CHECK_EQ_INT(nb_python_probe(NULL, "/bin/false", &py, &err), -EINVAL);
        CHECK(strstr(nb_error_message(&err), "python /bin/false: the interpreter probe failed") != NULL);
        nb_error_clear(&err);
        CHECK_EQ_INT(nb_python_probe(NULL, "/nonexistent/python3", &py, &err), -ENOENT);
        CHECK(strstr(nb_error_message(&err), "python /nonexistent/python3") != NULL);
        nb_error_clear(&err);
        /* Not executable. */
        CHECK_EQ_INT(nb_python_probe(NULL, "/etc/passwd", &py, &err), -EINVAL);
        CHECK_EQ_STR(nb_error_message(&err), "python /etc/passwd: not an executable file");
}

static int count_entries(const char *dir) {
        _cleanup_free_ char *cmd = NULL;
        if (asprintf(&cmd, "find %s -type f | wc -l", dir) < 0)
                return -1;
        FILE *f = popen(cmd, "r");
        int n = -1;
        if (f) {
                if (fscanf(f, "%d", &n) != 1)
                        n = -1;
                pclose(f);
        }
        return n;
}

/* With a store the answer is kept under the binary's identity and the name it was
 * called by: a second probe adds nothing, another name is asked again. */
TEST(probe_remembered) {
        char root[] = "/tmp/nb-test-interp.XXXXXX";
        CHECK(mkdtemp(root) != NULL);
        _cleanup_free_ char *link = NULL, *cache_path = NULL, *ac = NULL;
        CHECK(asprintf(&link, "%s/python", root) > 0);
        CHECK(asprintf(&cache_path, "%s/cache", root) > 0);
        CHECK(asprintf(&ac, "%s/cache/ac", root) > 0);
        CHECK(symlink(PYTHON, link) == 0);

        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_cache_dir cache;
        CHECK_EQ_INT(nb_cache_dir_open(&cache, cache_path, &err), 0);
        struct nb_store store = { .dir = &cache };
        struct nb_python a = {}, b = {}, c = {};
        CHECK_EQ_INT(nb_python_probe(&store, PYTHON, &a, &err), 0);
        CHECK_EQ_INT(count_entries(ac), 1);
        CHECK_EQ_INT(nb_python_probe(&store, PYTHON, &b, &err), 0);
        CHECK_EQ_INT(count_entries(ac), 1);
        CHECK_EQ_STR(b.version, a.version);
        CHECK_EQ_STR(b.interp_tag, a.interp_tag);
        CHECK_EQ_STR(b.plat_tag, a.plat_tag);
        CHECK_EQ_STR(b.cache_tag, a.cache_tag);
        CHECK_EQ_INT(nb_python_probe(&store, link, &c, &err), 0);
        CHECK_EQ_INT(count_entries(ac), 2);
        CHECK_EQ_STR(c.version, a.version);
        CHECK_EQ_STR(c.path, a.path);
        nb_python_done(&a);
        nb_python_done(&b);
        nb_python_done(&c);
        nb_cache_dir_close(&cache);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, root), 0);
}

/* A workspace names its interpreter, and a workspace is not trusted: a script outside
 * the system directories is refused before it runs, on the host or anywhere. */
TEST(probe_never_runs_a_workspace_script) {
        char root[] = "/tmp/nb-test-interp.XXXXXX";
        CHECK(mkdtemp(root) != NULL);
        _cleanup_close_ int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_free_ char *script = NULL, *evil = NULL, *ran = NULL;
        CHECK(asprintf(&evil, "%s/python", root) > 0);
        CHECK(asprintf(&ran, "%s/ran", root) > 0);
        CHECK(asprintf(&script, "#!/bin/sh\ntouch %s\nexec " PYTHON " \"$@\"\n", ran) > 0);
        CHECK_EQ_INT(nb_write_file_beneath(dfd, "python", script, strlen(script), 0755), 0);
        CHECK(fchmodat(dfd, "python", 0755, 0) == 0);
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        struct nb_python py = {};
        CHECK_EQ_INT(nb_python_probe(NULL, evil, &py, &err), -EINVAL);
        CHECK(err.klass == NB_ERROR_INPUT);
        CHECK(strstr(nb_error_message(&err), "outside the system directories the sandbox mounts") != NULL);
        CHECK(access(ran, F_OK) < 0 && errno == ENOENT);
        /* And the runner itself refuses to start one. */
        nb_error_clear(&err);
        _cleanup_free_ char *out = NULL;
        int status = 0;
        char *argv[] = { evil, (char *) "-c", (char *) "pass", NULL };
        CHECK_EQ_INT(nb_python_run(argv, NULL, &out, &status, NULL, &err), -EPERM);
        CHECK(access(ran, F_OK) < 0 && errno == ENOENT);
        CHECK_EQ_INT(nb_rm_rf_at(AT_FDCWD, root), 0);
}

/* The interpreter runs in a sandbox: it sees none of the host's files beyond the
 * system directories, and no network. */
TEST(run_is_sandboxed) {
        _cleanup_free_ char *said = ask(PYTHON, "import os, socket; print(os.path.exists('/etc/hostname'), os.path.exists('/root'), os.path.exists('/home'), socket.gethostname(), os.getuid())");
        CHECK(said != NULL);
        CHECK_EQ_STR(said, "False False False nestbox 1000");
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
