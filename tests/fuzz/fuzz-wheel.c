/* SPDX-License-Identifier: MIT */
/* libFuzzer target for a wheel's entry handling (python/wheel_files.c): the input is
 * the wheel's zip, pinned by its own hash as a lock would pin it, unpacked into a venv
 * directory under a private temporary root. Besides "no crash, no leak": whatever
 * happens, nothing appears outside the venv, and a refusal is an input error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "nestbox/error.h"
#include "nestbox/fs.h"
#include "python/wheel_files.h"
#include "fuzz.h"

#define WHEEL "fuzz-1.0-py3-none-any.whl"

static int root_fd = -1, house_fd = -1;
static char root[] = "/tmp/nb-fuzz-wheel.XXXXXX";

static void cleanup(void) {
        (void) nb_rm_rf_at(AT_FDCWD, root);
}

static void setup(void) {
        if (root_fd >= 0)
                return;
        check(mkdtemp(root) != NULL);
        atexit(cleanup);
        root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check(root_fd >= 0);
        check(mkdirat(root_fd, "house", 0755) == 0);
        house_fd = openat(root_fd, "house", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check(house_fd >= 0);
}

/* The only names the root may hold afterwards. */
static void check_nothing_escaped(void) {
        _cleanup_closedir_ DIR *d = NULL;
        check(nb_opendir_at(root_fd, ".", &d) == 0);
        struct dirent *de;
        while ((de = nb_readdir_no_dots(d)))
                check(strcmp(de->d_name, "house") == 0 || strcmp(de->d_name, "venv") == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        setup();
        check(nb_write_file_beneath(house_fd, WHEEL, data, size, 0644) == 0);
        check(nb_rm_rf_at(root_fd, "venv") == 0);
        check(mkdirat(root_fd, "venv", 0755) == 0);
        _cleanup_close_ int venv = openat(root_fd, "venv", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check(venv >= 0);

        struct nb_python py = { .version_short = (char *) "3.11" };
        char *hashes[] = { NULL, NULL };
        struct nb_requirement req = { .name = (char *) "fuzz", .version = (char *) "1.0", .hashes = hashes };
        struct nb_wheel w = { .filename = (char *) WHEEL };
        nb_sha256_hex(data, size, w.sha256);
        hashes[0] = w.sha256;
        const struct nb_wheel_dest dest = { .fd = venv, .site = "lib/python3.11/site-packages", .python = "/venv/bin/python" };
        _cleanup_error_ struct nb_error err = NB_ERROR_INIT;
        if (nb_wheel_install(&py, house_fd, &req, &w, &dest, &err) < 0)
                check(err.msg != NULL && (err.klass == NB_ERROR_INPUT || err.code == ENOSPC || err.code == ENOMEM));
        check_nothing_escaped();
        return 0;
}
