/* SPDX-License-Identifier: MIT */
/* Wheels: picking the one for a requirement out of a wheelhouse and checking it against
 * the lock (the binary distribution format, PEP 427 / packaging.python.org "Binary
 * distribution format"). Unpacking one is wheel_files.h's; the venv is venv.h's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cache/digest.h"
#include "python/interp.h"
#include "python/lockfile.h"
#include "nestbox/error.h"

struct nb_wheel {
        char *filename;                      /* in the wheelhouse: "pytest-7.2.1-py3-none-any.whl" */
        char sha256[NB_DIGEST_HEX_LEN + 1];  /* of the file, equal to one of the lock's hashes */
};

void nb_wheel_done(struct nb_wheel *w);

/* Picks the best wheel for req in the wheelhouse (name and version from the filename,
 * tags the interpreter accepts) and checks its sha256 against the lock. wheelhouse is
 * the directory's path for messages; store (may be NULL) remembers wheels' hashes by
 * file identity. Errors: -ENOENT when no wheel matches, -EBADMSG
 * when the hash differs, both classified NB_ERROR_INPUT and naming the package. */
int nb_wheel_select(struct nb_store *store, const struct nb_python *py, int wheelhouse_fd, const char *wheelhouse,
                    const struct nb_requirement *req, struct nb_wheel *ret, struct nb_error *err);

/* Opens filename in the wheelhouse for reading; -EINVAL when it is not a regular file. */
int nb_wheel_open(int wheelhouse_fd, const char *filename);
/* Whose fault nb_wheel_open's error r is: a wheel that is gone (a dangling link) or
 * not a file is the wheelhouse's, so NB_ERROR_INPUT; anything else NB_ERROR_INFRA. */
enum nb_error_class nb_wheel_open_error_class(int r);

/* Fills err with "<req>: <filename>: sha256 mismatch: lock says A or B, file is <hex>",
 * classified NB_ERROR_INPUT, and returns -EBADMSG. */
int nb_wheel_hash_mismatch(const struct nb_requirement *req, const char *filename, const char *hex,
                           struct nb_error *err);

/* True when "pytest-7.2.1" (len bytes of stem) names req's distribution and version,
 * as a wheel's .dist-info or .data directory does. */
bool nb_wheel_stem_matches(const char *stem, size_t len, const struct nb_requirement *req);
