/* SPDX-License-Identifier: MIT */
/* libFuzzer target for a wheel's entry handling (python/wheel_files.c): the input is
 * the wheel's zip, handed to nb_wheel_unpack as nb_wheel_install hands it the mapped
 * copy it checked against the lock, and unpacked into a venv directory under a private
 * root. Besides "no crash, no leak": whatever happens, nothing appears outside the
 * venv, and a refusal is an input error. The root is on a tmpfs (/dev/shm) where there
 * is one: writing the entries is the point, but on a disk file system creating and
 * removing the venv's inodes costs more than all the rest. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "python/wheel_files.h"
#include "fuzz.h"

#define WHEEL "fuzz-1.0-py3-none-any.whl"

static int root_fd = -1;
static char shm_root[] = "/dev/shm/nb-fuzz-wheel.XXXXXX", tmp_root[] = "/tmp/nb-fuzz-wheel.XXXXXX";
static const char *root;

static void cleanup(void) {
        (void) nb_rm_rf_at(AT_FDCWD, root);
}

static void setup(void) {
        if (root_fd >= 0)
                return;
        root = mkdtemp(shm_root) ?: mkdtemp(tmp_root);
        check(root != NULL);
        atexit(cleanup);
        root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check(root_fd >= 0);
}

/* The only names the root may hold afterwards. */
static void check_nothing_escaped(void) {
        _cleanup_closedir_ DIR *d = NULL;
        check(nb_opendir_at(root_fd, ".", &d) == 0);
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d)))
                check(strcmp(de->d_name, "venv") == 0);
}

/* Whether the input left anything in the venv: most are refused before a file is
 * written, and then the same empty venv serves the next one. */
static bool venv_used(int venv) {
        _cleanup_closedir_ DIR *d = NULL;
        check(nb_opendir_at(venv, ".", &d) == 0);
        return nb_readdir_no_dots(d) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        setup();
        static int venv = -1;
        if (venv < 0 || venv_used(venv)) {
                if (venv >= 0)
                        close(venv);
                check(nb_rm_rf_at(root_fd, "venv") == 0);
                check(mkdirat(root_fd, "venv", 0755) == 0);
                venv = openat(root_fd, "venv", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                check(venv >= 0);
        }

        struct nb_python py = { .version_short = (char *) "3.11" };
        /* The pin is not looked at again: nb_wheel_install checked it before this. */
        char *hashes[] = { (char *) "0000000000000000000000000000000000000000000000000000000000000000", NULL };
        struct nb_requirement req = { .name = (char *) "fuzz", .version = (char *) "1.0", .hashes = hashes };
        const struct nb_wheel_dest dest = { .fd = venv, .site = "lib/python3.11/site-packages", .python = "/venv/bin/python" };
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (nb_wheel_unpack(&py, &req, WHEEL, data, size, &dest, &err) < 0)
                check(err.msg != NULL && (err.klass == NB_ERROR_INPUT || err.code == ENOSPC || err.code == ENOMEM));
        check_nothing_escaped();
        return 0;
}
