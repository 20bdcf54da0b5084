/* SPDX-License-Identifier: MIT */
/* Actions as JSON (nestbox.action/v1; runner/action/schema/action.schema.json): the
 * strict reader `nestbox run` and the worker use, and the writer `nestbox actions`
 * uses. The reader goes through workspace/json_read.c, as nestbox.json's does, so the
 * two files fail the same way: the field's path, the problem, a did-you-mean. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/durations.h"
#include "action/action_workspace.h"
#include "action/shard_plan.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "workspace/json_read.h"
#include "workspace/workspace.h"

#define MAX_SHARDS 100000u
#define MAX_RUN 1000000u

static const char *const action_keys[] = {
        "schema", "target", "root", "tree", "sources", "tests", "source_roots", "resolve", "python",
        "pytest_args", "env", "policy", "shard", "seed", "coverage", "run", "attempt", "shuffle", "select", NULL,
};
static const char *const resolve_keys[] = { "lockfile", "wheelhouse", "venv", NULL };
static const char *const policy_keys[] = { "timeout", "memory", "pids", "network", NULL };
static const char *const shard_keys[] = { "index", "count", "durations", NULL };

static int get_string(const struct nb_json_reader *p, const char *path, json_t *v, char **ret) {
        if (!json_is_string(v))
                return nb_jr_fail(p, path, "expected a string");
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : nb_jr_oom(p);
}

static int get_abs_path(const struct nb_json_reader *p, const char *path, json_t *v, char **ret) {
        if (!json_is_string(v))
                return nb_jr_fail(p, path, "expected an absolute path (a string starting with \"/\")");
        if (json_string_value(v)[0] != '/')
                return nb_jr_bad_value(p, path, json_string_value(v), "expected an absolute path");
        return get_string(p, path, v, ret);
}

static int get_digest(const struct nb_json_reader *p, const char *path, json_t *v, char out[NB_DIGEST_HEX_LEN + 1]) {
        if (!json_is_string(v))
                return nb_jr_fail(p, path, "expected a digest (64 lowercase hex digits)");
        if (!nb_is_digest(json_string_value(v)))
                return nb_jr_bad_value(p, path, json_string_value(v), "expected a digest (64 lowercase hex digits)");
        memcpy(out, json_string_value(v), NB_DIGEST_HEX_LEN + 1);
        return 0;
}

static int get_uint(const struct nb_json_reader *p, const char *path, json_t *v, uint64_t min, uint64_t max,
                    uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) < min ||
            (uint64_t) json_integer_value(v) > max) {
                if (max == UINT64_MAX)
                        return nb_jr_fail(p, path, "expected an integer >= %llu", (unsigned long long) min);
                return nb_jr_fail(p, path, "expected an integer from %llu to %llu", (unsigned long long) min,
                                  (unsigned long long) max);
        }
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

/* The object at key of obj, checked against known keys; NULL (0) when absent. */
static int get_object(const struct nb_json_reader *p, json_t *obj, const char *key, const char *const *known,
                      json_t **ret, char **ret_path) {
        *ret = json_object_get(obj, key);
        *ret_path = nb_jr_join(p, "", key, false);
        if (!*ret_path)
                return nb_jr_oom(p);
        if (!*ret)
                return 0;
        if (!json_is_object(*ret))
                return nb_jr_fail(p, *ret_path, "expected an object");
        return nb_jr_check_keys(p, *ret_path, *ret, known);
}

static int read_env(const struct nb_json_reader *p, json_t *v, char ***ret) {
        if (!v)
                return (*ret = calloc(1, sizeof(char *))) ? 0 : nb_jr_oom(p);
        if (!json_is_object(v))
                return nb_jr_fail(p, ".env", "expected an object of names to string values");
        _cleanup_strv_free_ char **env = calloc(json_object_size(v) + 1, sizeof(char *));
        if (!env)
                return nb_jr_oom(p);
        size_t n = 0;
        const char *name;
        json_t *value;
        json_object_foreach(v, name, value) {
                _cleanup_free_ char *path = nb_jr_join(p, ".env", name, true);
                if (!path)
                        return nb_jr_oom(p);
                if (!nb_valid_env_name(name))
                        return nb_jr_fail(p, path, "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
                if (!json_is_string(value))
                        return nb_jr_fail(p, path, "expected a string");
                if (asprintf(&env[n], "%s=%s", name, json_string_value(value)) < 0) {
                        env[n] = NULL;
                        return nb_jr_oom(p);
                }
                n++;
        }
        nb_qsort(env, n, sizeof(char *), nb_env_cmp);
        *ret = TAKE_PTR(env);
        return 0;
}

static int read_resolve(const struct nb_json_reader *p, json_t *doc, struct nb_action *a) {
        json_t *v;
        _cleanup_free_ char *path = NULL;
        int r = get_object(p, doc, "resolve", resolve_keys, &v, &path);
        if (r < 0)
                return r;
        if (!v)
                return nb_jr_missing(p, "", "resolve");
        json_t *venv = json_object_get(v, "venv");
        _cleanup_free_ char *lpath = nb_jr_join(p, path, "lockfile", false);
        _cleanup_free_ char *wpath = nb_jr_join(p, path, "wheelhouse", false);
        _cleanup_free_ char *vpath = nb_jr_join(p, path, "venv", false);
        if (!lpath || !wpath || !vpath)
                return nb_jr_oom(p);
        if (venv) {
                if (json_object_get(v, "lockfile") || json_object_get(v, "wheelhouse"))
                        return nb_jr_fail(p, path, "give either \"venv\" or \"lockfile\" and \"wheelhouse\", not both");
                return get_digest(p, vpath, venv, a->venv_given);
        }
        if (!json_object_get(v, "lockfile"))
                return nb_jr_missing(p, path, "lockfile");
        if (!json_object_get(v, "wheelhouse"))
                return nb_jr_missing(p, path, "wheelhouse");
        if ((r = get_abs_path(p, lpath, json_object_get(v, "lockfile"), &a->lockfile)) < 0)
                return r;
        return get_abs_path(p, wpath, json_object_get(v, "wheelhouse"), &a->wheelhouse);
}

static int read_policy(const struct nb_json_reader *p, json_t *doc, struct nb_action *a) {
        a->policy = (struct nb_policy) { NB_DEFAULT_TIMEOUT_MS, NB_DEFAULT_MEMORY, NB_DEFAULT_PIDS, false };
        json_t *v, *e;
        _cleanup_free_ char *path = NULL;
        int r = get_object(p, doc, "policy", policy_keys, &v, &path);
        if (r < 0 || !v)
                return r;
        static const struct {
                const char *key;
                int (*parse)(const struct nb_json_reader *p, const char *path, json_t *v, uint64_t *ret);
                size_t offset;
        } numbers[] = {
                { "timeout", nb_jr_timeout, offsetof(struct nb_policy, timeout_ms) },
                { "memory", nb_jr_memory, offsetof(struct nb_policy, memory) },
                { "pids", nb_jr_pids, offsetof(struct nb_policy, pids) },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(numbers); i++) {
                if (!(e = json_object_get(v, numbers[i].key)))
                        continue;
                _cleanup_free_ char *fp = nb_jr_join(p, path, numbers[i].key, false);
                if (!fp)
                        return nb_jr_oom(p);
                if ((r = numbers[i].parse(p, fp, e, (uint64_t *) ((char *) &a->policy + numbers[i].offset))) < 0)
                        return r;
        }
        if ((e = json_object_get(v, "network"))) {
                _cleanup_free_ char *fp = nb_jr_join(p, path, "network", false);
                if (!fp)
                        return nb_jr_oom(p);
                if ((r = nb_jr_bool(p, fp, e, &a->policy.network)) < 0)
                        return r;
                if (a->policy.network)
                        return nb_jr_fail(p, fp, "only false is supported: the sandbox has loopback only");
        }
        return 0;
}

static int read_shard(const struct nb_json_reader *p, json_t *doc, struct nb_action *a) {
        a->shard_index = a->shard_count = 1;
        json_t *v;
        _cleanup_free_ char *path = NULL;
        int r = get_object(p, doc, "shard", shard_keys, &v, &path);
        if (r < 0 || !v)
                return r;
        _cleanup_free_ char *ipath = nb_jr_join(p, path, "index", false);
        _cleanup_free_ char *cpath = nb_jr_join(p, path, "count", false);
        if (!ipath || !cpath)
                return nb_jr_oom(p);
        if (!json_object_get(v, "index"))
                return nb_jr_missing(p, path, "index");
        if (!json_object_get(v, "count"))
                return nb_jr_missing(p, path, "count");
        uint64_t index, count;
        if ((r = get_uint(p, cpath, json_object_get(v, "count"), 1, MAX_SHARDS, &count)) < 0 ||
            (r = get_uint(p, ipath, json_object_get(v, "index"), 1, count, &index)) < 0)
                return r;
        a->shard_index = (unsigned) index;
        a->shard_count = (unsigned) count;
        json_t *d = json_object_get(v, "durations");
        if (!d)
                return 0;
        /* Checked as the cache's own copy is, then kept in its canonical text. */
        _cleanup_free_ char *dpath = nb_jr_join(p, path, "durations", false);
        _cleanup_free_ char *text = NULL;
        json_auto_t *tests = NULL;
        if (!dpath)
                return nb_jr_oom(p);
        if (!json_is_object(d) || nb_durations_text(d, &text) < 0 || nb_durations_parse(text, strlen(text), &tests) < 0)
                return nb_jr_fail(p, dpath, "expected an object of test ids (classname::name) to milliseconds");
        if (json_object_size(tests) > 0)
                a->shard_durations = TAKE_PTR(text);
        return 0;
}

/* The lists: each NULL-terminated, never NULL. */
static int read_lists(const struct nb_json_reader *p, json_t *doc, struct nb_action *a) {
        static const struct {
                const char *key;
                enum nb_strv_kind kind;
                size_t offset;
        } lists[] = {
                { "sources", NB_STRV_GLOB, offsetof(struct nb_action, sources) },
                { "tests", NB_STRV_GLOB, offsetof(struct nb_action, tests) },
                { "source_roots", NB_STRV_ROOT, offsetof(struct nb_action, source_roots) },
                { "pytest_args", NB_STRV_ANY, offsetof(struct nb_action, pytest_args) },
                { "select", NB_STRV_ANY, offsetof(struct nb_action, select) },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(lists); i++) {
                char ***field = (char ***) ((char *) a + lists[i].offset);
                json_t *e = json_object_get(doc, lists[i].key);
                _cleanup_free_ char *fp = nb_jr_join(p, "", lists[i].key, false);
                if (!fp)
                        return nb_jr_oom(p);
                int r = e ? nb_jr_strv(p, fp, e, lists[i].kind, field)
                          : ((*field = calloc(1, sizeof(char *))) ? 0 : nb_jr_oom(p));
                if (r < 0)
                        return r;
        }
        if (!a->tests[0])
                return nb_jr_fail(p, ".tests", "expected at least one test file");
        return 0;
}

static int read_action(const struct nb_json_reader *p, json_t *doc, struct nb_action *a) {
        if (!json_is_object(doc))
                return nb_jr_fail(p, "", "expected a JSON object (a nestbox.action/v1)");
        int r = nb_jr_check_keys(p, "", doc, action_keys);
        if (r < 0)
                return r;
        static const char *const required[] = { "schema", "target", "tests", "resolve", "python" };
        for (size_t i = 0; i < NB_ELEMENTSOF(required); i++)
                if (!json_object_get(doc, required[i]))
                        return nb_jr_missing(p, "", required[i]);
        json_t *v = json_object_get(doc, "schema");
        if (!json_is_string(v) || strcmp(json_string_value(v), NB_ACTION_SCHEMA) != 0)
                return nb_jr_fail(p, ".schema", "expected \"%s\"", NB_ACTION_SCHEMA);
        if ((r = get_string(p, ".target", json_object_get(doc, "target"), &a->target)) < 0)
                return r;
        if (!nb_valid_name(a->target))
                return nb_jr_bad_value(p, ".target", a->target, "invalid target name (use letters, digits and . _ - / : @ +)");
        if ((v = json_object_get(doc, "tree")) && (r = get_digest(p, ".tree", v, a->tree_given)) < 0)
                return r;
        if ((v = json_object_get(doc, "root")) && (r = get_abs_path(p, ".root", v, &a->root)) < 0)
                return r;
        if (!a->root && !a->tree_given[0])
                return nb_jr_fail(p, ".root", "missing (required unless \"tree\" names an input tree in the cache)");
        if (a->root && a->tree_given[0])
                return nb_jr_fail(p, ".tree", "give either \"root\" (with the files) or \"tree\", not both");
        if ((r = read_lists(p, doc, a)) < 0 || (r = read_resolve(p, doc, a)) < 0 ||
            (r = get_abs_path(p, ".python", json_object_get(doc, "python"), &a->python)) < 0 ||
            (r = read_env(p, json_object_get(doc, "env"), &a->env)) < 0 || (r = read_policy(p, doc, a)) < 0 ||
            (r = read_shard(p, doc, a)) < 0)
                return r;
        uint64_t u;
        if ((v = json_object_get(doc, "seed"))) {
                if ((r = get_uint(p, ".seed", v, 0, UINT64_MAX, &u)) < 0)
                        return r;
                a->seed = u;
        } else
                a->seed = nb_action_run_seed(1);
        if ((v = json_object_get(doc, "coverage")) && (r = nb_jr_bool(p, ".coverage", v, &a->coverage)) < 0)
                return r;
        a->run = 1;
        if ((v = json_object_get(doc, "run"))) {
                if ((r = get_uint(p, ".run", v, 1, MAX_RUN, &u)) < 0)
                        return r;
                a->run = (unsigned) u;
        }
        a->attempt = 1;
        if ((v = json_object_get(doc, "attempt"))) {
                if ((r = get_uint(p, ".attempt", v, 1, MAX_RUN, &u)) < 0)
                        return r;
                a->attempt = (unsigned) u;
        }
        if ((v = json_object_get(doc, "shuffle")) && (r = nb_jr_bool(p, ".shuffle", v, &a->shuffle)) < 0)
                return r;
        return 0;
}

int nb_action_from_json_value(json_t *doc, const char *file, struct nb_action **ret, struct nb_error *err) {
        struct nb_json_reader p = { .file = file, .dotted = true, .err = err };
        _cleanup_action_ struct nb_action *a = calloc(1, sizeof(*a));
        if (!a)
                return nb_jr_oom(&p);
        int r = read_action(&p, doc, a);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(a);
        return 0;
}

int nb_action_from_json(const char *text, size_t len, const char *file, struct nb_action **ret,
                        struct nb_error *err) {
        json_error_t jerr;
        json_auto_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
                return nb_error_input(err, EINVAL, "%s: line %d: %s", file, jerr.line, jerr.text);
        return nb_action_from_json_value(doc, file, ret, err);
}

/* ---- writing ---- */

json_t *nb_strv_to_json(char **v) {
        json_t *a = json_array();
        for (; a && *v; v++)
                if (json_array_append_new(a, json_string(*v)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *env_json(char **env) {
        json_t *o = json_object();
        for (; o && *env; env++) {
                size_t n = strcspn(*env, "=");
                _cleanup_free_ char *name = strndup(*env, n);
                if (!name || json_object_set_new(o, name, json_string((*env)[n] ? *env + n + 1 : "")) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

int nb_action_to_json_value(const struct nb_action *a, json_t **ret) {
        *ret = NULL;
        json_auto_t *o = json_pack("{s:s, s:s, s:o, s:o, s:o, s:s, s:o, s:o, s:{s:f, s:I, s:I, s:b}, s:{s:I, s:I},"
                                   " s:I, s:b, s:I}",
                                   "schema", NB_ACTION_SCHEMA, "target", a->target,
                                   "sources", nb_strv_to_json(a->sources), "tests", nb_strv_to_json(a->tests),
                                   "source_roots", nb_strv_to_json(a->source_roots), "python", a->python,
                                   "pytest_args", nb_strv_to_json(a->pytest_args), "env", env_json(a->env),
                                   "policy", "timeout", (double) a->policy.timeout_ms / 1000.0,
                                   "memory", (json_int_t) a->policy.memory, "pids", (json_int_t) a->policy.pids,
                                   "network", a->policy.network,
                                   "shard", "index", (json_int_t) a->shard_index, "count", (json_int_t) a->shard_count,
                                   "seed", (json_int_t) a->seed, "coverage", a->coverage, "run", (json_int_t) a->run);
        if (!o)
                return -ENOMEM;
        /* What only retries and --shuffle use is written only then, so a plain
         * action reads as it always did. */
        int k = 0;
        if (a->attempt > 1)
                k |= json_object_set_new(o, "attempt", json_integer((json_int_t) a->attempt));
        if (a->shuffle)
                k |= json_object_set_new(o, "shuffle", json_true());
        if (a->select && a->select[0])
                k |= json_object_set_new(o, "select", nb_strv_to_json(a->select));
        if (a->root)
                k |= json_object_set_new(o, "root", json_string(a->root));
        else
                k |= json_object_set_new(o, "tree", json_string(a->tree_given));
        json_auto_t *durations = NULL;
        if (a->shard_durations && nb_shard_durations_json(a->shard_durations, &durations) == 0)
                k |= json_object_set(json_object_get(o, "shard"), "durations", durations);
        if (a->venv_given[0])
                k |= json_object_set_new(o, "resolve", json_pack("{s:s}", "venv", a->venv_given));
        else
                k |= json_object_set_new(o, "resolve", json_pack("{s:s, s:s}", "lockfile", a->lockfile,
                                                                 "wheelhouse", a->wheelhouse));
        if (k < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

int nb_action_to_json(const struct nb_action *a, char **ret) {
        *ret = NULL;
        json_auto_t *o = NULL;
        int r = nb_action_to_json_value(a, &o);
        if (r < 0)
                return r;
        *ret = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
        return *ret ? 0 : -ENOMEM;
}
