/* SPDX-License-Identifier: MIT */
/* Landlock: a second wall, so that a mistake in the mount table alone is not a hole.
 * Applied by the sandbox's pid 1 after pivot_root and the capability drop (Landlock
 * needs no_new_privs), before seccomp; the command inherits it and cannot lift it.
 *
 *   - files are read and executed only beneath the sandbox's own mounts (each --ro-bind,
 *     --bind and tmpfs destination, /etc, /proc, /dev's nodes); directories anywhere in
 *     the sandbox's own root may be listed (a rule on / for that alone: ls / keeps
 *     working, and a directory's names are all a wrong mount would show);
 *   - files are written, created, removed and renamed only beneath the writable mounts
 *     (/tmp, /out, every --bind and tmpfs, /dev/shm) and the device nodes of /dev;
 *   - ABI >= 6: abstract unix sockets and signals are scoped to the sandbox.
 *
 * TCP is not handled (ABI >= 4 could): Landlock's network rules name ports, not
 * addresses, and the sandbox's net namespace has only its own loopback, so every
 * address a test can reach is already inside; suites that start a server on an
 * ephemeral port of 127.0.0.1 must keep working. The namespace is that wall.
 *
 * Where the kernel has no Landlock (or NESTBOX_TEST_NO_LANDLOCK is set, test-only),
 * nothing is applied and nb_landlock_abi() says 0; the caller reports it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "sandbox-internal.h"

/* Newer than the distribution's headers (6.1): the kernel's values. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

/* struct landlock_ruleset_attr as of ABI 6; older kernels take a prefix of it. */
struct ruleset_attr {
        uint64_t handled_access_fs;
        uint64_t handled_access_net;
        uint64_t scoped;
};

#define FS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_EXECUTE)
#define FS_FILE_ONLY                                                                                         \
        (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_EXECUTE |          \
         LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
#define FS_DEVICE                                                                                            \
        (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |        \
         LANDLOCK_ACCESS_FS_IOCTL_DEV)

int nb_landlock_abi(void) {
        const char *off = getenv("NESTBOX_TEST_NO_LANDLOCK");
        if (off && *off && strcmp(off, "0") != 0)
                return 0;
        long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
        return abi < 0 ? 0 : (int) abi;
}

/* Every filesystem right this ABI knows: all of them are handled, so any not granted
 * by a rule is refused. */
static uint64_t fs_rights(int abi) {
        uint64_t all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0-12 */
        if (abi >= 2)
                all |= LANDLOCK_ACCESS_FS_REFER;
        if (abi >= 3)
                all |= LANDLOCK_ACCESS_FS_TRUNCATE;
        if (abi >= 5)
                all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
        return all;
}

/* Grants access beneath path (inside the new root). A path that is not there (an
 * optional /dev node) needs no rule: nothing can be reached through it. */
static int allow(int ruleset, const char *path, uint64_t access, uint64_t handled, struct nb_error *err) {
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : nb_error_set(err, errno, "landlock: opening %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return nb_error_set(err, errno, "landlock: %s", path);
        if (!S_ISDIR(st.st_mode))
                access &= FS_FILE_ONLY; /* the kernel refuses directory rights on a file */
        struct landlock_path_beneath_attr pb = { .allowed_access = access & handled, .parent_fd = fd };
        if (pb.allowed_access && syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
                return nb_error_set(err, errno, "landlock: rule for %s", path);
        return 0;
}

static int add_rules(const struct nb_sandbox_config *cfg, int ruleset, uint64_t handled, struct nb_error *err) {
        static const char *const devices[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty" };
        int r;
        if ((r = allow(ruleset, "/", LANDLOCK_ACCESS_FS_READ_DIR, handled, err)) < 0 ||
            (r = allow(ruleset, "/etc", FS_READ, handled, err)) < 0 ||
            (r = allow(ruleset, "/proc", FS_READ | LANDLOCK_ACCESS_FS_WRITE_FILE, handled, err)) < 0 ||
            (r = allow(ruleset, "/dev", FS_READ, handled, err)) < 0 ||
            (r = allow(ruleset, "/dev/shm", handled, handled, err)) < 0)
                return r;
        for (size_t i = 0; i < NB_ELEMENTSOF(devices); i++)
                if ((r = allow(ruleset, devices[i], FS_DEVICE, handled, err)) < 0)
                        return r;
        bool tmp_listed = false;
        for (size_t i = 0; i < cfg->n_mounts; i++) {
                const struct nb_mount *m = &cfg->mounts[i];
                tmp_listed |= strcmp(m->dst, "/tmp") == 0;
                if (m->test_unlisted)
                        continue; /* the test-only wrong mount: Landlock must hold without a rule */
                uint64_t access = m->kind == NB_MOUNT_RO_BIND || m->kind == NB_MOUNT_DIR ? FS_READ
                                  : m->kind == NB_MOUNT_SYMLINK                           ? 0
                                                                                          : handled;
                if (access && (r = allow(ruleset, m->dst, access, handled, err)) < 0)
                        return r;
        }
        return tmp_listed ? 0 : allow(ruleset, "/tmp", handled, handled, err);
}

int nb_landlock_apply(const struct nb_sandbox_config *cfg, int abi, struct nb_error *err) {
        if (abi <= 0)
                return 0;
        struct ruleset_attr attr = { .handled_access_fs = fs_rights(abi) };
        size_t size = sizeof(attr.handled_access_fs);
        if (abi >= 6) {
                attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
                size = sizeof(attr);
        }
        _cleanup_close_ int ruleset = (int) syscall(SYS_landlock_create_ruleset, &attr, size, 0);
        if (ruleset < 0)
                return nb_error_set(err, errno, "landlock: creating the ruleset (ABI %d)", abi);
        int r = add_rules(cfg, ruleset, attr.handled_access_fs, err);
        if (r < 0)
                return r;
        if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
                return nb_error_set(err, errno, "landlock: restricting the sandbox");
        return 0;
}
