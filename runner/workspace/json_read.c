/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"
#include "workspace/json_read.h"
#include "workspace/workspace.h"

#define MAX_TIMEOUT_S 604800.0 /* one week */
#define MAX_PIDS 4194304       /* the kernel's pid_max ceiling */
#define MAX_NAME 255

int nb_jr_oom(const struct nb_json_reader *p) {
        return nb_error_set(p->err, ENOMEM, "%s", p->file);
}

int nb_jr_fail(const struct nb_json_reader *p, const char *path, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL; /* undefined after a failure */
        va_end(ap);
        if (!msg)
                return nb_jr_oom(p);
        if (path && *path)
                return nb_error_input(p->err, EINVAL, "%s: %s: %s", p->file, path, msg);
        return nb_error_input(p->err, EINVAL, "%s: %s", p->file, msg);
}


/* "parent.key" for fixed keys, "parent.\"name\"" for user-chosen names. */
char *nb_jr_join(const struct nb_json_reader *p, const char *parent, const char *key, bool user_name) {
        _cleanup_free_ char *q = user_name ? nb_quote(key) : NULL;
        if (user_name && !q)
                return NULL;
        char *r = NULL;
        if (asprintf(&r, "%s%s%s", parent, *parent || p->dotted ? "." : "", q ? q : key) < 0)
                return NULL;
        return r;
}

static bool is_known(const char *key, const char *const *known) {
        for (const char *const *k = known; *k; k++)
                if (strcmp(key, *k) == 0)
                        return true;
        return false;
}

/* The known key within two edits of key, or NULL. Only for a key that is not known:
 * distances for every valid key were a third of parsing a 3,000-target workspace. */
static const char *closest(const char *key, const char *const *known) {
        const char *best = NULL;
        size_t best_d = 3; /* suggest only close matches */
        for (const char *const *k = known; *k; k++) {
                size_t d = nb_edit_distance(key, *k);
                if (d < best_d) {
                        best_d = d;
                        best = *k;
                }
        }
        return best;
}

int nb_jr_check_keys(const struct nb_json_reader *p, const char *path, json_t *obj, const char *const *known) {
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v) {
                if (is_known(key, known))
                        continue;
                const char *best = closest(key, known);
                /* Action files name the key itself (".polcy: unknown key"), as jq would. */
                _cleanup_free_ char *q = nb_quote(key), *at = p->dotted ? nb_jr_join(p, path, key, !nb_valid_env_name(key)) : NULL;
                if (!q || (p->dotted && !at))
                        return nb_jr_oom(p);
                if (best)
                        return nb_jr_fail(p, at ? at : path, "unknown key %s (did you mean \"%s\"?)", q, best);
                return nb_jr_fail(p, at ? at : path, "unknown key %s", q);
        }
        return 0;
}

int nb_jr_bad_value(const struct nb_json_reader *p, const char *path, const char *value, const char *problem) {
        _cleanup_free_ char *q = nb_quote(value);
        return q ? nb_jr_fail(p, path, "%s: %s", q, problem) : nb_jr_oom(p);
}

int nb_jr_missing(const struct nb_json_reader *p, const char *path, const char *key) {
        if (p->dotted) {
                _cleanup_free_ char *field = nb_jr_join(p, path, key, false);
                return field ? nb_jr_fail(p, field, "missing (required)") : nb_jr_oom(p);
        }
        return nb_jr_fail(p, path, "missing required key \"%s\"", key);
}

bool nb_valid_name(const char *s) {
        size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@+");
        return n > 0 && n <= MAX_NAME && !s[n];
}

bool nb_valid_env_name(const char *s) {
        size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        return n > 0 && !s[n] && !(*s >= '0' && *s <= '9');
}



int nb_jr_strv(const struct nb_json_reader *p, const char *path, json_t *v, enum nb_strv_kind kind, char ***ret) {
        if (!json_is_array(v))
                return nb_jr_fail(p, path, "expected an array of strings");
        size_t n = json_array_size(v);
        _cleanup_strv_free_ char **strv = calloc(n + 1, sizeof(char *));
        if (!strv)
                return nb_jr_oom(p);
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(v, i);
                _cleanup_free_ char *ipath = NULL;
                if (asprintf(&ipath, "%s[%zu]", path, i) < 0) {
                        ipath = NULL;
                        return nb_jr_oom(p);
                }
                if (!json_is_string(e))
                        return nb_jr_fail(p, ipath, "expected a string");
                const char *s = json_string_value(e);
                const char *problem = NULL;
                if (kind == NB_STRV_GLOB || kind == NB_STRV_ROOT)
                        problem = nb_check_relative_path(s, kind == NB_STRV_ROOT);
                else if (kind == NB_STRV_ENV && !nb_valid_env_name(s))
                        problem = "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
                if (problem)
                        return nb_jr_bad_value(p, ipath, s, problem);
                strv[i] = strdup(s);
                if (!strv[i])
                        return nb_jr_oom(p);
        }
        *ret = TAKE_PTR(strv);
        return 0;
}


int nb_timeout_category(const char *name, uint64_t *ret_ms) {
        static const struct { const char *name; uint64_t sec; } categories[] = {
                { "short", 60 }, { "moderate", 300 }, { "long", 900 }, { "eternal", 3600 },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(categories); i++)
                if (strcmp(name, categories[i].name) == 0) {
                        *ret_ms = categories[i].sec * 1000;
                        return 0;
                }
        return -EINVAL;
}

int nb_jr_timeout(const struct nb_json_reader *p, const char *path, json_t *v, uint64_t *ret) {
        if (json_is_string(v)) {
                if (nb_timeout_category(json_string_value(v), ret) < 0)
                        return nb_jr_bad_value(p, path, json_string_value(v),
                                               "expected seconds or one of short, moderate, long, eternal");
                return 0;
        }
        double s = json_is_number(v) ? json_number_value(v) : -1.0;
        if (!(s > 0))
                return nb_jr_fail(p, path, "expected a positive number of seconds or one of \"short\", \"moderate\", "
                                  "\"long\", \"eternal\"");
        if (s > MAX_TIMEOUT_S)
                return nb_jr_fail(p, path, "expected at most %.0f seconds (one week)", MAX_TIMEOUT_S);
        /* Round up: a timeout of 0.0001 s must not become 0, which means "none". */
        uint64_t ms = (uint64_t) (s * 1000.0);
        if ((double) ms < s * 1000.0)
                ms++;
        *ret = ms;
        return 0;
}

int nb_jr_memory(const struct nb_json_reader *p, const char *path, json_t *v, uint64_t *ret) {
        uint64_t bytes = 0;
        if (json_is_string(v)) {
                if (nb_parse_size(json_string_value(v), &bytes) < 0 || bytes == 0)
                        return nb_jr_bad_value(p, path, json_string_value(v), "expected a size such as \"512M\" or \"2G\"");
        } else if (json_is_integer(v) && json_integer_value(v) > 0)
                bytes = (uint64_t) json_integer_value(v);
        else
                return nb_jr_fail(p, path, "expected a size such as \"2G\" (or a positive number of bytes)");
        *ret = bytes;
        return 0;
}

int nb_jr_attempts(const struct nb_json_reader *p, const char *path, json_t *v, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > NB_MAX_ATTEMPTS)
                return nb_jr_fail(p, path, "expected an integer from 1 to %u", NB_MAX_ATTEMPTS);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

int nb_jr_pids(const struct nb_json_reader *p, const char *path, json_t *v, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return nb_jr_fail(p, path, "expected a positive integer");
        if (json_integer_value(v) > MAX_PIDS)
                return nb_jr_fail(p, path, "expected at most %d", MAX_PIDS);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}


int nb_jr_bool(const struct nb_json_reader *p, const char *path, json_t *v, bool *ret) {
        if (!json_is_boolean(v))
                return nb_jr_fail(p, path, "expected true or false");
        *ret = json_is_true(v);
        return 0;
}
