/* SPDX-License-Identifier: MIT */
/* Locked virtualenvs in the cache (DESIGN.md, "Locked virtualenvs"):
 *
 *     <cache>/venvs/<digest>/
 *         pyvenv.cfg                     home = dirname of the real interpreter
 *         bin/python, python3, pythonX.Y symlinks to the real interpreter
 *         bin/<console scripts>          #!/venv/bin/python
 *         lib/pythonX.Y/site-packages/
 *         .nestbox-complete              written last
 *
 * digest = SHA-256(interpreter identity, the lockfile's requirements after markers,
 * each chosen wheel's sha256). A venv is built once under tmp/, made read-only and
 * renamed into place; it is never modified afterwards. */
#pragma once

#include <stdbool.h>

#include "cache/cache_dir.h"
#include "cache/digest.h"
#include "nestbox/error.h"

struct nb_venv_info {
        char digest[NB_DIGEST_HEX_LEN + 1];
        char *path;  /* absolute: <cache>/venvs/<digest> */
        bool built;  /* this call built it (false: it was in the cache) */
};

void nb_venv_info_done(struct nb_venv_info *info);

/* Returns the venv for (python, lockfile, wheelhouse), building it when the cache
 * does not have it. Two processes doing this at once both succeed with one result.
 * On failure nothing is left in the cache.
 *
 * Input errors come back as -EINVAL (bad lockfile, marker, wheel or interpreter),
 * -ENOENT (a missing file or wheel) or -EBADMSG (a hash mismatch, a corrupt wheel);
 * nb_venv_is_input_error() says which class an error is in. */
int nb_venv_ensure(struct nb_cache_dir *cache, const char *python, const char *lockfile, const char *wheelhouse,
                   struct nb_venv_info *ret, struct nb_error *err);

/* True for the errors above that are the user's input, false for infrastructure
 * errors (the cache cannot be written, out of memory, ...). */
bool nb_venv_is_input_error(int r);
