/* SPDX-License-Identifier: MIT */
/* Small wheels built in the test itself with libarchive, for test-wheel.c and
 * test-venv.c: no wheelhouse script, no network. */
#pragma once

#include <sys/types.h>

#include "cache/digest.h"

struct test_zip_entry {
        const char *name;
        const char *data;
        mode_t mode; /* 0644 when 0 */
};

/* Writes a zip of entries (ended by a NULL name) to name in dirfd, replacing any file
 * there, and its sha256 to hex. Returns 0 or -errno. */
int test_write_zip(int dirfd, const char *name, const struct test_zip_entry *entries,
                   char hex[NB_DIGEST_HEX_LEN + 1]);

/* A minimal valid wheel of dist==version as filename: <module>/__init__.py (whose text
 * names the file, so every wheel has its own hash), the dist-info's METADATA, WHEEL,
 * RECORD, and a console script <module> = <module>:main. module is dist with "-" as "_". */
int test_write_wheel(int dirfd, const char *filename, const char *dist, const char *version,
                     char hex[NB_DIGEST_HEX_LEN + 1]);

/* Writes text to path (relative to dirfd), replacing what is there. */
int test_write_text(int dirfd, const char *path, const char *text);
