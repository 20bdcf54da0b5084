/* SPDX-License-Identifier: MIT */
/* A target's declared input tree: the files its globs name, their Merkle digest, and
 * their read-only copy in the cache (<cache>/trees/<digest>/, mounted at /work).
 *
 * Globs are relative to the workspace root, one path component at a time:
 *   *  ?  [...]   match within one component (as fnmatch(3); "*" never crosses "/",
 *                 and it does match names starting with ".")
 *   **            as a whole component: zero or more directories; a trailing "**"
 *                 matches every file at any depth below its directory
 * Only regular files are collected; a directory matched by the last component is not
 * a file and contributes nothing. While expanding a wildcard, __pycache__, .git and
 * .nestbox are skipped (a glob naming them literally still reaches them).
 *
 * Symlinks are never followed: a symlink a glob matches as a file, or names literally
 * as a directory on its way, is an error naming it; a symlinked directory met while
 * expanding "*" or "**" is not descended into. So nothing outside the workspace can
 * enter a tree, whatever the links point at; a file wanted through a link must be
 * declared at its real path. All opens go through nb_open_beneath(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache_dir.h"
#include "cache/digest.h"
#include "cache/digest_memo.h"
#include "nestbox/error.h"
#include "workspace/workspace.h"

struct nb_tree_file {
        char *path; /* relative to the workspace root, "/"-separated, clean */
        uint64_t size;
        bool exec; /* the owner's execute bit */
        char digest[NB_DIGEST_HEX_LEN + 1]; /* sha256 of the content */
};

/* files are unique and in tree order: compared byte-wise with "/" below every other
 * byte, so each directory's files are contiguous and its entries sorted by name. */
struct nb_tree {
        struct nb_tree_file *files;
        size_t n_files;
};

#define NB_TREE_INIT { NULL, 0 }

/* Expands globs (NULL-terminated) beneath root_fd and hashes every match. A glob that
 * matches no file is an error naming it. source_roots (NULL-terminated, may be NULL)
 * must each be a directory beneath root_fd. memo (may be NULL; cache/digest_memo.h,
 * for this root_fd) answers for files whose identity it knows and learns the rest. */
int nb_tree_collect(int root_fd, const char *const *globs, const char *const *source_roots,
                    struct nb_digest_memo *memo, struct nb_tree *ret, struct nb_error *err);

/* The union of a and b (each in tree order) into *ret, taking over their files: a
 * path in both is kept once. a and b are left empty. */
int nb_tree_merge(struct nb_tree *a, struct nb_tree *b, struct nb_tree *ret);

/* The Merkle digest: each directory hashes its entries in tree order (type, name, exec
 * bit, content digest or child directory digest); the root directory's digest is the
 * tree's. Depends on nothing but the declared paths, contents and exec bits. Exactly,
 * with str(s) = u64le(len(s)) + s:
 *   dir  = sha256(str("nestbox-tree-v1") + entry...)
 *   file entry = str("file") + str(name) + u64le(exec) + str(hex sha256 of content)
 *   dir entry  = str("dir") + str(name) + u64le(0) + str(hex digest of the child dir)
 * -EINVAL when t->files is not unique and in tree order. */
int nb_tree_digest(const struct nb_tree *t, char out[NB_DIGEST_HEX_LEN + 1]);

/* Copies the declared files from root_fd into <cache>/trees/<digest>/ unless that
 * exists already; *ret_path is its absolute path. Files are 0444 (0555 when exec),
 * directories 0555. A file whose content no longer matches its collected digest is an
 * error. The entry is built under tmp/ and renamed into place: a reader sees the whole
 * tree or none. */
int nb_tree_materialize(struct nb_cache_dir *cache, const struct nb_tree *t, int root_fd, char **ret_path,
                        struct nb_error *err);
/* The same, for a tree whose digest (nb_tree_digest) the caller has already. */
int nb_tree_materialize_as(struct nb_cache_dir *cache, const struct nb_tree *t, const char *digest, int root_fd,
                           char **ret_path, struct nb_error *err);

/* Frees the files and resets t to empty; usable as _cleanup_(nb_tree_clear). */
void nb_tree_clear(struct nb_tree *t);
