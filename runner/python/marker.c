/* SPDX-License-Identifier: MIT */
/* PEP 508 environment markers, evaluated for the target interpreter.
 *
 *     marker   = and ("or" and)*
 *     and      = atom ("and" atom)*
 *     atom     = "(" marker ")" | value op value
 *     value    = variable | 'string' | "string"
 *     op       = < <= == != >= > ~= === in "not in"
 *
 * A lockfile is trusted to be well-formed but not to be simple: anything nestbox
 * cannot evaluate exactly (an unknown variable, a version it cannot parse, "<" between
 * plain strings) is an error rather than a guess, because a wrong guess silently
 * installs a different set of packages. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "python/lockfile.h"
#include "nestbox/cleanup.h"

/* Deep enough for any real marker, shallow enough that a hostile one cannot exhaust
 * the stack. */
#define MAX_DEPTH 32
#define MAX_RELEASE 8

enum tok { T_END, T_LPAREN, T_RPAREN, T_STRING, T_WORD, T_OP };

struct parser {
        const char *s;   /* the whole marker, for messages */
        const char *p;   /* the next unread character */
        enum tok tok;    /* the current token ... */
        const char *tstart;
        size_t tlen;     /* ... and its text (without quotes for strings) */
        const struct nb_marker_env *env;
        struct nb_error *err;
};

static int fail(struct parser *ps, const char *why) {
        return nb_error_input(ps->err, EINVAL, "marker '%s': %s", ps->s, why);
}

static int next(struct parser *ps) {
        while (*ps->p == ' ' || *ps->p == '\t')
                ps->p++;
        const char *p = ps->p;
        ps->tstart = p;
        ps->tlen = 0;
        if (*p == 0) {
                ps->tok = T_END;
                return 0;
        }
        if (*p == '(' || *p == ')') {
                ps->tok = *p == '(' ? T_LPAREN : T_RPAREN;
                ps->tlen = 1;
                ps->p++;
                return 0;
        }
        if (*p == '\'' || *p == '"') {
                /* PEP 508 strings have no escapes: the string ends at the next quote. */
                const char *end = strchr(p + 1, *p);
                if (!end)
                        return fail(ps, "unterminated string");
                ps->tok = T_STRING;
                ps->tstart = p + 1;
                ps->tlen = (size_t) (end - p - 1);
                ps->p = end + 1;
                return 0;
        }
        if (strchr("<>=!~", *p)) {
                size_t n = strspn(p, "<>=!~");
                ps->tok = T_OP;
                ps->tlen = n;
                ps->p += n;
                return 0;
        }
        if (isalpha((unsigned char) *p) || *p == '_') {
                size_t n = 0;
                while (isalnum((unsigned char) p[n]) || p[n] == '_' || p[n] == '.')
                        n++;
                ps->tok = T_WORD;
                ps->tlen = n;
                ps->p += n;
                return 0;
        }
        return fail(ps, "unexpected character");
}

static bool tok_is(const struct parser *ps, const char *word) {
        return ps->tok == T_WORD && strlen(word) == ps->tlen && memcmp(ps->tstart, word, ps->tlen) == 0;
}

struct operand {
        char *value;     /* malloc'd */
        bool is_version; /* a variable compared as a PEP 440 version */
};

static const char *lookup(const struct nb_marker_env *env, const char *name, bool *is_version) {
        *is_version = false;
        /* The dotted spellings are PEP 345's, still accepted by pip. */
        if (strcmp(name, "python_version") == 0 || strcmp(name, "python_full_version") == 0) {
                *is_version = true;
                return name[7] == 'v' ? env->python_version : env->python_full_version;
        }
        if (strcmp(name, "sys_platform") == 0 || strcmp(name, "sys.platform") == 0)
                return env->sys_platform;
        if (strcmp(name, "platform_system") == 0)
                return env->platform_system;
        if (strcmp(name, "platform_machine") == 0 || strcmp(name, "platform.machine") == 0)
                return env->platform_machine;
        if (strcmp(name, "os_name") == 0 || strcmp(name, "os.name") == 0)
                return env->os_name;
        if (strcmp(name, "implementation_name") == 0)
                return env->implementation_name;
        if (strcmp(name, "platform_python_implementation") == 0 ||
            strcmp(name, "platform.python_implementation") == 0 || strcmp(name, "python_implementation") == 0)
                return env->platform_python_implementation;
        return NULL;
}

static int parse_operand(struct parser *ps, struct operand *o) {
        if (ps->tok == T_STRING) {
                o->value = strndup(ps->tstart, ps->tlen);
                if (!o->value)
                        return nb_error_set(ps->err, ENOMEM, "marker");
                return next(ps);
        }
        if (ps->tok != T_WORD)
                return fail(ps, "expected a variable or a quoted string");
        _cleanup_free_ char *name = strndup(ps->tstart, ps->tlen);
        if (!name)
                return nb_error_set(ps->err, ENOMEM, "marker");
        const char *v = lookup(ps->env, name, &o->is_version);
        if (!v)
                return nb_error_input(ps->err, EINVAL, "marker '%s': variable '%s' is not supported", ps->s, name);
        o->value = strdup(v);
        if (!o->value)
                return nb_error_set(ps->err, ENOMEM, "marker");
        return next(ps);
}

/* A PEP 440 version reduced to what interpreters have: a release and an optional
 * pre-release ("3.12.0rc1"). */
struct version {
        long release[MAX_RELEASE];
        int n;
        int pre_phase; /* 0 final, -1 rc, -2 b, -3 a */
        long pre_num;
        bool wildcard; /* "3.11.*" */
};

static bool parse_version(const char *s, struct version *v, bool allow_wildcard) {
        memset(v, 0, sizeof(*v));
        const char *p = s;
        for (;;) {
                if (allow_wildcard && v->n > 0 && p[0] == '*' && p[1] == 0) {
                        v->wildcard = true;
                        return true;
                }
                if (!isdigit((unsigned char) *p) || v->n == MAX_RELEASE)
                        return false;
                char *end;
                errno = 0;
                long x = strtol(p, &end, 10);
                if (errno)
                        return false;
                v->release[v->n++] = x;
                p = end;
                if (*p != '.')
                        break;
                p++;
        }
        if (*p == 0)
                return true;
        static const struct { const char *tag; int phase; } pre[] = {
                { "rc", -1 }, { "c", -1 }, { "b", -2 }, { "a", -3 },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(pre); i++) {
                size_t n = strlen(pre[i].tag);
                if (strncmp(p, pre[i].tag, n) != 0 || !isdigit((unsigned char) p[n]))
                        continue;
                char *end;
                errno = 0;
                v->pre_num = strtol(p + n, &end, 10);
                v->pre_phase = pre[i].phase;
                return errno == 0 && *end == 0;
        }
        return false;
}

static int version_cmp(const struct version *a, const struct version *b) {
        int n = a->n > b->n ? a->n : b->n;
        for (int i = 0; i < n; i++) {
                long x = i < a->n ? a->release[i] : 0, y = i < b->n ? b->release[i] : 0;
                if (x != y)
                        return x < y ? -1 : 1;
        }
        if (a->pre_phase != b->pre_phase)
                return a->pre_phase < b->pre_phase ? -1 : 1;
        if (a->pre_num != b->pre_num)
                return a->pre_num < b->pre_num ? -1 : 1;
        return 0;
}

/* "3.11.2" == "3.11.*": the release starts with the wildcard's components. */
static bool version_prefix(const struct version *a, const struct version *prefix) {
        for (int i = 0; i < prefix->n; i++)
                if ((i < a->n ? a->release[i] : 0) != prefix->release[i])
                        return false;
        return true;
}

static int compare_versions(struct parser *ps, const char *op, const char *l, const char *r, bool *ret) {
        struct version a, b;
        bool eq_op = strcmp(op, "==") == 0 || strcmp(op, "!=") == 0;
        if (!parse_version(l, &a, false))
                return nb_error_input(ps->err, EINVAL, "marker '%s': '%s' is not a version nestbox can compare", ps->s, l);
        if (!parse_version(r, &b, eq_op))
                return nb_error_input(ps->err, EINVAL, "marker '%s': '%s' is not a version nestbox can compare", ps->s, r);
        if (b.wildcard) {
                bool m = version_prefix(&a, &b);
                *ret = op[0] == '=' ? m : !m;
                return 0;
        }
        int c = version_cmp(&a, &b);
        if (strcmp(op, "==") == 0)
                *ret = c == 0;
        else if (strcmp(op, "!=") == 0)
                *ret = c != 0;
        else if (strcmp(op, "<") == 0)
                *ret = c < 0;
        else if (strcmp(op, "<=") == 0)
                *ret = c <= 0;
        else if (strcmp(op, ">") == 0)
                *ret = c > 0;
        else if (strcmp(op, ">=") == 0)
                *ret = c >= 0;
        else if (strcmp(op, "~=") == 0) {
                /* ~=3.8 means >=3.8 and ==3.*: compatible release. */
                if (b.n < 2)
                        return nb_error_input(ps->err, EINVAL, "marker '%s': '~=%s' needs at least two components", ps->s, r);
                struct version prefix = b;
                prefix.n--;
                *ret = c >= 0 && version_prefix(&a, &prefix);
        } else
                return nb_error_input(ps->err, EINVAL, "marker '%s': operator '%s' is not supported", ps->s, op);
        return 0;
}

static int parse_or(struct parser *ps, int depth, bool *ret);

static int parse_atom(struct parser *ps, int depth, bool *ret) {
        if (ps->tok == T_LPAREN) {
                if (depth >= MAX_DEPTH)
                        return fail(ps, "nested too deeply");
                int r = next(ps);
                if (r < 0)
                        return r;
                r = parse_or(ps, depth + 1, ret);
                if (r < 0)
                        return r;
                if (ps->tok != T_RPAREN)
                        return fail(ps, "expected ')'");
                return next(ps);
        }
        struct operand lhs = {}, rhs = {};
        _cleanup_free_ char *lv = NULL, *rv = NULL;
        int r = parse_operand(ps, &lhs);
        lv = lhs.value;
        if (r < 0)
                return r;
        _cleanup_free_ char *op = NULL;
        if (ps->tok == T_OP)
                op = strndup(ps->tstart, ps->tlen);
        else if (tok_is(ps, "in"))
                op = strdup("in");
        else if (tok_is(ps, "not")) {
                r = next(ps);
                if (r < 0)
                        return r;
                if (!tok_is(ps, "in"))
                        return fail(ps, "expected 'in' after 'not'");
                op = strdup("not in");
        } else
                return fail(ps, "expected a comparison operator");
        if (!op)
                return nb_error_set(ps->err, ENOMEM, "marker");
        r = next(ps);
        if (r < 0)
                return r;
        r = parse_operand(ps, &rhs);
        rv = rhs.value;
        if (r < 0)
                return r;

        if (strcmp(op, "in") == 0 || strcmp(op, "not in") == 0) {
                bool found = strstr(rv, lv) != NULL;
                *ret = op[0] == 'i' ? found : !found;
                return 0;
        }
        if (strcmp(op, "===") == 0) {
                *ret = strcmp(lv, rv) == 0;
                return 0;
        }
        if (lhs.is_version || rhs.is_version)
                return compare_versions(ps, op, lv, rv, ret);
        if (strcmp(op, "==") == 0 || strcmp(op, "!=") == 0) {
                bool eq = strcmp(lv, rv) == 0;
                *ret = op[0] == '=' ? eq : !eq;
                return 0;
        }
        if (strcmp(op, "<") == 0 || strcmp(op, "<=") == 0 || strcmp(op, ">") == 0 || strcmp(op, ">=") == 0 ||
            strcmp(op, "~=") == 0)
                return nb_error_input(ps->err, EINVAL, "marker '%s': cannot order '%s' %s '%s': not versions",
                                      ps->s, lv, op, rv);
        return nb_error_input(ps->err, EINVAL, "marker '%s': operator '%s' is not supported", ps->s, op);
}

/* Both operands of and/or are always parsed (and so checked), never short-circuited:
 * a marker is refused for what it says, whatever the interpreter. */
static int parse_and(struct parser *ps, int depth, bool *ret) {
        int r = parse_atom(ps, depth, ret);
        while (r >= 0 && tok_is(ps, "and")) {
                bool rhs;
                r = next(ps);
                if (r >= 0)
                        r = parse_atom(ps, depth, &rhs);
                if (r >= 0)
                        *ret = *ret && rhs;
        }
        return r;
}

static int parse_or(struct parser *ps, int depth, bool *ret) {
        int r = parse_and(ps, depth, ret);
        while (r >= 0 && tok_is(ps, "or")) {
                bool rhs;
                r = next(ps);
                if (r >= 0)
                        r = parse_and(ps, depth, &rhs);
                if (r >= 0)
                        *ret = *ret || rhs;
        }
        return r;
}

int nb_marker_eval(const char *marker, const struct nb_marker_env *env, bool *ret, struct nb_error *err) {
        struct parser ps = { .s = marker, .p = marker, .env = env, .err = err };
        bool v = false;
        int r = next(&ps);
        if (r < 0)
                return r;
        if (ps.tok == T_END)
                return fail(&ps, "empty marker");
        r = parse_or(&ps, 0, &v);
        if (r < 0)
                return r;
        if (ps.tok != T_END)
                return fail(&ps, "unexpected text after the expression");
        *ret = v;
        return 0;
}
