/* SPDX-License-Identifier: MIT */
/* The worker's watched digests: `nestbox worker` keeps, per set of globs under a
 * workspace root, the declared tree it last collected, and an inotify watch on every
 * directory that collection read (each directory the glob walk looked up a name in or
 * listed, and each file with more than one link: a write through another link is told
 * only to the file). A request whose globs and root are those of a kept tree takes it
 * as it is, without a stat, when no event came on any of its watches since the tree
 * was collected; anything else collects afresh (the memo's stat path) and keeps that.
 *
 * Correct by construction, not by timing:
 *  - A request's process is forked from the worker, which reads every queued event
 *    just before the fork: a change the build tool finished before sending the request
 *    was queued by the kernel during its write, so it is seen.
 *  - The request's process adds each watch before it reads the directory, on the
 *    worker's own inotify instance (shared across the fork), and reports the tree with
 *    the event count as it was at the fork. The worker keeps it only when no event came
 *    on any of those watches since then (an event on a watch it has not heard of yet
 *    counts too): a change during the collection is never hidden.
 *  - Watched: IN_MODIFY, IN_ATTRIB (a mode), IN_CLOSE_WRITE, IN_CREATE, IN_DELETE,
 *    IN_MOVED_FROM/TO (a rename, a replaced directory, a symlink swapped in),
 *    IN_DELETE_SELF, IN_MOVE_SELF; IN_IGNORED (a watch gone) and IN_UNMOUNT come
 *    anyway. A root replaced (another device or inode) is another key.
 *  - IN_Q_OVERFLOW, a watch that cannot be added for any reason but the limit, or a
 *    full table: everything is forgotten (a new inotify instance, no tree kept).
 *  - fs.inotify.max_user_watches reached: that tree is not kept (the next request
 *    stats again); said once.
 *  - Only on filesystems whose every change reaches inotify (ext4, xfs, btrfs, tmpfs):
 *    elsewhere (network, FUSE, overlayfs) the request stats.
 * Blind spot, as for every inotify watcher (Bazel's --watchfs, watchman): a write
 * through a shared writable mmap sends no event. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cache/digest.h"

struct nb_digest_watch;
struct nb_tree;

/* The worker's side. Starts watching for this process and those it forks; NULL in
 * *ret (and a reason in *note, static) when inotify cannot be had: requests stat. */
int nb_digest_watch_start(struct nb_digest_watch **ret, const char **note);
void nb_digest_watch_stop(struct nb_digest_watch *w);

/* Just before forking a request's process: reads the queued events and makes the
 * report the process writes to. Returns its fd (the worker keeps it for
 * nb_digest_watch_done), or -1 when the request will stat. */
int nb_digest_watch_fork(struct nb_digest_watch *w);

struct nb_digest_watch_report {
        unsigned reused;   /* trees taken without a stat */
        unsigned kept;     /* trees collected and now kept */
        unsigned stated;   /* trees collected and not kept (changed meanwhile, unwatchable) */
        const char *note;  /* a line to say once (static), or NULL */
};

/* After the request's process ended: reads its report (then closes report_fd) and the
 * events so far; keeps what is still true. */
void nb_digest_watch_done(struct nb_digest_watch *w, int report_fd, struct nb_digest_watch_report *rep);

/* A request's side (action.c, glob.c); each does nothing outside a request's process.
 *
 * The tree of these globs under root_fd as kept, unchanged: 1 and the collection's
 * results filled (as nb_action_collect gives them, and the tree's digest), 0 when it
 * must be collected, -ENOMEM. */
int nb_digest_watch_reuse(int root_fd, char **source_globs, char **test_globs, struct nb_tree *tree, char ***sources,
                          char ***tests, char digest[NB_DIGEST_HEX_LEN + 1]);
/* Around a collection of these globs: what the walk reads is watched from here on. */
void nb_digest_watch_begin(int root_fd, char **source_globs, char **test_globs);
/* The walk is about to look a name up in, or list, directory dfd (at rel from the
 * root, "" for the root itself). */
void nb_digest_watch_dir(int dfd, const char *rel);
/* The walk matched name in dfd, a regular file with more than one link. */
void nb_digest_watch_file(int dfd, const char *name);
/* The collection's results (tree NULL: it failed): reported to the worker. */
void nb_digest_watch_end(const struct nb_tree *tree, char **sources, char **tests,
                         const char digest[NB_DIGEST_HEX_LEN + 1]);
