/* SPDX-License-Identifier: MIT */
/* The cache directory (HACKING.md, "Cache and artifacts"):
 *   <root>/cas/ ac/ venvs/ trees/ tmp/
 * Everything is built under tmp/ and renamed into place, so a crash leaves either the
 * old entry or the new one, never half of one. */
#pragma once

#include <stdbool.h>

#include "nestbox/error.h"

/* The file a finished venvs/<digest> holds, written last: `cache verify` calls an entry
 * without it incomplete, and a venv lookup treats it as a miss. */
#define NB_VENV_COMPLETE_MARKER ".nestbox-complete"

struct nb_digest_memo;

struct nb_cache_dir {
        char *path; /* absolute */
        int fd;     /* O_DIRECTORY of path */
        /* The digest memo of the workspace last collected (cache/digest_memo.h), loaded
         * on first use and written back by nb_cache_dir_close. */
        struct nb_digest_memo *memo;
        bool pins_pruned; /* plans/ was pruned by this process (cache/durations.c) */
};

/* Opens (creating the layout) dir, or $XDG_CACHE_HOME/nestbox, or ~/.cache/nestbox. */
int nb_cache_dir_open(struct nb_cache_dir *c, const char *dir, struct nb_error *err);
/* Writes back the digest memo, then closes. */
void nb_cache_dir_close(struct nb_cache_dir *c);

/* Creates a fresh directory tmp/<prefix>.XXXXXX; *ret_rel is its path relative to the
 * cache root ("tmp/venv.aB3xYz"). */
int nb_cache_dir_mkdtemp(struct nb_cache_dir *c, const char *prefix, char **ret_rel, struct nb_error *err);

/* Holds the directory entry rel (a venv or tree) for as long as *ret_fd stays open:
 * a shared flock that gc respects, taken after checking the entry is still in place,
 * and a touch of its mtime so least-recently-used means least recently used.
 * -ENOENT when it is gone (gc removed it meanwhile): ensure it again. */
int nb_cache_dir_hold(struct nb_cache_dir *c, const char *rel, int *ret_fd);

/* Last use, for gc: every use of an entry during one run (a hit, a venv or tree
 * held) stamps its mtime with one time, when the run opened the cache (a worker: when
 * the request began, nb_cache_use_begin), so the entries one run used tie and gc drops
 * the largest of them first; entries written later in the run are newer still.
 * nb_cache_use_touch stamps fd, or rel beneath dirfd when fd < 0, without following a
 * link; 0 or -errno. */
void nb_cache_use_begin(void);
int nb_cache_use_touch(int dirfd, const char *rel, int fd);

/* Renames the finished tmp_rel to final_rel ("venvs/<digest>"). When another process
 * published the same entry first, ours is removed and 0 returned: both succeed with
 * one result. */
int nb_cache_dir_publish(struct nb_cache_dir *c, const char *tmp_rel, const char *final_rel, struct nb_error *err);

/* Seals a just published entry (mode 0555, the directory itself, never a link's
 * target). Gone already is 0: a `cache gc` beside us may take it right after the
 * rename, and the caller's hold (nb_cache_dir_hold) then finds it gone and builds it
 * again, as for any entry gc takes. -errno otherwise. */
int nb_cache_dir_seal_published(struct nb_cache_dir *c, const char *rel);

/* Makes everything below dfd (an entry being built under tmp/) read-only for everyone:
 * directories 0555, regular files 0555 when their owner may execute them and 0444
 * otherwise, set exactly whatever the umask was. Links are skipped (chmod follows
 * them). dfd itself is left as it is: it is sealed after nb_cache_dir_publish, since
 * moving a directory rewrites its "..". -ELOOP when the tree nests directories deeper
 * than max_depth (each level holds a descriptor). */
int nb_cache_dir_seal(int dfd, unsigned max_depth);

/* Makes everything below dfd (a finished entry under tmp/) and dfd itself durable
 * before its rename. A first pass starts every file's writeback (sync_file_range).
 * Then, for up to 64 files (an input tree), an fsync of each file and directory:
 * syncfs() would also wait for every dirty byte other programs left on the
 * filesystem. For more (a venv), one syncfs(): a device flush per file costs more
 * than that. Measured on ext4 (README "Performance"): 12 files, fsync each 2.2 ms and
 * syncfs 0.8 ms on a quiet disk, 10-11 ms and 10-19 ms after 40 MB written elsewhere;
 * 362 files, fsync each 650-940 ms, syncfs 13-20 ms. */
int nb_cache_dir_sync(int dfd, unsigned max_depth);
