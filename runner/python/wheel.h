/* SPDX-License-Identifier: MIT */
/* Wheels: picking the one for a requirement out of a wheelhouse, checking it against
 * the lock, and unpacking it into a venv (the binary distribution format, PEP 427 /
 * packaging.python.org "Binary distribution format"). No pip, no setup.py: a wheel is
 * a zip with a fixed layout, read with libarchive. */
#pragma once

#include "cache/digest.h"
#include "python/interp.h"
#include "python/lockfile.h"
#include "nestbox/error.h"

/* Where a venv lives inside the sandbox; scripts' shebangs point here. */
#define NB_VENV_MOUNT "/venv"

struct nb_wheel {
        char *filename;                      /* in the wheelhouse: "pytest-7.2.1-py3-none-any.whl" */
        char sha256[NB_DIGEST_HEX_LEN + 1];  /* of the file, equal to one of the lock's hashes */
};

void nb_wheel_done(struct nb_wheel *w);

/* Picks the best wheel for req in the wheelhouse (name and version from the filename,
 * tags the interpreter accepts) and checks its sha256 against the lock. wheelhouse is
 * the directory's path for messages; store (may be NULL) remembers wheels' hashes by
 * file identity. Errors: -ENOENT when no wheel matches, -EBADMSG
 * when the hash differs. */
int nb_wheel_select(struct nb_store *store, const struct nb_python *py, int wheelhouse_fd, const char *wheelhouse,
                    const struct nb_requirement *req, struct nb_wheel *ret, struct nb_error *err);

/* Unpacks w into the venv rooted at venv_fd (an O_DIRECTORY descriptor): the wheel is
 * first copied into a private unlinked file while hashed again, so the bytes unpacked
 * are exactly the bytes checked. Every file is created beneath venv_fd. Writes the
 * console scripts, INSTALLER and RECORD. Errors: -EBADMSG (hash or archive), -EINVAL
 * (an entry that is absolute, climbs out, is a link or a device, or a wheel that is not
 * a valid wheel), anything else is an infrastructure error. */
int nb_wheel_install(const struct nb_python *py, int wheelhouse_fd, const struct nb_requirement *req,
                     const struct nb_wheel *w, int venv_fd, struct nb_error *err);

/* "lib/python3.11/site-packages", relative to the venv root; NULL when out of memory. */
char *nb_venv_site_packages(const struct nb_python *py);
