/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/support.h"
#include "driver-stamp.h" /* changes with driver.py, so this file is rebuilt when it does */

/* The driver is linked in verbatim (no code generator needed at build time). */
__asm__(".section .rodata\n"
        ".global nb_driver_py_start\n"
        "nb_driver_py_start:\n"
        ".incbin \"" NB_DRIVER_PY "\"\n"
        ".global nb_driver_py_end\n"
        "nb_driver_py_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char nb_driver_py_start[], nb_driver_py_end[];

const char *nb_support_driver(size_t *len) {
        *len = (size_t) (nb_driver_py_end - nb_driver_py_start);
        return nb_driver_py_start;
}

void nb_support_digest(char out[NB_DIGEST_HEX_LEN + 1]) {
        size_t len;
        const char *data = nb_support_driver(&len);
        struct nb_hasher *h = nb_hasher_new();
        if (!h) {
                nb_sha256_hex(data, len, out);
                return;
        }
        nb_hasher_update_str(h, "nestbox-support-2"); /* 2: with plan/ */
        nb_hasher_update(h, data, len);
        nb_hasher_finish(h, out);
}

/* trees/<digest>/ holding one file (and, for the driver's tree, the empty plan/ that
 * a shard's durations are mounted on), written under tmp/ and renamed into place. */
static int materialize_one(struct nb_cache_dir *cache, const char *digest, const char *file, const char *data,
                           size_t len, bool plan_dir, char **ret_path, struct nb_error *err) {
        _cleanup_free_ char *rel = NULL, *abs = NULL;
        if (asprintf(&rel, "trees/%s", digest) < 0 || asprintf(&abs, "%s/%s", cache->path, rel) < 0)
                return nb_error_set(err, ENOMEM, "support files");
        struct stat st;
        if (fstatat(cache->fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
                *ret_path = TAKE_PTR(abs);
                return 0;
        }
        _cleanup_free_ char *tmp = NULL;
        int r = nb_cache_dir_mkdtemp(cache, "support", &tmp, err);
        if (r < 0)
                return r;
        _cleanup_close_ int dir = nb_open_beneath(cache->fd, tmp, O_RDONLY | O_DIRECTORY, 0);
        /* Written atomically (file and directory fsynced) before it is published: a
         * power cut must not leave an empty driver.py under its digest.
         * Sealed only after the rename: moving a directory rewrites its "..", which needs
         * write permission on it (root does not notice, everyone else does). */
        if (dir < 0 || (r = nb_write_file_atomic(dir, file, data, len, 0444)) < 0 ||
            (plan_dir && mkdirat(dir, "plan", 0555) < 0) || fchmod(dir, 0755) < 0) {
                int e = dir < 0 ? -dir : (r < 0 ? -r : errno);
                (void) nb_rm_rf_at(cache->fd, tmp);
                return nb_error_set(err, e, "support files in %s/%s", cache->path, tmp);
        }
        if ((r = nb_cache_dir_publish(cache, tmp, rel, err)) < 0)
                return r;
        if ((r = nb_cache_dir_seal_published(cache, rel)) < 0 && r != -EPERM)
                return nb_error_set(err, -r, "support files in %s", abs);
        *ret_path = TAKE_PTR(abs);
        return 0;
}

int nb_support_materialize(struct nb_cache_dir *cache, char **ret_path, struct nb_error *err) {
        char digest[NB_DIGEST_HEX_LEN + 1];
        nb_support_digest(digest);
        size_t len;
        const char *data = nb_support_driver(&len);
        return materialize_one(cache, digest, "driver.py", data, len, true, ret_path, err);
}

void nb_support_plan_digest(const char *plan, char out[NB_DIGEST_HEX_LEN + 1]) {
        struct nb_hasher *h = nb_hasher_new();
        if (!h) {
                nb_sha256_hex(plan, strlen(plan), out);
                return;
        }
        nb_hasher_update_str(h, "nestbox-plan-2"); /* 2: plan.json, the split itself */
        nb_hasher_update_str(h, plan);
        nb_hasher_finish(h, out);
}

int nb_support_materialize_plan(struct nb_cache_dir *cache, const char *plan, char **ret_path,
                                struct nb_error *err) {
        char digest[NB_DIGEST_HEX_LEN + 1];
        nb_support_plan_digest(plan, digest);
        return materialize_one(cache, digest, "plan.json", plan, strlen(plan), false, ret_path, err);
}
