/* SPDX-License-Identifier: MIT */
/* Installing a chosen wheel's files into a venv being built: where each entry goes,
 * what is refused, and the RECORD, INSTALLER and console scripts written afterwards.
 * The wheel's bytes are trusted only after their sha256 matched the lock, and even then
 * every entry is checked: a hash-pinned wheel is what the lock's author chose, not proof
 * that it cannot write outside the venv. */
#pragma once

#include "python/interp.h"
#include "python/lockfile.h"
#include "python/wheel.h"
#include "nestbox/error.h"

/* Where a wheel is unpacked: the venv being built, as venv.c lays it out. */
struct nb_wheel_dest {
        int fd;             /* O_DIRECTORY of the venv's root; every file is created beneath it */
        const char *site;   /* "lib/python3.11/site-packages", relative to the root */
        const char *python; /* the interpreter scripts' shebangs name: "/venv/bin/python" */
};

/* Unpacks w into dest: the wheel is first copied into a private unlinked file while
 * hashed again, so the bytes unpacked are exactly the bytes checked. Writes the console
 * scripts, INSTALLER and RECORD. Errors: -EBADMSG (hash or archive), -EINVAL (an entry
 * that is absolute, climbs out, is a link or a device, or a wheel that is not a valid
 * wheel), anything else is an infrastructure error. */
int nb_wheel_install(const struct nb_python *py, int wheelhouse_fd, const struct nb_requirement *req,
                     const struct nb_wheel *w, const struct nb_wheel_dest *dest, struct nb_error *err);

/* The same for a wheel already in memory (zip, len: its bytes, checked against the
 * lock by the caller): every entry checked and written beneath dest, then the console
 * scripts, INSTALLER and RECORD. nb_wheel_install maps its private copy and comes
 * here; so does the fuzzer, straight from its input. Errors as nb_wheel_install's. */
int nb_wheel_unpack(const struct nb_python *py, const struct nb_requirement *req, const char *filename,
                    const void *zip, size_t len, const struct nb_wheel_dest *dest, struct nb_error *err);
