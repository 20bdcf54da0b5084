/* SPDX-License-Identifier: MIT */
/* Locked virtualenvs in the cache (HACKING.md, "Locked virtualenvs"):
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
#include "python/interp.h"
#include "nestbox/error.h"

/* Where a venv lives inside the sandbox; scripts' shebangs point here. */
#define NB_VENV_MOUNT "/venv"

/* "lib/python3.11/site-packages", relative to the venv root; NULL when out of memory. */
char *nb_venv_site_packages(const struct nb_python *py);

struct nb_venv_info {
        char digest[NB_DIGEST_HEX_LEN + 1];
        char *path;  /* absolute: <cache>/venvs/<digest> */
        bool built;  /* this call built it (false: it was in the cache) */
};

void nb_venv_info_done(struct nb_venv_info *info);

/* A venv resolved but not necessarily built: the interpreter's answers, the lockfile
 * after markers, the chosen wheels with their hashes, and the digest of all that.
 * Resolving is cheap (no Python runs when the probe and wheel hashes are remembered
 * in the cache) and is all a cached action needs. */
struct nb_venv_plan;

/* Errors in what the user wrote (bad lockfile, marker, interpreter; a missing wheel,
 * a hash mismatch) come back classified NB_ERROR_INPUT (-EINVAL, -ENOENT, -EBADMSG),
 * set where each is found; others (the cache cannot be written, out of memory) stay
 * NB_ERROR_INFRA. */
int nb_venv_resolve(struct nb_cache_dir *cache, const char *python, const char *lockfile, const char *wheelhouse,
                    struct nb_venv_plan **ret, struct nb_error *err);
const char *nb_venv_plan_digest(const struct nb_venv_plan *p);
/* The wheels a plan installs, one per requirement of the lockfile (after markers),
 * reqs[i] for wheels[i]; and the wheelhouse they are in (a descriptor the plan owns).
 * What `nestbox bundle` carries. */
struct nb_wheel;
struct nb_requirement;
size_t nb_venv_plan_wheels(const struct nb_venv_plan *p, const struct nb_wheel **wheels,
                           const struct nb_requirement **reqs);
int nb_venv_plan_wheelhouse(const struct nb_venv_plan *p);
void nb_venv_plan_free(struct nb_venv_plan *p);
static inline void nb_venv_plan_freep(struct nb_venv_plan **p) {
        nb_venv_plan_free(*p);
}

/* Returns the plan's venv, building it when the cache does not have it. Two processes
 * doing this at once both succeed with one result. On failure nothing is left in the
 * cache. */
int nb_venv_materialize(struct nb_cache_dir *cache, const struct nb_venv_plan *p, struct nb_venv_info *ret,
                        struct nb_error *err);

/* Who hears that this process built a venv (digest, seconds it took): `nestbox test`
 * and `nestbox run` turn it into a venv_built event. One listener per process; fn
 * NULL: none. */
typedef void (*nb_venv_built_fn)(const char *digest, double seconds, void *userdata);
void nb_venv_on_built(nb_venv_built_fn fn, void *userdata);

/* nb_venv_resolve() then nb_venv_materialize(). */
int nb_venv_ensure(struct nb_cache_dir *cache, const char *python, const char *lockfile, const char *wheelhouse,
                   struct nb_venv_info *ret, struct nb_error *err);
