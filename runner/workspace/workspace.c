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
#include "workspace/workspace.h"

/* A workspace file is a few kilobytes; anything near this is not one. */
#define MAX_WORKSPACE_FILE (16u << 20)
#define MAX_TIMEOUT_S 604800.0 /* one week */
#define MAX_PIDS 4194304       /* the kernel's pid_max ceiling */
#define MAX_NAME 255

struct parser {
        const char *file;
        const char *root;
        struct nb_error *err;
};

static int oom(const struct parser *p) {
        return nb_error_set(p->err, ENOMEM, "%s", p->file);
}

static int fail(const struct parser *p, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(const struct parser *p, const char *path, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL; /* undefined after a failure */
        va_end(ap);
        if (!msg)
                return oom(p);
        if (path && *path)
                return nb_error_setx(p->err, EINVAL, "%s: %s: %s", p->file, path, msg);
        return nb_error_setx(p->err, EINVAL, "%s: %s", p->file, msg);
}

/* "parent.key" for fixed keys, "parent.\"name\"" for user-chosen names. */
static char *join_path(const char *parent, const char *key, bool user_name) {
        _cleanup_free_ char *q = user_name ? nb_quote(key) : NULL;
        if (user_name && !q)
                return NULL;
        char *r = NULL;
        if (asprintf(&r, "%s%s%s", parent, *parent ? "." : "", q ? q : key) < 0)
                return NULL;
        return r;
}

/* Levenshtein distance from a (any length) to b (one of our own key names): only used
 * to suggest the key a typo meant. */
static size_t edit_distance(const char *a, const char *b) {
        size_t lb = strlen(b);
        size_t prev[32], cur[32]; /* indexed by b's length, never a's */
        if (lb >= NB_ELEMENTSOF(prev))
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; a[i - 1]; i++) {
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
                        size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
                        cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
                }
                memcpy(prev, cur, (lb + 1) * sizeof(size_t));
        }
        return prev[lb];
}

static int check_keys(const struct parser *p, const char *path, json_t *obj, const char *const *known) {
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v) {
                const char *best = NULL;
                size_t best_d = 3; /* suggest only close matches */
                bool ok = false;
                for (const char *const *k = known; *k; k++) {
                        if (strcmp(key, *k) == 0) {
                                ok = true;
                                break;
                        }
                        size_t d = edit_distance(key, *k);
                        if (d < best_d) {
                                best_d = d;
                                best = *k;
                        }
                }
                if (ok)
                        continue;
                _cleanup_free_ char *q = nb_quote(key);
                if (!q)
                        return oom(p);
                if (best)
                        return fail(p, path, "unknown key %s (did you mean \"%s\"?)", q, best);
                return fail(p, path, "unknown key %s", q);
        }
        return 0;
}

/* "<path>: \"<value>\": <problem>" */
static int bad_value(const struct parser *p, const char *path, const char *value, const char *problem) {
        _cleanup_free_ char *q = nb_quote(value);
        return q ? fail(p, path, "%s: %s", q, problem) : oom(p);
}

static int missing(const struct parser *p, const char *path, const char *key) {
        return fail(p, path, "missing required key \"%s\"", key);
}

/* Names of targets and resolves end up in messages, environment variables
 * (TEST_TARGET) and file names: keep them to a plain alphabet. */
static bool valid_name(const char *s) {
        size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@+");
        return n > 0 && n <= MAX_NAME && !s[n];
}

static bool valid_env_name(const char *s) {
        size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        return n > 0 && !s[n] && !(*s >= '0' && *s <= '9');
}

enum strv_kind { STRV_ANY, STRV_GLOB, STRV_ROOT, STRV_ENV };

static int parse_strv(const struct parser *p, const char *path, json_t *v, enum strv_kind kind, char ***ret) {
        if (!json_is_array(v))
                return fail(p, path, "expected an array of strings");
        size_t n = json_array_size(v);
        _cleanup_strv_free_ char **strv = calloc(n + 1, sizeof(char *));
        if (!strv)
                return oom(p);
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(v, i);
                _cleanup_free_ char *ipath = NULL;
                if (asprintf(&ipath, "%s[%zu]", path, i) < 0) {
                        ipath = NULL;
                        return oom(p);
                }
                if (!json_is_string(e))
                        return fail(p, ipath, "expected a string");
                const char *s = json_string_value(e);
                const char *problem = NULL;
                if (kind == STRV_GLOB || kind == STRV_ROOT)
                        problem = nb_check_relative_path(s, kind == STRV_ROOT);
                else if (kind == STRV_ENV && !valid_env_name(s))
                        problem = "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
                if (problem)
                        return bad_value(p, ipath, s, problem);
                strv[i] = strdup(s);
                if (!strv[i])
                        return oom(p);
        }
        *ret = TAKE_PTR(strv);
        return 0;
}

static int parse_rel_path(const struct parser *p, const char *path, json_t *v, char **rel, char **abs) {
        if (!json_is_string(v))
                return fail(p, path, "expected a string");
        const char *s = json_string_value(v);
        const char *problem = nb_check_relative_path(s, false);
        if (problem)
                return bad_value(p, path, s, problem);
        *rel = strdup(s);
        if (!*rel || asprintf(abs, "%s/%s", p->root, s) < 0) {
                *abs = NULL;
                return oom(p);
        }
        return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static const char *const resolve_keys[] = { "lockfile", "wheelhouse", NULL };

static int parse_resolve(const struct parser *p, const char *path, json_t *v, struct nb_resolve *r) {
        if (!json_is_object(v))
                return fail(p, path, "expected an object");
        int ret = check_keys(p, path, v, resolve_keys);
        if (ret < 0)
                return ret;
        json_t *lock = json_object_get(v, "lockfile"), *wheels = json_object_get(v, "wheelhouse");
        if (!lock)
                return missing(p, path, "lockfile");
        if (!wheels)
                return missing(p, path, "wheelhouse");
        _cleanup_free_ char *lpath = join_path(path, "lockfile", false);
        _cleanup_free_ char *wpath = join_path(path, "wheelhouse", false);
        if (!lpath || !wpath)
                return oom(p);
        ret = parse_rel_path(p, lpath, lock, &r->lockfile, &r->lockfile_path);
        if (ret < 0)
                return ret;
        return parse_rel_path(p, wpath, wheels, &r->wheelhouse, &r->wheelhouse_path);
}

static int parse_timeout(const struct parser *p, const char *path, json_t *v, uint64_t *ret) {
        double s = json_is_number(v) ? json_number_value(v) : -1.0;
        if (!(s > 0))
                return fail(p, path, "expected a positive number");
        if (s > MAX_TIMEOUT_S)
                return fail(p, path, "expected at most %.0f seconds (one week)", MAX_TIMEOUT_S);
        /* Round up: a timeout of 0.0001 s must not become 0, which means "none". */
        uint64_t ms = (uint64_t) (s * 1000.0);
        if ((double) ms < s * 1000.0)
                ms++;
        *ret = ms;
        return 0;
}

static int parse_memory(const struct parser *p, const char *path, json_t *v, uint64_t *ret) {
        uint64_t bytes = 0;
        if (json_is_string(v)) {
                if (nb_parse_size(json_string_value(v), &bytes) < 0 || bytes == 0)
                        return bad_value(p, path, json_string_value(v), "expected a size such as \"512M\" or \"2G\"");
        } else if (json_is_integer(v) && json_integer_value(v) > 0)
                bytes = (uint64_t) json_integer_value(v);
        else
                return fail(p, path, "expected a size such as \"2G\" (or a positive number of bytes)");
        *ret = bytes;
        return 0;
}

static int parse_pids(const struct parser *p, const char *path, json_t *v, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return fail(p, path, "expected a positive integer");
        if (json_integer_value(v) > MAX_PIDS)
                return fail(p, path, "expected at most %d", MAX_PIDS);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int no_such_resolve(const struct parser *p, const char *path, const struct nb_workspace *ws, const char *name) {
        _cleanup_free_ char *q = nb_quote(name);
        _cleanup_free_ char *known = strdup("");
        if (!q || !known)
                return oom(p);
        for (size_t i = 0; i < ws->n_resolves; i++) {
                char *next = NULL;
                if (asprintf(&next, "%s%s\"%s\"", known, i ? ", " : "", ws->resolves[i].name) < 0)
                        return oom(p);
                free(known);
                known = next;
        }
        return fail(p, path, "no resolve named %s (resolves: %s)", q, ws->n_resolves ? known : "none");
}

static const char *const target_keys[] = {
        "sources", "tests", "source_roots", "resolve", "timeout", "pytest_args",
        "env", "coverage", "memory", "pids", NULL,
};

static int parse_target(const struct parser *p, const char *path, json_t *v, const struct nb_workspace *ws,
                        struct nb_target *t) {
        t->timeout_ms = NB_DEFAULT_TIMEOUT_MS;
        t->memory = NB_DEFAULT_MEMORY;
        t->pids = NB_DEFAULT_PIDS;
        if (!json_is_object(v))
                return fail(p, path, "expected an object");
        int r = check_keys(p, path, v, target_keys);
        if (r < 0)
                return r;
        if (!json_object_get(v, "tests"))
                return missing(p, path, "tests");
        if (!json_object_get(v, "resolve"))
                return missing(p, path, "resolve");

        static const struct {
                const char *key;
                enum strv_kind kind;
                size_t offset;
        } lists[] = {
                { "sources", STRV_GLOB, offsetof(struct nb_target, sources) },
                { "tests", STRV_GLOB, offsetof(struct nb_target, tests) },
                { "source_roots", STRV_ROOT, offsetof(struct nb_target, source_roots) },
                { "pytest_args", STRV_ANY, offsetof(struct nb_target, pytest_args) },
                { "env", STRV_ENV, offsetof(struct nb_target, env) },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(lists); i++) {
                char ***field = (char ***) ((char *) t + lists[i].offset);
                json_t *e = json_object_get(v, lists[i].key);
                _cleanup_free_ char *fp = join_path(path, lists[i].key, false);
                if (!fp)
                        return oom(p);
                if (e)
                        r = parse_strv(p, fp, e, lists[i].kind, field);
                else
                        r = (*field = calloc(1, sizeof(char *))) ? 0 : oom(p);
                if (r < 0)
                        return r;
                if (lists[i].offset == offsetof(struct nb_target, tests) && !**field)
                        return fail(p, fp, "expected at least one glob");
        }

        json_t *e;
        _cleanup_free_ char *rp = join_path(path, "resolve", false);
        if (!rp)
                return oom(p);
        e = json_object_get(v, "resolve");
        if (!json_is_string(e))
                return fail(p, rp, "expected a string");
        t->resolve = nb_workspace_resolve(ws, json_string_value(e));
        if (!t->resolve)
                return no_such_resolve(p, rp, ws, json_string_value(e));

        static const struct {
                const char *key;
                int (*parse)(const struct parser *p, const char *path, json_t *v, uint64_t *ret);
                size_t offset;
        } numbers[] = {
                { "timeout", parse_timeout, offsetof(struct nb_target, timeout_ms) },
                { "memory", parse_memory, offsetof(struct nb_target, memory) },
                { "pids", parse_pids, offsetof(struct nb_target, pids) },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(numbers); i++) {
                e = json_object_get(v, numbers[i].key);
                if (!e)
                        continue;
                _cleanup_free_ char *fp = join_path(path, numbers[i].key, false);
                if (!fp)
                        return oom(p);
                r = numbers[i].parse(p, fp, e, (uint64_t *) ((char *) t + numbers[i].offset));
                if (r < 0)
                        return r;
        }

        e = json_object_get(v, "coverage");
        if (e) {
                _cleanup_free_ char *fp = join_path(path, "coverage", false);
                if (!fp)
                        return oom(p);
                if (!json_is_boolean(e))
                        return fail(p, fp, "expected true or false");
                t->coverage = json_is_true(e);
        }
        return 0;
}

/* The object at doc.<key> and its member names, sorted so that elements come out (and
 * fail) in one order whatever the file's order; every name is checked. */
static int named_members(const struct parser *p, json_t *doc, const char *key, const char *what, json_t **ret_obj,
                         const char ***ret_keys) {
        json_t *obj = json_object_get(doc, key);
        if (!obj)
                return missing(p, "", key);
        if (!json_is_object(obj))
                return fail(p, key, "expected an object");
        size_t n = json_object_size(obj), k = 0;
        _cleanup_free_ const char **keys = calloc(n + 1, sizeof(char *));
        if (!keys)
                return oom(p);
        const char *name;
        json_t *v;
        json_object_foreach(obj, name, v)
                keys[k++] = name;
        qsort(keys, n, sizeof(char *), cmp_str_ptr);
        for (size_t i = 0; keys[i]; i++)
                if (!valid_name(keys[i])) {
                        _cleanup_free_ char *path = join_path(key, keys[i], true);
                        return path ? fail(p, path, "invalid %s name (use letters, digits and . _ - / : @ +)", what)
                                    : oom(p);
                }
        *ret_obj = obj;
        *ret_keys = TAKE_PTR(keys);
        return 0;
}

static int parse_resolves(const struct parser *p, json_t *doc, struct nb_workspace *ws) {
        json_t *obj;
        _cleanup_free_ const char **keys = NULL;
        int r = named_members(p, doc, "resolves", "resolve", &obj, &keys);
        if (r >= 0 && !(ws->resolves = calloc(json_object_size(obj) + 1, sizeof(struct nb_resolve))))
                r = oom(p);
        for (size_t i = 0; r >= 0 && keys[i]; i++) {
                /* Counted before it is filled, so a half-filled element is freed. */
                struct nb_resolve *res = &ws->resolves[ws->n_resolves++];
                _cleanup_free_ char *path = join_path("resolves", keys[i], true);
                res->name = strdup(keys[i]);
                r = path && res->name ? parse_resolve(p, path, json_object_get(obj, keys[i]), res) : oom(p);
        }
        return r;
}

static int parse_targets(const struct parser *p, json_t *doc, struct nb_workspace *ws) {
        json_t *obj;
        _cleanup_free_ const char **keys = NULL;
        int r = named_members(p, doc, "targets", "target", &obj, &keys);
        if (r >= 0 && !(ws->targets = calloc(json_object_size(obj) + 1, sizeof(struct nb_target))))
                r = oom(p);
        for (size_t i = 0; r >= 0 && keys[i]; i++) {
                struct nb_target *t = &ws->targets[ws->n_targets++];
                _cleanup_free_ char *path = join_path("targets", keys[i], true);
                t->name = strdup(keys[i]);
                r = path && t->name ? parse_target(p, path, json_object_get(obj, keys[i]), ws, t) : oom(p);
        }
        return r;
}

static const char *const top_keys[] = { "$schema", "version", "python", "resolves", "targets", NULL };

int nb_workspace_parse(const char *json, size_t len, const char *file, const char *root,
                       struct nb_workspace **ret, struct nb_error *err) {
        struct parser p = { file ? file : NB_WORKSPACE_FILE, root ? root : ".", err };
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
                return nb_error_setx(err, EINVAL, "%s:%d:%d: invalid JSON: %s", p.file, jerr.line, jerr.column,
                                     jerr.text);
        if (!json_is_object(doc))
                return fail(&p, "", "expected a JSON object at the top level");
        int r = check_keys(&p, "", doc, top_keys);
        if (r < 0)
                return r;

        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = calloc(1, sizeof(*ws));
        if (!ws)
                return oom(&p);
        ws->root_fd = -1;
        ws->file = strdup(p.file);
        ws->root = strdup(p.root);
        if (!ws->file || !ws->root)
                return oom(&p);

        json_t *v = json_object_get(doc, "version");
        if (!v)
                return missing(&p, "", "version");
        if (!json_is_integer(v))
                return fail(&p, "version", "expected the integer 1");
        if (json_integer_value(v) != 1)
                return fail(&p, "version", "unsupported version %" JSON_INTEGER_FORMAT
                            " (this nestbox reads version 1)", json_integer_value(v));

        v = json_object_get(doc, "python");
        if (v && (!json_is_string(v) || json_string_value(v)[0] != '/'))
                return fail(&p, "python", "expected an absolute path to the interpreter");
        ws->python = strdup(v ? json_string_value(v) : NB_DEFAULT_PYTHON);
        if (!ws->python)
                return oom(&p);

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

int nb_workspace_load(const char *root, struct nb_workspace **ret, struct nb_error *err) {
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
        if (!abs)
                return nb_error_set(err, errno, "workspace %s", root);
        _cleanup_close_ int fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return nb_error_set(err, errno, "workspace %s", root);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = nb_read_file_beneath(fd, NB_WORKSPACE_FILE, MAX_WORKSPACE_FILE, &data, &len);
        if (r == -EFBIG)
                return nb_error_setx(err, EFBIG, "%s: larger than %u MiB, not a workspace file", file,
                                     MAX_WORKSPACE_FILE >> 20);
        if (r == -EINVAL)
                return nb_error_setx(err, EINVAL, "%s: not a regular file", file);
        if (r == -ELOOP)
                return nb_error_setx(err, ELOOP, "%s: is a symlink; nestbox reads only a regular file here", file);
        if (r < 0)
                return nb_error_set(err, r, "%s", file);

        _cleanup_(nb_workspace_freep) struct nb_workspace *ws = NULL;
        r = nb_workspace_parse(data, len, file, abs, &ws, err);
        if (r < 0)
                return r;
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
        free(ws);
}

void nb_workspace_freep(struct nb_workspace **ws) {
        nb_workspace_free(*ws);
        *ws = NULL;
}
