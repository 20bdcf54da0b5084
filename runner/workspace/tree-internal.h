/* SPDX-License-Identifier: MIT */
/* What tree.c shares with glob.c, which collects the trees it digests and copies. */
#pragma once

#include "workspace/tree.h"

/* Deeper than this is a loop or a mistake, and each level holds a descriptor. */
#define NB_TREE_MAX_DEPTH 256

/* Tree order (tree.h): byte-wise with "/" below every other byte (and the end below
 * "/"), so a directory's files sort together and right where its name sorts. */
int nb_tree_path_cmp(const char *a, const char *b);

/* rel + "/" + name, or name when rel is ""; NULL on ENOMEM. */
char *nb_tree_join(const char *rel, const char *name);
