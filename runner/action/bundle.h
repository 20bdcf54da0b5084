/* SPDX-License-Identifier: MIT */
/* Bundles (README "nestbox bundle"): one recorded action in one file that another
 * machine, with its own cache, replays. A tar.zst packed as artifacts are
 * (cache/artifact.c: deterministic, names checked, sizes capped on read):
 *
 *   bundle.json        nestbox.bundle/v1: the tree's files with their exec bits, the
 *                      wheels the venv needs (requirement, file, sha256)
 *   action.json        the replay record (replay.h), as the artifact holds it
 *   result.json        the recorded result
 *   lockfile           the resolve's lockfile
 *   tree/<path>        the declared input files
 *   wheels/<file>      with --with-wheels: the wheels themselves
 *
 * Everything read from a bundle is untrusted: the tree must digest to the recorded
 * tree, each wheel to its sha256 (the venv checks them against the lockfile). */
#pragma once

#include <stdbool.h>

#include "action/replay.h"
#include "cache/cas.h"

#define NB_BUNDLE_SCHEMA "nestbox.bundle/v1"

struct nb_bundle_stats {
        size_t files, wheels, bytes;
};

/* The bundle of the recorded action digest (from s, asking s->remote on a miss). */
int nb_bundle_make(struct nb_store *s, const char *digest, bool with_wheels, char **ret, size_t *ret_len,
                   struct nb_bundle_stats *stats, struct nb_error *err);

/* True when path looks like a bundle (a regular file, not a digest or target name). */
bool nb_bundle_is_file(const char *path);

/* Unpacks the bundle at path under the cache's tmp/ (*ret_tmp: its path relative to
 * the cache, for nb_bundle_cleanup) and makes its action runnable: the tree from the
 * bundle, the venv from the cache when it has it, else built from the lockfile and the
 * bundle's wheels or wheelhouse (NULL: none). Missing wheels are one NB_ERROR_INPUT
 * error naming them all. rp is resolved (nb_replay_prepare, not strict). */
int nb_bundle_open(struct nb_cache_dir *cache, const char *path, const char *wheelhouse, struct nb_replay *rp,
                   char **ret_tmp, struct nb_error *err);
void nb_bundle_cleanup(struct nb_cache_dir *cache, char *tmp);
