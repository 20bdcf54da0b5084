/* SPDX-License-Identifier: MIT */
/* Mount sources that do not name host paths. A bind mount's line in mountinfo shows
 * its root as a path within its filesystem: /work of a test would read
 * "/home/me/.cache/nestbox/trees/<digest> /work", and the test reads that from its own
 * /proc/self/mountinfo (no mask covers every pid's). The kernel offers no way to
 * rename it; but an overlay mount is a filesystem of its own whose root is "/", and an
 * overlay whose layers are given by descriptor, of detached mounts, shows each layer
 * as "/" too. So a read-only directory bind whose host path differs from its place in
 * the sandbox is mounted as an overlay of two lower layers: the detached clone of the
 * source and an empty read-only tmpfs (overlayfs wants two lowers without an upper):
 *
 *     95 87 0:57 / /work ro,nosuid,nodev,relatime - overlay none ro,lowerdir+=/,lowerdir+=/
 *
 * A bind at its own host path (/usr at /usr) names nothing the test does not see, and
 * stays a bind. So does a source with mounts beneath it (overlayfs does not cross
 * them), a file, a writable bind (an overlay would need an upper layer: its writes
 * would not reach the source), and any source when the kernel refuses the overlay
 * (before Linux 6.8, no "lowerdir+"): the bind is then the fallback. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "sandbox-internal.h"

/* True when a mount point in mountinfo lies strictly beneath dir. Mount points are
 * octal-escaped there (\040 for a space); a dir with such characters compares as
 * having a submount, which keeps the plain bind: the safe side. */
static bool has_submounts(const char *mountinfo, const char *dir) {
        size_t n = strlen(dir);
        if (strpbrk(dir, " \t\n\\"))
                return true;
        for (const char *line = mountinfo; line && *line;) {
                const char *end = strchr(line, '\n');
                /* field 5 is the mount point */
                const char *f = line;
                for (int i = 0; i < 4 && f; i++) {
                        f = memchr(f, ' ', (size_t) ((end ? end : f + strlen(f)) - f));
                        f = f ? f + 1 : NULL;
                }
                if (f && strncmp(f, dir, n) == 0 && f[n] == '/' && f[n + 1] != ' ')
                        return true;
                line = end ? end + 1 : NULL;
        }
        return false;
}

static char *read_mountinfo(void) {
        _cleanup_close_ int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        char *text = NULL;
        if (fd < 0 || nb_read_fd(fd, 16 << 20, &text, NULL) < 0)
                return NULL; /* then no overlay: every bind stays a bind */
        return text;
}

/* mountinfo is read on the first mount that could be an overlay: a spawn binding only
 * system directories at their own paths (/usr at /usr) skips its 0.1 ms. */
bool nb_overlay_wanted(const struct nb_mount *m, struct nb_mountinfo *mi) {
        if (m->kind != NB_MOUNT_RO_BIND)
                return false;
        _cleanup_free_ char *real = realpath(m->src, NULL);
        struct stat st;
        if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode) || strcmp(real, m->dst) == 0)
                return false;
        if (!mi->read) {
                mi->text = read_mountinfo();
                mi->read = true;
        }
        return mi->text && !has_submounts(mi->text, real);
}

int nb_overlay_of(int tree, int empty_lower) {
        _cleanup_close_ int fs = fsopen("overlay", FSOPEN_CLOEXEC);
        if (fs < 0)
                return -errno;
        if (fsconfig(fs, FSCONFIG_SET_FD, "lowerdir+", NULL, tree) < 0 ||
            fsconfig(fs, FSCONFIG_SET_FD, "lowerdir+", NULL, empty_lower) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        int m = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        return m < 0 ? -errno : m;
}
