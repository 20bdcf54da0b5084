/* SPDX-License-Identifier: MIT */
/* The seccomp filter: the prebuilt programs (seccomp_prebuilt.c, made at build time)
 * are exactly what compiling the default policy gives now, and an allow-list compiles
 * a program of its own. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/sandbox.h"
#include "sandbox-internal.h"
#include "test.h"

static char *compiled(const struct nb_sandbox_config *cfg, bool notify, size_t *len) {
        struct nb_error err = NB_ERROR_INIT;
        _cleanup_close_ int fd = memfd_create("test-seccomp", MFD_CLOEXEC);
        char *bpf = NULL;
        if (fd < 0 || nb_seccomp_compile(cfg, notify, fd, &err) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
            nb_read_fd(fd, 1 << 20, &bpf, len) < 0)
                return NULL;
        return bpf;
}

TEST(prebuilt_matches_a_fresh_compile) {
        struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        for (int notify = 0; notify < 2; notify++) {
                const void *pre;
                size_t pre_len, len;
                CHECK(nb_seccomp_prebuilt(notify, &pre, &pre_len));
                _cleanup_free_ char *bpf = compiled(&cfg, notify, &len);
                CHECK(bpf != NULL);
                CHECK(len == pre_len);
                CHECK(memcmp(bpf, pre, len) == 0);
        }
}

TEST(allow_list_changes_the_program) {
        struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        struct nb_error err = NB_ERROR_INIT;
        CHECK(nb_sandbox_allow_syscall(&cfg, "ptrace", &err) == 0);
        const void *pre;
        size_t pre_len, len;
        CHECK(nb_seccomp_prebuilt(false, &pre, &pre_len));
        _cleanup_free_ char *bpf = compiled(&cfg, false, &len);
        CHECK(bpf != NULL);
        CHECK(len != pre_len || memcmp(bpf, pre, len) != 0);
        nb_sandbox_config_done(&cfg);
}
