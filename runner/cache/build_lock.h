/* SPDX-License-Identifier: MIT */
/* One builder per venv or tree, across the items of one `nestbox test -j N` and across
 * nestbox processes sharing a cache: the first takes locks/<kind>-<digest> (beside
 * tmp/, which stays empty between runs), the others wait on it and then find the
 * entry published. The lock is an optimisation (nb_cache_dir_publish already makes
 * two racing builders both succeed with one result). */
#pragma once

#include "cache/cache_dir.h"

/* Blocks until the exclusive lock is held; *ret_fd holds it until closed. */
int nb_build_lock(struct nb_cache_dir *c, const char *kind, const char *digest, int *ret_fd, struct nb_error *err);
