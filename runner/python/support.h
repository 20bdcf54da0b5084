/* SPDX-License-Identifier: MIT */
/* nestbox's own files for the sandbox (the pytest driver, runner/driver.py), built
 * into the binary and materialised once per content digest in the cache's trees/,
 * then mounted read-only at /nestbox. */
#pragma once

#include "cache/cache_dir.h"
#include "cache/digest.h"
#include "nestbox/error.h"

/* The driver's bytes and their digest (part of every action digest). */
const char *nb_support_driver(size_t *len);
void nb_support_digest(char out[NB_DIGEST_HEX_LEN + 1]);

/* The directory to mount at /nestbox; *ret_path is absolute. */
int nb_support_materialize(struct nb_cache_dir *cache, char **ret_path, struct nb_error *err);

/* A shard plan (action/shard_plan.h, JSON text) as trees/<digest>/plan.json, mounted
 * read-only at /nestbox/plan. */
void nb_support_plan_digest(const char *plan, char out[NB_DIGEST_HEX_LEN + 1]);
int nb_support_materialize_plan(struct nb_cache_dir *cache, const char *plan, char **ret_path,
                                struct nb_error *err);
