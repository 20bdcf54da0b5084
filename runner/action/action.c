/* SPDX-License-Identifier: MIT */
/* The action's life: built (action_workspace.c, action_json.c), collected and resolved
 * here, then digested. The digest is SHA-256 of one canonical encoding of the resolved
 * action, with str(s) = u64le(len(s)) + s and strv(v) = u64le(n) + str(v[i])...:
 *   str("nestbox-action-3") str(version) str(support digest) strv(seccomp deny list) str(default filter BPF)
 *   str(target) str(tree digest) strv(sources) strv(tests) strv(source_roots)
 *   str(venv digest) str(interpreter realpath) u64(size) u64(mtime ns)
 *   strv(pytest_args) strv(env "NAME=value", sorted)
 *   u64(timeout ms) u64(memory) u64(pids) u64(network)
 *   u64(shard index) u64(shard count) u64(seed) u64(coverage) u64(run)
 *   u64(attempt) u64(shuffle) strv(select)
 *   str(shard durations, "" when none) str(shard plan schema, "" when no durations)
 * root is not in it (the files' contents are), so a workspace moved or cloned
 * elsewhere keeps its cache entries. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action/action.h"
#include "action/shard_plan.h"
#include "action/timings.h"
#include "cache/cache_dir.h"
#include "cache/cas.h"
#include "cache/digest_memo.h"
#include "cache/digest_watch.h"
#include "nestbox/cleanup.h"
#include "nestbox/sandbox.h"
#include "python/support.h"
#include "python/venv.h"

#define ACTION_FORMAT "nestbox-action-3" /* 3: shard durations */

void nb_action_free(struct nb_action *a) {
        if (!a)
                return;
        free(a->target);
        free(a->root);
        nb_strv_free(a->sources);
        nb_strv_free(a->tests);
        nb_strv_free(a->source_roots);
        free(a->lockfile);
        free(a->wheelhouse);
        free(a->python);
        nb_strv_free(a->pytest_args);
        nb_strv_free(a->env);
        free(a->shard_durations);
        nb_strv_free(a->select);
        nb_tree_clear(&a->resolved.tree);
        nb_venv_plan_free(a->resolved.venv);
        free(a);
}

uint64_t nb_action_default_seed(const char *key) {
        char hex[NB_DIGEST_HEX_LEN + 1];
        nb_sha256_hex(key, strlen(key), hex);
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v * 16 + (uint64_t) (hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
        return v;
}

uint64_t nb_action_run_seed(unsigned run) {
        if (run <= 1)
                return nb_action_default_seed("nestbox-seed");
        char key[48];
        snprintf(key, sizeof(key), "nestbox-seed#run%u", run);
        return nb_action_default_seed(key);
}

static int tree_paths(const struct nb_tree *t, char ***ret) {
        _cleanup_strv_free_ char **v = calloc(t->n_files + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_files; i++)
                if (!(v[i] = strdup(t->files[i].path)))
                        return -ENOMEM;
        *ret = TAKE_PTR(v);
        return 0;
}

int nb_action_collect(int root_fd, char **source_globs, char **test_globs, char **source_roots,
                      struct nb_digest_memo *memo, struct nb_tree *tree, char ***ret_sources, char ***ret_tests,
                      struct nb_error *err) {
        _cleanup_(nb_tree_clear) struct nb_tree s = NB_TREE_INIT, t = NB_TREE_INIT;
        int r = nb_tree_collect(root_fd, (const char *const *) source_globs, (const char *const *) source_roots, memo,
                                &s, err);
        if (r < 0 || (r = nb_tree_collect(root_fd, (const char *const *) test_globs, NULL, memo, &t, err)) < 0)
                return nb_error_classify(err, nb_error_class_of_path(r), r);
        _cleanup_strv_free_ char **sources = NULL, **tests = NULL;
        if (tree_paths(&s, &sources) < 0 || tree_paths(&t, &tests) < 0 || nb_tree_merge(&s, &t, tree) < 0)
                return nb_error_set(err, ENOMEM, "declared files");
        *ret_sources = TAKE_PTR(sources);
        *ret_tests = TAKE_PTR(tests);
        return 0;
}

/* The cache's digest memo for the workspace at root_fd, (re)loaded when it is another's;
 * NULL without a cache, or when it cannot be had (the files are then only read). */
static struct nb_digest_memo *memo_for(struct nb_cache_dir *cache, int root_fd) {
        if (!cache)
                return NULL;
        if (!nb_digest_memo_is_for(cache->memo, root_fd)) {
                nb_digest_memo_closep(&cache->memo);
                struct nb_store s = { .dir = cache };
                (void) nb_digest_memo_open(&s, root_fd, &cache->memo);
        }
        return cache->memo;
}

/* In `nestbox worker`: the tree collected for an earlier request, when nothing it read
 * has changed since (cache/digest_watch.h); 1 then. The source roots are checked again. */
static int reuse_watched(struct nb_action *a, int root_fd, struct nb_error *err) {
        _cleanup_strv_free_ char **sources = NULL, **tests = NULL;
        _cleanup_(nb_tree_clear) struct nb_tree tree = NB_TREE_INIT, none = NB_TREE_INIT;
        char digest[NB_DIGEST_HEX_LEN + 1];
        int r = nb_digest_watch_reuse(root_fd, a->sources, a->tests, &tree, &sources, &tests, digest);
        if (r <= 0)
                return r < 0 ? nb_error_set(err, -r, "declared files") : 0;
        r = nb_tree_collect(root_fd, (const char *const[]) { NULL }, (const char *const *) a->source_roots, NULL,
                            &none, err);
        if (r < 0)
                return nb_error_classify(err, nb_error_class_of_path(r), r);
        nb_strv_free(a->sources);
        nb_strv_free(a->tests);
        a->sources = TAKE_PTR(sources);
        a->tests = TAKE_PTR(tests);
        a->resolved.tree = tree;
        tree = (struct nb_tree) NB_TREE_INIT;
        memcpy(a->resolved.tree_digest, digest, sizeof(digest));
        return 1;
}

static int expand(struct nb_action *a, struct nb_cache_dir *cache, struct nb_error *err) {
        if (a->tree_given[0] || a->resolved.tree_digest[0])
                return 0;
        _cleanup_close_ int root_fd = open(a->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0) {
                int e = errno;
                return nb_error_classify(err, nb_error_class_of_path(e), nb_error_set(err, e, "root %s", a->root));
        }
        int r = reuse_watched(a, root_fd, err);
        if (r != 0)
                return r < 0 ? r : 0;
        nb_digest_watch_begin(root_fd, a->sources, a->tests);
        char **sources = NULL, **tests = NULL;
        struct nb_digest_memo *memo = memo_for(cache, root_fd);
        uint64_t looked_up, known, looked_up_after, known_after;
        nb_digest_memo_stats(memo, &looked_up, &known);
        r = nb_action_collect(root_fd, a->sources, a->tests, a->source_roots, memo, &a->resolved.tree, &sources, &tests,
                              err);
        nb_digest_memo_stats(memo, &looked_up_after, &known_after);
        nb_digest_memo_flush(memo); /* what it learnt, before this process can end */
        nb_timing_files(known_after - known, (looked_up_after - looked_up) - (known_after - known));
        if (r < 0) {
                nb_digest_watch_end(NULL, NULL, NULL, NULL);
                return r;
        }
        nb_strv_free(a->sources);
        nb_strv_free(a->tests);
        a->sources = sources;
        a->tests = tests;
        if ((r = nb_tree_digest(&a->resolved.tree, a->resolved.tree_digest)) < 0) {
                nb_digest_watch_end(NULL, NULL, NULL, NULL);
                return nb_error_set(err, -r, "digest of the declared files");
        }
        nb_digest_watch_end(&a->resolved.tree, a->sources, a->tests, a->resolved.tree_digest);
        return 0;
}

int nb_action_expand(struct nb_action *a, struct nb_error *err) {
        return expand(a, NULL, err);
}

static int collect_inputs(struct nb_action *a, struct nb_cache_dir *cache, struct nb_error *err) {
        if (!a->tree_given[0])
                return expand(a, cache, err);
        _cleanup_free_ char *rel = NULL;
        if (asprintf(&rel, "trees/%s", a->tree_given) < 0)
                return nb_error_set(err, ENOMEM, "tree");
        struct stat st;
        if (fstatat(cache->fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                return nb_error_input(err, ENOENT, "tree %s is not in the cache %s", a->tree_given, cache->path);
        memcpy(a->resolved.tree_digest, a->tree_given, sizeof(a->tree_given));
        return 0;
}

static int resolve_venv(struct nb_action *a, struct nb_cache_dir *cache, struct nb_error *err) {
        if (a->venv_given[0]) {
                _cleanup_free_ char *marker = NULL;
                if (asprintf(&marker, "venvs/%s/.nestbox-complete", a->venv_given) < 0)
                        return nb_error_set(err, ENOMEM, "venv");
                struct stat st;
                if (fstatat(cache->fd, marker, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        return nb_error_input(err, ENOENT, "venv %s is not in the cache %s", a->venv_given, cache->path);
                memcpy(a->resolved.venv_digest, a->venv_given, sizeof(a->venv_given));
                return 0;
        }
        int r = nb_venv_resolve(cache, a->python, a->lockfile, a->wheelhouse, &a->resolved.venv, err);
        if (r < 0)
                return r;
        memcpy(a->resolved.venv_digest, nb_venv_plan_digest(a->resolved.venv), NB_DIGEST_HEX_LEN + 1);
        return 0;
}

static void hash_strv(struct nb_hasher *h, char **v) {
        size_t n = 0;
        while (v[n])
                n++;
        nb_hasher_update_u64(h, n);
        for (size_t i = 0; i < n; i++)
                nb_hasher_update_str(h, v[i]);
}

/* The interpreter from stat alone: a hit must not run Python. A replaced interpreter
 * changes its mtime. */
static int hash_interpreter(struct nb_hasher *h, const char *python, struct nb_error *err) {
        _cleanup_free_ char *real = realpath(python, NULL);
        struct stat st;
        if (!real || stat(real, &st) < 0) {
                int e = errno;
                return nb_error_classify(err, nb_error_class_of_path(e), nb_error_set(err, e, "python %s", python));
        }
        int r = nb_python_check_system(python, real, err);
        if (r < 0)
                return r;
        nb_hasher_update_str(h, real);
        nb_hasher_update_u64(h, (uint64_t) st.st_size);
        nb_hasher_update_u64(h, (uint64_t) st.st_mtim.tv_sec * 1000000000ull + (uint64_t) st.st_mtim.tv_nsec);
        return 0;
}

/* group: the shards' common digest (index 0, no durations) into out. */
static int digest_into(const struct nb_action *a, bool group, char out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err) {
        _cleanup_(nb_hasher_freep) struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return nb_error_set(err, ENOMEM, "action digest");
        nb_hasher_update_str(h, ACTION_FORMAT);
        nb_hasher_update_str(h, NESTBOX_VERSION);
        char support[NB_DIGEST_HEX_LEN + 1];
        nb_support_digest(support);
        nb_hasher_update_str(h, support);
        size_t n;
        const struct nb_denied_syscall *deny = nb_seccomp_deny_list(&n);
        nb_hasher_update_u64(h, n);
        for (size_t i = 0; i < n; i++)
                nb_hasher_update_str(h, deny[i].name);
        const void *bpf = NULL;
        size_t bpf_len = 0;
        (void) nb_seccomp_default_filter(&bpf, &bpf_len);
        nb_hasher_update_u64(h, bpf_len);
        if (bpf_len)
                nb_hasher_update(h, bpf, bpf_len);

        nb_hasher_update_str(h, a->target);
        nb_hasher_update_str(h, a->resolved.tree_digest);
        hash_strv(h, a->sources);
        hash_strv(h, a->tests);
        hash_strv(h, a->source_roots);
        nb_hasher_update_str(h, a->resolved.venv_digest);
        int r = hash_interpreter(h, a->python, err);
        if (r < 0)
                return r;
        hash_strv(h, a->pytest_args);
        hash_strv(h, a->env);
        nb_hasher_update_u64(h, a->policy.timeout_ms);
        nb_hasher_update_u64(h, a->policy.memory);
        nb_hasher_update_u64(h, a->policy.pids);
        nb_hasher_update_u64(h, a->policy.network);
        nb_hasher_update_u64(h, group ? 0 : a->shard_index);
        nb_hasher_update_u64(h, a->shard_count);
        nb_hasher_update_u64(h, a->seed);
        nb_hasher_update_u64(h, a->coverage);
        nb_hasher_update_u64(h, a->run);
        nb_hasher_update_u64(h, a->attempt);
        nb_hasher_update_u64(h, a->shuffle);
        hash_strv(h, a->select);
        nb_hasher_update_str(h, group || !a->shard_durations ? "" : a->shard_durations);
        /* The split is made on the host from the durations (action/shard_plan.h); the
         * plan's schema stands for the planner's rule, so a new rule is a new digest. */
        nb_hasher_update_str(h, group || !a->shard_durations ? "" : NB_SHARD_PLAN_SCHEMA);
        nb_hasher_finish(TAKE_PTR(h), out);
        return 0;
}

static int digest(struct nb_action *a, struct nb_error *err) {
        return digest_into(a, false, a->resolved.digest, err);
}

int nb_action_group_digest(const struct nb_action *a, char out[NB_DIGEST_HEX_LEN + 1], struct nb_error *err) {
        if (!a->resolved.done)
                return nb_error_setx(err, EINVAL, "target \"%s\": not resolved", a->target);
        return digest_into(a, true, out, err);
}

int nb_action_redigest(struct nb_action *a, struct nb_error *err) {
        if (!a->resolved.done)
                return nb_error_setx(err, EINVAL, "target \"%s\": not resolved", a->target);
        return digest(a, err);
}

int nb_action_resolve(struct nb_action *a, struct nb_cache_dir *cache, struct nb_error *err) {
        if (a->resolved.done)
                return 0;
        uint64_t t0 = nb_timing_now();
        int r = collect_inputs(a, cache, err);
        nb_timing_add(NB_PHASE_DIGEST, t0);
        t0 = nb_timing_now();
        if (r >= 0)
                r = resolve_venv(a, cache, err);
        nb_timing_add(NB_PHASE_VENV_RESOLVE, t0);
        if (r < 0 || (r = digest(a, err)) < 0)
                return nb_error_wrap(err, r, "target \"%s\"", a->target);
        a->resolved.done = true;
        return 0;
}
