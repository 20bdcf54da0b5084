/* SPDX-License-Identifier: MIT */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "wheel-maker.h"

static void archive_write_freep(struct archive **a) {
        if (*a)
                archive_write_free(*a);
}

int test_write_zip(int dirfd, const char *name, const struct test_zip_entry *entries,
                   char hex[NB_DIGEST_HEX_LEN + 1]) {
        (void) unlinkat(dirfd, name, 0);
        _cleanup_close_ int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        _cleanup_(archive_write_freep) struct archive *a = archive_write_new();
        if (!a)
                return -ENOMEM;
        if (archive_write_set_format_zip(a) != ARCHIVE_OK || archive_write_open_fd(a, fd) != ARCHIVE_OK)
                return -EIO;
        for (const struct test_zip_entry *e = entries; e->name; e++) {
                struct archive_entry *ae = archive_entry_new();
                if (!ae)
                        return -ENOMEM;
                size_t len = strlen(e->data);
                archive_entry_set_pathname(ae, e->name);
                archive_entry_set_filetype(ae, AE_IFREG);
                archive_entry_set_perm(ae, e->mode ? e->mode : 0644);
                archive_entry_set_size(ae, (la_int64_t) len);
                archive_entry_set_mtime(ae, 315532800, 0);
                int ok = archive_write_header(a, ae) == ARCHIVE_OK &&
                         archive_write_data(a, e->data, len) == (la_ssize_t) len;
                archive_entry_free(ae);
                if (!ok)
                        return -EIO;
        }
        if (archive_write_close(a) != ARCHIVE_OK)
                return -EIO;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        return nb_sha256_fd(fd, hex);
}

int test_write_wheel(int dirfd, const char *filename, const char *dist, const char *version,
                     char hex[NB_DIGEST_HEX_LEN + 1]) {
        _cleanup_free_ char *module = strdup(dist);
        if (!module)
                return -ENOMEM;
        for (char *p = module; *p; p++)
                if (*p == '-')
                        *p = '_';
        _cleanup_free_ char *init = NULL, *init_name = NULL, *metadata = NULL, *metadata_name = NULL,
                            *wheel_name = NULL, *record_name = NULL, *ep_name = NULL, *ep = NULL;
        if (asprintf(&init, "WHEEL = '%s'\ndef main():\n    return 0\n", filename) < 0 ||
            asprintf(&init_name, "%s/__init__.py", module) < 0 ||
            asprintf(&metadata, "Metadata-Version: 2.1\nName: %s\nVersion: %s\n", dist, version) < 0 ||
            asprintf(&metadata_name, "%s-%s.dist-info/METADATA", module, version) < 0 ||
            asprintf(&wheel_name, "%s-%s.dist-info/WHEEL", module, version) < 0 ||
            asprintf(&record_name, "%s-%s.dist-info/RECORD", module, version) < 0 ||
            asprintf(&ep_name, "%s-%s.dist-info/entry_points.txt", module, version) < 0 ||
            asprintf(&ep, "[console_scripts]\n%s = %s:main\n", module, module) < 0)
                return -ENOMEM;
        const struct test_zip_entry entries[] = {
                { init_name, init, 0 },
                { metadata_name, metadata, 0 },
                { wheel_name, "Wheel-Version: 1.0\nGenerator: nestbox tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n", 0 },
                { ep_name, ep, 0 },
                { record_name, "", 0 },
                { NULL, NULL, 0 },
        };
        return test_write_zip(dirfd, filename, entries, hex);
}

int test_write_text(int dirfd, const char *path, const char *text) {
        (void) unlinkat(dirfd, path, 0);
        return nb_write_file_beneath(dirfd, path, text, strlen(text), 0644);
}
