/* SPDX-License-Identifier: MIT */
/* nestbox.json -> actions: what `nestbox test` and `nestbox actions` run. The target's
 * globs are kept as they are; nb_action_resolve() expands them, exactly as it expands
 * an action file's paths, so both routes give the same action and the same digest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/action_workspace.h"
#include "nestbox/cleanup.h"

/* A copy of v followed by more (may be NULL). */
static int strv_concat(char **v, char **more, char ***ret) {
        size_t n = 0, m = 0;
        while (v[n])
                n++;
        while (more && more[m])
                m++;
        _cleanup_strv_free_ char **c = calloc(n + m + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n + m; i++)
                if (!(c[i] = strdup(i < n ? v[i] : more[i - n])))
                        return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static int strv_copy(char **v, char ***ret) {
        return strv_concat(v, NULL, ret);
}

/* The variables the target passes through, with the values they have now; an unset
 * one is not passed (and not part of the digest). Sorted by name. */
static int pass_env(char **names, char ***ret) {
        size_t n = 0;
        while (names[n])
                n++;
        _cleanup_strv_free_ char **env = calloc(n + 1, sizeof(char *));
        if (!env)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                const char *v = getenv(names[i]);
                if (!v)
                        continue;
                if (asprintf(&env[k], "%s=%s", names[i], v) < 0) {
                        env[k] = NULL;
                        return -ENOMEM;
                }
                k++;
        }
        nb_qsort(env, k, sizeof(char *), nb_env_cmp);
        *ret = TAKE_PTR(env);
        return 0;
}

int nb_env_cmp(const void *a, const void *b) {
        const char *x = *(const char *const *) a, *y = *(const char *const *) b;
        size_t nx = strcspn(x, "="), ny = strcspn(y, "=");
        int c = memcmp(x, y, nx < ny ? nx : ny);
        return c ? c : (nx > ny) - (nx < ny);
}

int nb_action_from_target(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_action_options *o,
                          struct nb_action **ret, struct nb_error *err) {
        _cleanup_action_ struct nb_action *a = calloc(1, sizeof(*a));
        if (!a)
                return nb_error_set(err, ENOMEM, "target \"%s\"", t->name);
        a->policy = (struct nb_policy) { o->timeout_ms ? o->timeout_ms : t->timeout_ms, o->memory ? o->memory : t->memory,
                                         t->pids, false };
        a->shard_index = o->shard_count > 1 ? o->shard_index : 1;
        a->shard_count = o->shard_count > 1 ? o->shard_count : 1;
        a->run = o->run ? o->run : 1;
        a->attempt = o->attempt ? o->attempt : 1;
        a->shuffle = o->shuffle;
        a->seed = o->seed_set ? o->seed : nb_action_run_seed(a->run);
        a->coverage = o->coverage || t->coverage;
        if (!(a->target = strdup(t->name)) || !(a->root = strdup(ws->root)) || !(a->python = strdup(ws->python)) ||
            !(a->lockfile = strdup(t->resolve->lockfile_path)) || !(a->wheelhouse = strdup(t->resolve->wheelhouse_path)) ||
            strv_copy(t->sources, &a->sources) < 0 || strv_copy(t->tests, &a->tests) < 0 ||
            strv_copy(t->source_roots, &a->source_roots) < 0 || strv_concat(t->pytest_args, o->pytest_args, &a->pytest_args) < 0 ||
            pass_env(t->env, &a->env) < 0 || strv_concat((char *[]) { NULL }, o->select, &a->select) < 0)
                return nb_error_set(err, ENOMEM, "target \"%s\"", t->name);
        *ret = TAKE_PTR(a);
        return 0;
}

unsigned nb_target_attempts(const struct nb_target *t, const struct nb_action_options *o) {
        return o->attempts ? o->attempts : t->attempts ? (unsigned) t->attempts : 1;
}
