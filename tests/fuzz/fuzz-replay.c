/* SPDX-License-Identifier: MIT */
/* Runs LLVMFuzzerTestOneInput over every file named, or every file in every
 * directory named: a fuzzer's corpus replayed as an ordinary regression test, so a
 * crasher once found stays fixed without clang or libFuzzer. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus files are small; this only keeps a stray large file from eating memory. */
#define REPLAY_MAX_INPUT (256u * 1024u * 1024u)

static int run_file(int dirfd, const char *path) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
        int r = fd < 0 ? -errno : nb_read_fd(fd, REPLAY_MAX_INPUT, &data, &len);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        printf("%s\n", path);
        fflush(stdout);
        LLVMFuzzerTestOneInput((const uint8_t *) data, len);
        return 0;
}

static int run_dir(const char *path, size_t *n) {
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        struct dirent *de;
        int ret = 0;
        while ((de = readdir(d))) {
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                int r = run_file(dirfd(d), de->d_name);
                if (r < 0)
                        ret = r;
                else
                        (*n)++;
        }
        return ret;
}

int main(int argc, char **argv) {
        size_t n = 0;
        int ret = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r = stat(argv[i], &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? run_dir(argv[i], &n)
                                                                               : run_file(AT_FDCWD, argv[i]);
                if (r < 0)
                        ret = r;
                else if (!S_ISDIR(st.st_mode))
                        n++;
        }
        printf("%zu inputs\n", n);
        /* An empty run is a broken test, not a pass. */
        return ret < 0 || n == 0 ? 1 : 0;
}
