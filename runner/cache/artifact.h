/* SPDX-License-Identifier: MIT */
/* One artifact per run: a tar.zst (libarchive's tar in one zstd frame that names its
 * size) holding junit.xml, log, coverage.lcov, coverage.xml, coverage.data,
 * undeclared/..., result.json.
 * Deterministic: entries sorted by name, owner 0:0, mode 0644, mtime 0, no pax
 * extended headers that carry times; the same files give the same bytes. */
#pragma once

#include <stddef.h>

#include "nestbox/error.h"

struct nb_artifact_entry {
        char *name; /* relative, "/"-separated, no "..", no leading "/" */
        char *data;
        size_t len;
};

struct nb_artifact {
        struct nb_artifact_entry *entries;
        size_t n, cap;
};

#define NB_ARTIFACT_MAX_ENTRY (256u * 1024u * 1024u) /* bytes one entry may hold */
#define NB_ARTIFACT_MAX_TOTAL (1024u * 1024u * 1024u)
#define NB_ARTIFACT_MAX_ENTRIES 20000u /* entries one artifact may hold */

/* Adds a copy of data under name (replacing an entry of that name). */
int nb_artifact_add(struct nb_artifact *a, const char *name, const void *data, size_t len);

/* Adds every regular file under dir_fd (recursively) with names prefixed by prefix
 * ("undeclared/"), reading through nb_open_beneath: links and special files are
 * skipped, each file is capped at max_file bytes, the sum of the files at
 * max_total - *total (*total grows by what is added; -EFBIG) and their number at
 * max_files (-EMFILE). Linear in the files: names from one walk are unique, so no
 * entry is searched for, and each file costs its own size. */
int nb_artifact_add_tree(struct nb_artifact *a, int dir_fd, const char *prefix, size_t max_file, size_t max_total,
                         size_t *total, size_t max_files, struct nb_error *err);

const struct nb_artifact_entry *nb_artifact_find(const struct nb_artifact *a, const char *name);

/* Serializes to tar.zst bytes. */
int nb_artifact_pack(const struct nb_artifact *a, char **ret, size_t *ret_len, struct nb_error *err);

/* Parses tar.zst bytes (untrusted: names are checked, sizes and the number of entries
 * capped, duplicates refused, in O(n log n)). Entries whose name starts with
 * skip_prefix (NULL: none) are checked and counted but not kept: a cache hit that
 * only prints a summary does not load 100k undeclared outputs. */
int nb_artifact_unpack(const char *data, size_t len, const char *skip_prefix, struct nb_artifact *ret,
                       struct nb_error *err);

/* nb_artifact_unpack() keeping only the entries named in keep (NULL-terminated):
 * every other one is checked and counted, and costs no memory, however large. */
int nb_artifact_unpack_only(const char *data, size_t len, const char *const *keep, struct nb_artifact *ret,
                            struct nb_error *err);

/* Writes every entry beneath dir_fd (creating directories with nb_mkdir_p_beneath,
 * files with nb_write_file_atomic). */
int nb_artifact_extract(const struct nb_artifact *a, int dir_fd, struct nb_error *err);

void nb_artifact_done(struct nb_artifact *a);
