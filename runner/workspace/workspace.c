/* SPDX-License-Identifier: MIT */
/* Loads nestbox.json (see workspace.h and nestbox.schema.json). The parser walks the
 * JSON with the path it is at ("targets.\"p\".timeout") so every message can say
 * exactly where the problem is; the first problem ends the load. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "workspace/json_read.h"
#include "workspace/target_folder.h"
#include "workspace/workspace.h"

/* A workspace file is a few kilobytes; anything near this is not one. */
#define MAX_WORKSPACE_FILE (16u << 20)

static int parse_rel_path(const struct nb_json_reader *p, const char *path, json_t *v, char **rel, char **abs) {
        if (!json_is_string(v))
                return nb_jr_fail(p, path, "expected a string");
        const char *s = json_string_value(v);
        const char *problem = nb_check_relative_path(s, false);
        if (problem)
                return nb_jr_bad_value(p, path, s, problem);
        *rel = strdup(s);
        if (!*rel || asprintf(abs, "%s/%s", p->root, s) < 0) {
                *abs = NULL;
                return nb_jr_oom(p);
        }
        return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static const char *const resolve_keys[] = { "lockfile", "wheelhouse", NULL };

static int parse_resolve(const struct nb_json_reader *p, const char *path, json_t *v, struct nb_resolve *r) {
        if (!json_is_object(v))
                return nb_jr_fail(p, path, "expected an object");
        int ret = nb_jr_check_keys(p, path, v, resolve_keys);
        if (ret < 0)
                return ret;
        json_t *lock = json_object_get(v, "lockfile"), *wheels = json_object_get(v, "wheelhouse");
        if (!lock)
                return nb_jr_missing(p, path, "lockfile");
        if (!wheels)
                return nb_jr_missing(p, path, "wheelhouse");
        _cleanup_free_ char *lpath = nb_jr_join(p, path, "lockfile", false);
        _cleanup_free_ char *wpath = nb_jr_join(p, path, "wheelhouse", false);
        if (!lpath || !wpath)
                return nb_jr_oom(p);
        ret = parse_rel_path(p, lpath, lock, &r->lockfile, &r->lockfile_path);
        if (ret < 0)
                return ret;
        return parse_rel_path(p, wpath, wheels, &r->wheelhouse, &r->wheelhouse_path);
}

static int no_such_resolve(const struct nb_json_reader *p, const char *path, const struct nb_workspace *ws, const char *name) {
        _cleanup_free_ char *q = nb_quote(name);
        _cleanup_free_ char *known = strdup("");
        if (!q || !known)
                return nb_jr_oom(p);
        for (size_t i = 0; i < ws->n_resolves; i++) {
                char *next = NULL;
                if (asprintf(&next, "%s%s\"%s\"", known, i ? ", " : "", ws->resolves[i].name) < 0)
                        return nb_jr_oom(p);
                free(known);
                known = next;
        }
        return nb_jr_fail(p, path, "no resolve named %s (resolves: %s)", q, ws->n_resolves ? known : "none");
}

/* Each name in a target's "env" hands the test one host value, and the workspace is
 * not trusted: a list long enough to be "the whole environment" (a copy of `env`'s
 * output, every CI variable) would pass the invoker's secrets wholesale. */
static int check_env_names(const struct nb_json_reader *p, const char *path, char **names) {
        size_t n = 0;
        while (names[n])
                n++;
        if (n <= NB_ENV_NAMES_MAX)
                return 0;
        _cleanup_free_ char *fp = nb_jr_join(p, path, "env", false);
        if (!fp)
                return nb_jr_oom(p);
        return nb_jr_fail(p, fp, "%zu names; at most %u host variables may be passed (each hands the test a host "
                          "value: name only what it needs)", n, NB_ENV_NAMES_MAX);
}

static const char *const target_keys[] = {
        "sources", "tests", "source_roots", "resolve", "timeout", "pytest_args",
        "env", "coverage", "memory", "pids", "shards", "attempts", NULL,
};

static int parse_target(const struct nb_json_reader *p, const char *path, json_t *v, const struct nb_workspace *ws,
                        struct nb_target *t) {
        t->timeout_ms = NB_DEFAULT_TIMEOUT_MS;
        t->memory = NB_DEFAULT_MEMORY;
        t->pids = NB_DEFAULT_PIDS;
        t->attempts = 1;
        if (!json_is_object(v))
                return nb_jr_fail(p, path, "expected an object");
        int r = nb_jr_check_keys(p, path, v, target_keys);
        if (r < 0)
                return r;
        if (!json_object_get(v, "tests"))
                return nb_jr_missing(p, path, "tests");
        if (!json_object_get(v, "resolve"))
                return nb_jr_missing(p, path, "resolve");

        static const struct {
                const char *key;
                enum nb_strv_kind kind;
                size_t offset;
        } lists[] = {
                { "sources", NB_STRV_GLOB, offsetof(struct nb_target, sources) },
                { "tests", NB_STRV_GLOB, offsetof(struct nb_target, tests) },
                { "source_roots", NB_STRV_ROOT, offsetof(struct nb_target, source_roots) },
                { "pytest_args", NB_STRV_ANY, offsetof(struct nb_target, pytest_args) },
                { "env", NB_STRV_ENV, offsetof(struct nb_target, env) },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(lists); i++) {
                char ***field = (char ***) ((char *) t + lists[i].offset);
                json_t *e = json_object_get(v, lists[i].key);
                _cleanup_free_ char *fp = nb_jr_join(p, path, lists[i].key, false);
                if (!fp)
                        return nb_jr_oom(p);
                if (e)
                        r = nb_jr_strv(p, fp, e, lists[i].kind, field);
                else
                        r = (*field = calloc(1, sizeof(char *))) ? 0 : nb_jr_oom(p);
                if (r < 0)
                        return r;
                if (lists[i].offset == offsetof(struct nb_target, tests) && !**field)
                        return nb_jr_fail(p, fp, "expected at least one glob");
        }

        if ((r = check_env_names(p, path, t->env)) < 0)
                return r;
        json_t *e;
        _cleanup_free_ char *rp = nb_jr_join(p, path, "resolve", false);
        if (!rp)
                return nb_jr_oom(p);
        e = json_object_get(v, "resolve");
        if (!json_is_string(e))
                return nb_jr_fail(p, rp, "expected a string");
        t->resolve = nb_workspace_resolve(ws, json_string_value(e));
        if (!t->resolve)
                return no_such_resolve(p, rp, ws, json_string_value(e));

        static const struct {
                const char *key;
                int (*parse)(const struct nb_json_reader *p, const char *path, json_t *v, uint64_t *ret);
                size_t offset;
        } numbers[] = {
                { "timeout", nb_jr_timeout, offsetof(struct nb_target, timeout_ms) },
                { "memory", nb_jr_memory, offsetof(struct nb_target, memory) },
                { "pids", nb_jr_pids, offsetof(struct nb_target, pids) },
                { "attempts", nb_jr_attempts, offsetof(struct nb_target, attempts) },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(numbers); i++) {
                e = json_object_get(v, numbers[i].key);
                if (!e)
                        continue;
                _cleanup_free_ char *fp = nb_jr_join(p, path, numbers[i].key, false);
                if (!fp)
                        return nb_jr_oom(p);
                r = numbers[i].parse(p, fp, e, (uint64_t *) ((char *) t + numbers[i].offset));
                if (r < 0)
                        return r;
        }

        t->shards = 1;
        if ((e = json_object_get(v, "shards"))) {
                _cleanup_free_ char *fp = nb_jr_join(p, path, "shards", false);
                if (!fp)
                        return nb_jr_oom(p);
                if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > NB_MAX_SHARDS_PER_TARGET)
                        return nb_jr_fail(p, fp, "expected an integer from 1 to %d", NB_MAX_SHARDS_PER_TARGET);
                t->shards = (unsigned) json_integer_value(e);
        }
        e = json_object_get(v, "coverage");
        if (e) {
                _cleanup_free_ char *fp = nb_jr_join(p, path, "coverage", false);
                if (!fp)
                        return nb_jr_oom(p);
                if (!json_is_boolean(e))
                        return nb_jr_fail(p, fp, "expected true or false");
                t->coverage = json_is_true(e);
        }
        return 0;
}

/* The object at doc.<key> and its member names, sorted so that elements come out (and
 * fail) in one order whatever the file's order; every name is checked. */
static int named_members(const struct nb_json_reader *p, json_t *doc, const char *key, const char *what, json_t **ret_obj,
                         const char ***ret_keys) {
        json_t *obj = json_object_get(doc, key);
        if (!obj)
                return nb_jr_missing(p, "", key);
        if (!json_is_object(obj))
                return nb_jr_fail(p, key, "expected an object");
        size_t n = json_object_size(obj), k = 0;
        _cleanup_free_ const char **keys = calloc(n + 1, sizeof(char *));
        if (!keys)
                return nb_jr_oom(p);
        const char *name;
        json_t *v;
        json_object_foreach(obj, name, v)
                keys[k++] = name;
        nb_qsort(keys, n, sizeof(char *), cmp_str_ptr);
        for (size_t i = 0; keys[i]; i++)
                if (!nb_valid_name(keys[i])) {
                        _cleanup_free_ char *path = nb_jr_join(p, key, keys[i], true);
                        return path ? nb_jr_fail(p, path, "invalid %s name (use letters, digits and . _ - / : @ +)", what)
                                    : nb_jr_oom(p);
                }
        *ret_obj = obj;
        *ret_keys = TAKE_PTR(keys);
        return 0;
}

static int parse_resolves(const struct nb_json_reader *p, json_t *doc, struct nb_workspace *ws) {
        json_t *obj;
        _cleanup_free_ const char **keys = NULL;
        int r = named_members(p, doc, "resolves", "resolve", &obj, &keys);
        if (r >= 0 && !(ws->resolves = calloc(json_object_size(obj) + 1, sizeof(struct nb_resolve))))
                r = nb_jr_oom(p);
        for (size_t i = 0; r >= 0 && keys[i]; i++) {
                /* Counted before it is filled, so a half-filled element is freed. */
                struct nb_resolve *res = &ws->resolves[ws->n_resolves++];
                _cleanup_free_ char *path = nb_jr_join(p, "resolves", keys[i], true);
                res->name = strdup(keys[i]);
                r = path && res->name ? parse_resolve(p, path, json_object_get(obj, keys[i]), res) : nb_jr_oom(p);
        }
        return r;
}

struct folder_of {
        char *folder;
        const char *name;
};

static int cmp_folder(const void *a, const void *b) {
        return strcmp(((const struct folder_of *) a)->folder, ((const struct folder_of *) b)->folder);
}

/* Two targets never share an --output folder ("a@b" and "a_b" both map to a_b):
 * sorted by folder, neighbours compared, O(n log n). */
static int check_folders(const struct nb_json_reader *p, const char *const *names, size_t n) {
        struct folder_of *v = calloc(n + 1, sizeof(*v));
        if (!v)
                return nb_jr_oom(p);
        int r = 0;
        for (size_t i = 0; r == 0 && i < n; i++)
                if (!(v[i] = (struct folder_of) { nb_target_folder(names[i]), names[i] }).folder)
                        r = nb_jr_oom(p);
        if (r == 0)
                nb_qsort(v, n, sizeof(*v), cmp_folder);
        for (size_t i = 1; r == 0 && i < n; i++)
                if (strcmp(v[i - 1].folder, v[i].folder) == 0)
                        r = nb_jr_fail(p, "targets", "targets \"%s\" and \"%s\" would share the --output folder %s",
                                       v[i - 1].name, v[i].name, v[i].folder);
        for (size_t i = 0; i < n; i++)
                free(v[i].folder);
        free(v);
        return r;
}

static int parse_targets(const struct nb_json_reader *p, json_t *doc, struct nb_workspace *ws) {
        json_t *obj;
        _cleanup_free_ const char **keys = NULL;
        int r = named_members(p, doc, "targets", "target", &obj, &keys);
        for (size_t i = 0; r >= 0 && keys[i]; i++) {
                const char *why = nb_target_name_problem(keys[i]);
                if (why) {
                        _cleanup_free_ char *path = nb_jr_join(p, "targets", keys[i], true);
                        return path ? nb_jr_fail(p, path, "invalid target name: %s", why) : nb_jr_oom(p);
                }
        }
        if (r >= 0)
                r = check_folders(p, keys, json_object_size(obj));
        if (r >= 0 && !(ws->targets = calloc(json_object_size(obj) + 1, sizeof(struct nb_target))))
                r = nb_jr_oom(p);
        for (size_t i = 0; r >= 0 && keys[i]; i++) {
                struct nb_target *t = &ws->targets[ws->n_targets++];
                _cleanup_free_ char *path = nb_jr_join(p, "targets", keys[i], true);
                t->name = strdup(keys[i]);
                r = path && t->name ? parse_target(p, path, json_object_get(obj, keys[i]), ws, t) : nb_jr_oom(p);
        }
        return r;
}

static const char *const top_keys[] = { "$schema", "version", "python", "remote_cache", "resolves", "targets", NULL };

int nb_workspace_parse(const char *json, size_t len, const char *file, const char *root,
                       struct nb_workspace **ret, struct nb_error *err) {
        struct nb_json_reader p = { .file = file ? file : NB_WORKSPACE_FILE, .root = root ? root : ".", .err = err };
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
                return nb_error_input(err, EINVAL, "%s:%d:%d: invalid JSON: %s", p.file, jerr.line, jerr.column,
                                     jerr.text);
        if (!json_is_object(doc))
                return nb_jr_fail(&p, "", "expected a JSON object at the top level");
        int r = nb_jr_check_keys(&p, "", doc, top_keys);
        if (r < 0)
                return r;

        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = calloc(1, sizeof(*ws));
        if (!ws)
                return nb_jr_oom(&p);
        ws->root_fd = -1;
        ws->file = strdup(p.file);
        ws->root = strdup(p.root);
        if (!ws->file || !ws->root)
                return nb_jr_oom(&p);

        json_t *v = json_object_get(doc, "version");
        if (!v)
                return nb_jr_missing(&p, "", "version");
        if (!json_is_integer(v))
                return nb_jr_fail(&p, "version", "expected the integer 1");
        if (json_integer_value(v) != 1)
                return nb_jr_fail(&p, "version", "unsupported version %" JSON_INTEGER_FORMAT
                            " (this nestbox reads version 1)", json_integer_value(v));

        v = json_object_get(doc, "python");
        if (v && (!json_is_string(v) || json_string_value(v)[0] != '/'))
                return nb_jr_fail(&p, "python", "expected an absolute path to the interpreter");
        ws->python = strdup(v ? json_string_value(v) : NB_DEFAULT_PYTHON);
        if (!ws->python)
                return nb_jr_oom(&p);

        v = json_object_get(doc, "remote_cache");
        if (v && (!json_is_string(v) || (strncmp(json_string_value(v), "http://", 7) != 0 &&
                                         strncmp(json_string_value(v), "https://", 8) != 0)))
                return nb_jr_fail(&p, "remote_cache", "expected an http:// or https:// URL");
        if (v && !(ws->remote_cache = strdup(json_string_value(v))))
                return nb_jr_oom(&p);

        /* Resolves first: targets point into them. */
        r = parse_resolves(&p, doc, ws);
        if (r < 0)
                return r;
        r = parse_targets(&p, doc, ws);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ws);
        return 0;
}

static int load(const char *root, struct nb_workspace **ret, struct nb_error *err) {
        /* Messages name the file as the user would: "nestbox.json" in the cwd, else
         * "<root>/nestbox.json". */
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
                n--;
        _cleanup_free_ char *file = NULL;
        if (strcmp(root, ".") == 0)
                file = strdup(NB_WORKSPACE_FILE);
        else if (asprintf(&file, "%.*s/%s", (int) n, root, NB_WORKSPACE_FILE) < 0)
                file = NULL;
        if (!file)
                return nb_error_set(err, ENOMEM, "workspace %s", root);

        _cleanup_free_ char *abs = realpath(root, NULL);
        if (!abs) {
                int e = errno;
                return nb_error_classify(err, nb_error_class_of_path(e), nb_error_set(err, e, "workspace %s", root));
        }
        _cleanup_close_ int fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                return nb_error_classify(err, nb_error_class_of_path(e), nb_error_set(err, e, "workspace %s", root));
        }
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = nb_read_file_beneath(fd, NB_WORKSPACE_FILE, MAX_WORKSPACE_FILE, &data, &len);
        if (r == -EFBIG)
                return nb_error_input(err, EFBIG, "%s: larger than %u MiB, not a workspace file", file,
                                      MAX_WORKSPACE_FILE >> 20);
        if (r == -EINVAL)
                return nb_error_input(err, EINVAL, "%s: not a regular file", file);
        if (r == -ELOOP)
                return nb_error_input(err, ELOOP, "%s: is a symlink; nestbox reads only a regular file here", file);
        /* Out of descriptors, an I/O error: the file may be fine, the machine was not. */
        if (r < 0)
                return nb_error_classify(err, nb_error_class_of_path(r), nb_error_set(err, -r, "%s", file));

        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        r = nb_workspace_parse(data, len, file, abs, &ws, err);
        if (r < 0)
                return r == -ENOMEM ? r : nb_error_classify(err, NB_ERROR_INPUT, r);
        ws->root_fd = TAKE_FD(fd);
        *ret = TAKE_PTR(ws);
        return 0;
}

static int cmp_name(const void *key, const void *elem) {
        /* name is the first member of both nb_target and nb_resolve. */
        return strcmp(key, *(char *const *) elem);
}

const struct nb_target *nb_workspace_target(const struct nb_workspace *ws, const char *name) {
        if (!ws->targets)
                return NULL;
        return bsearch(name, ws->targets, ws->n_targets, sizeof(struct nb_target), cmp_name);
}

const struct nb_resolve *nb_workspace_resolve(const struct nb_workspace *ws, const char *name) {
        if (!ws->resolves)
                return NULL;
        return bsearch(name, ws->resolves, ws->n_resolves, sizeof(struct nb_resolve), cmp_name);
}

void nb_workspace_free(struct nb_workspace *ws) {
        if (!ws)
                return;
        for (size_t i = 0; i < ws->n_resolves; i++) {
                struct nb_resolve *r = &ws->resolves[i];
                free(r->name);
                free(r->lockfile);
                free(r->wheelhouse);
                free(r->lockfile_path);
                free(r->wheelhouse_path);
        }
        for (size_t i = 0; i < ws->n_targets; i++) {
                struct nb_target *t = &ws->targets[i];
                free(t->name);
                nb_strv_freep(&t->sources);
                nb_strv_freep(&t->tests);
                nb_strv_freep(&t->source_roots);
                nb_strv_freep(&t->pytest_args);
                nb_strv_freep(&t->env);
        }
        free(ws->resolves);
        free(ws->targets);
        if (ws->root_fd >= 0)
                close(ws->root_fd);
        free(ws->root);
        free(ws->file);
        free(ws->python);
        free(ws->remote_cache);
        free(ws);
}

void nb_workspace_freep(struct nb_workspace **ws) {
        nb_workspace_free(*ws);
        *ws = NULL;
}

/* What is wrong with the workspace (missing, a link, too big, not what the schema
 * says) is an input error; what failed the machine while reading it (descriptors,
 * memory, I/O) is not. Each is classified where load() finds it. */
int nb_workspace_load(const char *root, struct nb_workspace **ret, struct nb_error *err) {
        return load(root, ret, err);
}
