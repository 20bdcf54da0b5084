/* SPDX-License-Identifier: MIT */
/* One directory's entries for the glob walk (glob.c): read whole and sorted by name,
 * without __pycache__, .git and .nestbox. Walked in that order, each directory's
 * matches (and its subdirectories' right where their names sort) come out in tree
 * order, so the usual globs need no sort of the collected paths afterwards: at 10,000
 * files that sort was a sixth of the digest of an unchanged workspace.
 *
 * With a digest memo, a directory's listing is remembered under its identity (dev,
 * inode, size, mtime, ctime): any entry made, removed or renamed in a directory moves
 * its mtime and ctime, and no one can set a ctime back, so an unchanged identity is an
 * unchanged set of names (git's untracked cache rests on the same rule). Only names:
 * every entry a glob wants is still stat'ed or opened no-follow on its own, so a type
 * a listing got wrong is caught there. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cache/digest_memo.h"

struct nb_listing_entry {
        size_t name; /* offset into names */
        unsigned char type; /* d_type; DT_UNKNOWN where the filesystem does not say */
};

struct nb_listing {
        struct nb_listing_entry *v;
        size_t n, cap;
        char *names;
        size_t len, names_cap;
};

/* What listings share while one tree is collected. */
struct nb_lister {
        struct nb_digest_memo *memo; /* may be NULL */
        char *dents;  /* getdents64's buffer, made on first use */
        dev_t fs_dev; /* the device last asked about, and its answer */
        bool fs_asked, fs_ok;
};

static inline const char *nb_listing_name(const struct nb_listing *l, size_t i) {
        return l->names + l->v[i].name;
}

/* Lists directory dfd into l (empty), sorted: remembered, or read through dfd itself
 * (from its start) or, when dfd is borrowed (its offset not ours to move), through a
 * descriptor of its own. */
int nb_list_dir(struct nb_lister *c, int dfd, bool borrowed, struct nb_listing *l);

void nb_listing_done(struct nb_listing *l);
void nb_lister_done(struct nb_lister *c);
