/* SPDX-License-Identifier: MIT */
/* The workspace file: nestbox.json at a workspace root (schema: nestbox.schema.json).
 *
 * Loading is strict so that typos surface at once: unknown keys, wrong types, a
 * resolve that does not exist, and paths or globs that are absolute or contain ".."
 * are errors. Every message is one line naming the file, the JSON path and the
 * problem, e.g.
 *   nestbox.json: targets."project1/tests".timeout: expected a positive number */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nestbox/error.h"

#define NB_WORKSPACE_FILE "nestbox.json"

#define NB_DEFAULT_PYTHON "/usr/bin/python3"
#define NB_DEFAULT_TIMEOUT_MS (300u * 1000u)
#define NB_DEFAULT_MEMORY (2ull << 30)
#define NB_DEFAULT_PIDS 1024u
/* A target's "env" names at most this many host variables. */
#define NB_ENV_NAMES_MAX 64u

struct nb_resolve {
        char *name;
        char *lockfile;        /* relative to the workspace root, as written */
        char *wheelhouse;      /* relative to the workspace root, as written */
        char *lockfile_path;   /* <root>/<lockfile> */
        char *wheelhouse_path; /* <root>/<wheelhouse> */
};

struct nb_target {
        char *name;
        /* NULL-terminated vectors, never NULL themselves (empty when not given). */
        char **sources;      /* globs relative to the workspace root */
        char **tests;        /* globs relative to the workspace root, at least one */
        char **source_roots; /* directories relative to the root; "." is the root */
        char **pytest_args;
        char **env;          /* names of host variables passed through */
        const struct nb_resolve *resolve; /* points into nb_workspace.resolves */
        uint64_t timeout_ms;
        uint64_t memory; /* bytes */
        uint64_t pids;
        uint64_t attempts; /* how often a failed run is tried in all; 1: no retry */
        bool coverage;
        unsigned shards; /* work items its tests are split over; 1: none */
};

#define NB_MAX_SHARDS_PER_TARGET 1000

struct nb_workspace {
        char *root;  /* absolute path of the workspace root ("." when parsed from memory) */
        int root_fd; /* O_DIRECTORY descriptor of root; -1 when parsed from memory */
        char *file;  /* the name messages use, "nestbox.json" */
        char *python;
        char *remote_cache; /* the shared remote cache's URL (--remote-cache wins), or NULL */
        struct nb_resolve *resolves; /* sorted by name */
        size_t n_resolves;
        struct nb_target *targets; /* sorted by name */
        size_t n_targets;
};

/* Opens root (a directory) and loads root/nestbox.json. */
int nb_workspace_load(const char *root, struct nb_workspace **ret, struct nb_error *err);

/* Parses a workspace file held in memory. file is the name used in messages; root
 * (may be NULL for ".") is only used to build the *_path fields. root_fd is -1. */
int nb_workspace_parse(const char *json, size_t len, const char *file, const char *root,
                       struct nb_workspace **ret, struct nb_error *err);

/* NULL when there is no such target / resolve. */
const struct nb_target *nb_workspace_target(const struct nb_workspace *ws, const char *name);
const struct nb_resolve *nb_workspace_resolve(const struct nb_workspace *ws, const char *name);

void nb_workspace_free(struct nb_workspace *ws);
void nb_workspace_freep(struct nb_workspace **ws);
