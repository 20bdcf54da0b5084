/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/build_lock.h"
#include "nestbox/cleanup.h"

int nb_build_lock(struct nb_cache_dir *c, const char *kind, const char *digest, int *ret_fd, struct nb_error *err) {
        if (mkdirat(c->fd, "locks", 0700) < 0 && errno != EEXIST)
                return nb_error_set(err, errno, "cache %s/locks", c->path);
        _cleanup_free_ char *rel = NULL;
        if (asprintf(&rel, "locks/%s-%s", kind, digest) < 0)
                return nb_error_set(err, ENOMEM, "lock");
        _cleanup_close_ int fd = openat(c->fd, rel, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return nb_error_set(err, errno, "cache %s/%s", c->path, rel);
        int r;
        while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
                ;
        if (r < 0)
                return nb_error_set(err, errno, "cache %s/%s: lock", c->path, rel);
        *ret_fd = TAKE_FD(fd);
        return 0;
}
