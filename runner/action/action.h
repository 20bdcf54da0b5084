/* SPDX-License-Identifier: MIT */
/* The action (HACKING.md, "Actions"): one run of one target, holding everything that
 * decides its result. It is built from nestbox.json (action_workspace.c) or read from
 * an action file (action_json.c); both give the same value. Resolving it
 * (action_digest.c) collects the input tree and the venv plan and names it by the
 * SHA-256 of one canonical encoding, so `nestbox test` and `nestbox run` share cache
 * entries by construction. Running it (run.c) gives a struct nb_result (result.h). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cache/digest.h"
#include "nestbox/error.h"
#include "workspace/tree.h"

#define NB_ACTION_SCHEMA "nestbox.action/v1"

struct nb_policy {
        uint64_t timeout_ms;
        uint64_t memory; /* bytes */
        uint64_t pids;
        bool network;    /* always false today: the sandbox has loopback only */
};

struct nb_action {
        char *target;
        /* The declared inputs: files beneath root, or a tree already in the cache. */
        char *root;         /* absolute; NULL when tree_given */
        char **sources;     /* relative file paths, sorted, NULL-terminated, never NULL */
        char **tests;       /* the same; exactly these are handed to pytest */
        char **source_roots;
        /* The resolve: a lockfile and a wheelhouse, or a venv already in the cache. */
        char *lockfile, *wheelhouse; /* absolute; NULL when venv_given */
        char *python;
        char **pytest_args;
        char **env;         /* "NAME=value", sorted by name */
        struct nb_policy policy;
        unsigned shard_index, shard_count; /* 1-based index; count 1: no sharding */
        /* The shard plan's input (cache/durations.h): canonical nestbox.durations/v1
         * JSON, the same for every shard of one target, pinned per group
         * (action/shard_plan.h). NULL: no durations, every test split by its hash. */
        char *shard_durations;
        uint64_t seed;
        bool coverage;
        unsigned run;       /* 1-based (--runs-per-test) */
        unsigned attempt;   /* 1-based (--attempts): a retry of run's failed tests */
        bool shuffle;       /* the driver deals the tests in an order drawn from seed */
        char **select;      /* node ids a retry keeps (all when empty); never NULL */
        char tree_given[NB_DIGEST_HEX_LEN + 1]; /* "" unless the action names a tree */
        char venv_given[NB_DIGEST_HEX_LEN + 1]; /* "" unless the action names a venv */

        /* Filled by nb_action_resolve(). */
        struct {
                bool done;
                struct nb_tree tree; /* empty when tree_given */
                char tree_digest[NB_DIGEST_HEX_LEN + 1];
                struct nb_venv_plan *venv; /* NULL when venv_given */
                char venv_digest[NB_DIGEST_HEX_LEN + 1];
                char digest[NB_DIGEST_HEX_LEN + 1];
        } resolved;
};

void nb_action_free(struct nb_action *a);
static inline void nb_action_freep(struct nb_action **a) {
        nb_action_free(*a);
}
#define _cleanup_action_ __attribute__((cleanup(nb_action_freep)))

/* A 32-bit number drawn from key: stable across runs and machines. */
uint64_t nb_action_default_seed(const char *key);
/* The seed of run `run` (1-based) when none is asked for: the same for every target
 * (one warm interpreter per venv serves a whole run: PYTHONHASHSEED is fixed when an
 * interpreter starts) and the same from one invocation to the next (or nothing would
 * be a cache hit); every run number has its own, so --runs-per-test explores hash
 * orders. README "Warm interpreter". */
uint64_t nb_action_run_seed(unsigned run);

/* ---- action_json.c ---- */

/* Parses an action file. Strict: an unknown key is an error with a did-you-mean, a
 * missing required field or a wrong type names the field:
 *   "<file>: .policy.memory: expected a size like \"512M\""
 * All such errors are NB_ERROR_INPUT. file is the name messages use. */
int nb_action_from_json(const char *text, size_t len, const char *file, struct nb_action **ret,
                        struct nb_error *err);
/* The same, from an already parsed value (the worker's --action-json). */
struct json_t;
int nb_action_from_json_value(struct json_t *v, const char *file, struct nb_action **ret, struct nb_error *err);

/* A NULL-terminated vector of UTF-8 strings as a JSON array; NULL when out of memory. */
struct json_t;
struct json_t *nb_strv_to_json(char **v);

/* The action as nestbox.action/v1 JSON (one line, keys sorted), or as the object;
 * the object may share parts with others (shard_plan.h): read it, never change it. */
int nb_action_to_json(const struct nb_action *a, char **ret);
int nb_action_to_json_value(const struct nb_action *a, struct json_t **ret);

/* The digest of everything but the shard index and the durations: what the shards of
 * one run of one target share (action/shard_plan.c pins their durations under it).
 * Needs a resolved action. */
int nb_action_group_digest(const struct nb_action *a, char out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err);
/* Recomputes resolved.digest after shard_durations changed. */
int nb_action_redigest(struct nb_action *a, struct nb_error *err);

/* ---- action_digest.c ---- */

/* Expands the declared globs (or paths) into files beneath root and digests them:
 * what `nestbox actions` prints. Nothing to do for an action naming a tree. */
int nb_action_expand(struct nb_action *a, struct nb_error *err);

/* Collects the declared files (or checks the named tree is in the cache), resolves
 * the venv (without building it), and computes the digest. Needs no Python when the
 * interpreter's answers and the wheels' hashes are remembered in the cache. */
struct nb_cache_dir;
int nb_action_resolve(struct nb_action *a, struct nb_cache_dir *cache, struct nb_error *err);

/* Collects the files sources and tests name (globs or literal paths) beneath root_fd:
 * the tree of both, and each list expanded to its files. Used by both builders, so
 * the same declaration gives the same action. */
int nb_action_collect(int root_fd, char **source_globs, char **test_globs, char **source_roots,
                      struct nb_digest_memo *memo, struct nb_tree *tree, char ***ret_sources, char ***ret_tests,
                      struct nb_error *err);
