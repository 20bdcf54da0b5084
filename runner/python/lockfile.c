/* SPDX-License-Identifier: MIT */
/* The lockfile parser. Lines are joined and comments stripped the way pip does it
 * (pip/_internal/req/req_file.py: join_lines, ignore_comments, break_args_options), so
 * a file pip accepts in --require-hashes mode means the same thing here. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "python/lockfile.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

/* Real lockfiles are kilobytes; this only stops a wrong path from eating memory. */
#define LOCKFILE_MAX (16u << 20)

char *nb_pep503_normalize(const char *name) {
        char *out = malloc(strlen(name) + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = name; *p;) {
                if (*p == '-' || *p == '_' || *p == '.') {
                        p += strspn(p, "-_.");
                        *o++ = '-';
                } else
                        *o++ = (char) tolower((unsigned char) *p++);
        }
        *o = 0;
        return out;
}

static void requirement_done(struct nb_requirement *r) {
        free(r->name);
        free(r->version);
        char **h = r->hashes;
        nb_strv_freep(&h);
}

void nb_lockfile_done(struct nb_lockfile *l) {
        for (size_t i = 0; i < l->n_reqs; i++)
                requirement_done(&l->reqs[i]);
        free(l->reqs);
        l->reqs = NULL;
        l->n_reqs = l->n_skipped = 0;
}

static void lockfile_donep(struct nb_lockfile *l) {
        nb_lockfile_done(l);
}

static void requirement_donep(struct nb_requirement *r) {
        requirement_done(r);
}

struct ctx {
        const char *name;
        unsigned line;
        const struct nb_marker_env *env;
        struct nb_error *err;
};

/* What the lockfile says is wrong: the user's to fix. */
#define BAD(c, ...) nb_error_input((c)->err, EINVAL, "lockfile %s:%u: " __VA_ARGS__)
#define BADARGS(c) (c)->name, (c)->line

static bool is_name_char(char c) {
        return isalnum((unsigned char) c) || c == '-' || c == '_' || c == '.';
}

static bool is_version_char(char c) {
        return isalnum((unsigned char) c) || strchr(".+!_-*", c);
}

static int push_hash(struct ctx *c, struct nb_requirement *req, size_t *n, const char *spec) {
        const char *colon = strchr(spec, ':');
        if (!colon)
                return BAD(c, "--hash=%s: expected ALGORITHM:HEX", BADARGS(c), spec);
        size_t alen = (size_t) (colon - spec);
        const char *hex = colon + 1;
        /* pip also accepts the stronger SHA-2 digests; nestbox checks sha256 and keeps
         * the others only as far as not rejecting a lockfile pip would take. */
        if ((alen == 6 && strncmp(spec, "sha384", 6) == 0) || (alen == 6 && strncmp(spec, "sha512", 6) == 0))
                return 0;
        if (alen != 6 || strncmp(spec, "sha256", 6) != 0)
                return BAD(c, "--hash=%s: unsupported algorithm (use sha256)", BADARGS(c), spec);
        if (strlen(hex) != 64 || strspn(hex, "0123456789abcdefABCDEF") != 64)
                return BAD(c, "--hash=%s: a sha256 is 64 hex characters", BADARGS(c), spec);
        char **v = realloc(req->hashes, (*n + 2) * sizeof(char *));
        if (!v)
                return nb_error_set(c->err, ENOMEM, "lockfile %s", c->name);
        req->hashes = v;
        v[*n] = strdup(hex);
        if (!v[*n])
                return nb_error_set(c->err, ENOMEM, "lockfile %s", c->name);
        for (char *p = v[*n]; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        v[++*n] = NULL;
        return 0;
}

/* The options after the requirement: only --hash belongs there. */
static int parse_options(struct ctx *c, char *opts, struct nb_requirement *req) {
        size_t n = 0;
        char *save = NULL;
        for (char *t = strtok_r(opts, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
                int r;
                if (strncmp(t, "--hash=", 7) == 0)
                        r = push_hash(c, req, &n, t + 7);
                else if (strcmp(t, "--hash") == 0) {
                        char *v = strtok_r(NULL, " \t", &save);
                        if (!v)
                                return BAD(c, "--hash needs a value", BADARGS(c));
                        r = push_hash(c, req, &n, v);
                } else
                        return BAD(c, "option '%s' is not supported on a requirement", BADARGS(c), t);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* "name[extras] == version ; marker". Extras are accepted and ignored: a lockfile
 * lists every distribution the extras pull in on lines of their own. */
static int parse_spec(struct ctx *c, char *spec, struct nb_requirement *req, char **ret_marker) {
        char *p = spec;
        size_t n = 0;
        while (is_name_char(p[n]))
                n++;
        if (n == 0 || !isalnum((unsigned char) p[0]) || !isalnum((unsigned char) p[n - 1]))
                return BAD(c, "expected a package name, got '%s'", BADARGS(c), spec);
        char save = p[n];
        p[n] = 0;
        req->name = nb_pep503_normalize(p);
        p[n] = save;
        if (!req->name)
                return nb_error_set(c->err, ENOMEM, "lockfile %s", c->name);
        p += n;
        p += strspn(p, " \t");
        if (*p == '[') {
                char *end = strchr(p, ']');
                if (!end)
                        return BAD(c, "%s: unterminated extras", BADARGS(c), req->name);
                p = end + 1;
                p += strspn(p, " \t");
        }
        if (*p == '@')
                return BAD(c, "%s: URL requirements are not supported; pin it with ==VERSION", BADARGS(c), req->name);
        if (strncmp(p, "==", 2) != 0 || p[2] == '=')
                return BAD(c, "%s is not pinned: use %s==VERSION", BADARGS(c), req->name, req->name);
        p += 2;
        p += strspn(p, " \t");
        n = 0;
        while (p[n] && is_version_char(p[n]))
                n++;
        if (n == 0)
                return BAD(c, "%s==: missing version", BADARGS(c), req->name);
        req->version = strndup(p, n);
        if (!req->version)
                return nb_error_set(c->err, ENOMEM, "lockfile %s", c->name);
        if (strchr(req->version, '*'))
                return BAD(c, "%s==%s is a wildcard, not a pin", BADARGS(c), req->name, req->version);
        p += n;
        p += strspn(p, " \t");
        if (*p == ',')
                return BAD(c, "%s==%s: only one specifier (==) is allowed", BADARGS(c), req->name, req->version);
        if (*p == ';') {
                p++;
                p += strspn(p, " \t");
                size_t len = strlen(p);
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len == 0)
                        return BAD(c, "%s==%s: empty marker after ';'", BADARGS(c), req->name, req->version);
                *ret_marker = strndup(p, len);
                if (!*ret_marker)
                        return nb_error_set(c->err, ENOMEM, "lockfile %s", c->name);
                return 0;
        }
        if (*p)
                return BAD(c, "%s==%s: unexpected '%s'", BADARGS(c), req->name, req->version, p);
        return 0;
}

/* Where the options begin: the first '-' at the start of a word, outside quotes (pip
 * splits on the first word that starts with '-'; the quotes only matter for markers
 * like platform_machine == "x86-64", which pip never splits either). */
static char *find_options(char *line) {
        char quote = 0;
        for (char *p = line; *p; p++) {
                if (quote) {
                        if (*p == quote)
                                quote = 0;
                } else if (*p == '\'' || *p == '"')
                        quote = *p;
                else if (*p == '-' && (p == line || p[-1] == ' ' || p[-1] == '\t'))
                        return p;
        }
        return NULL;
}

/* Global options: the ones that only say where pip would download from are harmless
 * (nestbox installs from the wheelhouse); anything that changes what is installed is
 * refused. */
static int parse_global_option(struct ctx *c, const char *line) {
        static const char *const ignored[] = {
                "--require-hashes", "--index-url", "-i", "--extra-index-url", "--find-links", "-f",
                "--trusted-host", "--no-index", "--only-binary", "--prefer-binary", "--pre",
        };
        size_t n = strcspn(line, " \t=");
        for (size_t i = 0; i < NB_ELEMENTSOF(ignored); i++)
                if (strlen(ignored[i]) == n && strncmp(line, ignored[i], n) == 0)
                        return 0;
        return BAD(c, "option '%.*s' is not supported in a nestbox lockfile", BADARGS(c), (int) n, line);
}

static int parse_line(struct ctx *c, char *line, struct nb_lockfile *l) {
        if (line[0] == '-')
                return parse_global_option(c, line);
        _cleanup_(requirement_donep) struct nb_requirement req = { .line = c->line };
        _cleanup_free_ char *marker = NULL;
        char *opts = find_options(line);
        if (opts)
                opts[-1] = 0;
        int r = parse_spec(c, line, &req, &marker);
        if (r < 0)
                return r;
        if (opts) {
                r = parse_options(c, opts, &req);
                if (r < 0)
                        return r;
        }
        if (!req.hashes)
                return BAD(c, "%s==%s has no --hash=sha256:... (every requirement must be hash-pinned)",
                           BADARGS(c), req.name, req.version);
        if (marker) {
                bool on = false;
                r = nb_marker_eval(marker, c->env, &on, c->err);
                if (r < 0)
                        return nb_error_wrap(c->err, -r, "lockfile %s:%u: %s==%s", BADARGS(c), req.name, req.version);
                if (!on) {
                        l->n_skipped++;
                        return 0;
                }
        }
        struct nb_requirement *v = realloc(l->reqs, (l->n_reqs + 1) * sizeof(*v));
        if (!v)
                return nb_error_set(c->err, ENOMEM, "lockfile %s", c->name);
        l->reqs = v;
        l->reqs[l->n_reqs++] = req;
        req = (struct nb_requirement) {};
        return 0;
}

/* pip: a comment starts at a '#' that begins the line or follows whitespace. */
static void strip_comment(char *s) {
        for (char *p = s; *p; p++)
                if (*p == '#' && (p == s || *(p - 1) == ' ' || *(p - 1) == '\t')) {
                        *p = 0;
                        return;
                }
}

static char *trim(char *s) {
        s += strspn(s, " \t");
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
                s[--n] = 0;
        return s;
}

static bool is_comment_line(const char *s) {
        s += strspn(s, " \t");
        return *s == '#';
}

static int cmp_req(const void *a, const void *b) {
        return strcmp(((const struct nb_requirement *) a)->name, ((const struct nb_requirement *) b)->name);
}

int nb_lockfile_parse(const char *name, const char *text, size_t len, const struct nb_marker_env *env,
                      struct nb_lockfile *ret, struct nb_error *err) {
        struct ctx c = { .name = name, .env = env, .err = err };
        if (memchr(text, 0, len))
                return nb_error_input(err, EINVAL, "lockfile %s: contains a NUL byte", name);
        _cleanup_free_ char *copy = strndup(text, len);
        /* The logical line being assembled from '\'-continued physical lines. */
        _cleanup_free_ char *logical = NULL;
        size_t logical_len = 0;
        if (!copy)
                return nb_error_set(err, ENOMEM, "lockfile %s", name);
        _cleanup_(lockfile_donep) struct nb_lockfile l = {};
        unsigned lineno = 0, first = 0;
        char *p = copy;
        while (*p || logical) {
                char *nl = strchr(p, '\n');
                if (nl)
                        *nl = 0;
                lineno++;
                char *phys = p;
                p = nl ? nl + 1 : p + strlen(p);
                size_t n = strlen(phys);
                while (n > 0 && (phys[n - 1] == '\r' || phys[n - 1] == ' ' || phys[n - 1] == '\t'))
                        phys[--n] = 0;
                bool cont = n > 0 && phys[n - 1] == '\\' && !is_comment_line(phys) && (nl || *p);
                if (cont)
                        phys[--n] = 0;
                if (!logical)
                        first = lineno;
                char *grown = realloc(logical, logical_len + n + 2);
                if (!grown)
                        return nb_error_set(err, ENOMEM, "lockfile %s", name);
                logical = grown;
                /* A comment line inside a continuation is kept apart by a space, as pip does. */
                if (is_comment_line(phys) && logical_len > 0)
                        logical[logical_len++] = ' ';
                memcpy(logical + logical_len, phys, n + 1);
                logical_len += n;
                if (cont)
                        continue;
                strip_comment(logical);
                char *line = trim(logical);
                c.line = first;
                if (*line) {
                        int r = parse_line(&c, line, &l);
                        if (r < 0)
                                return r;
                }
                free(logical);
                logical = NULL;
                logical_len = 0;
                if (!nl && !*p)
                        break;
        }
        if (l.n_reqs > 1)
                nb_qsort(l.reqs, l.n_reqs, sizeof(l.reqs[0]), cmp_req);
        for (size_t i = 1; i < l.n_reqs; i++)
                if (strcmp(l.reqs[i - 1].name, l.reqs[i].name) == 0) {
                        unsigned a = l.reqs[i - 1].line, b = l.reqs[i].line;
                        return nb_error_input(err, EINVAL, "lockfile %s:%u: %s is pinned twice (also on line %u)",
                                              name, a > b ? a : b, l.reqs[i].name, a > b ? b : a);
                }
        *ret = l;
        l = (struct nb_lockfile) {};
        return 0;
}

int nb_lockfile_load(const char *path, const struct nb_marker_env *env, struct nb_lockfile *ret,
                     struct nb_error *err) {
        /* The lockfile is named by the user on the command line, so it is opened like
         * any file they name (not beneath anything); only its type and size are checked. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                /* A lockfile that is not there (or a path through a file, a link loop)
                 * is a wrong name on the command line or in nestbox.json; one that
                 * cannot be read (EACCES, EIO) is the machine's. */
                int e = errno;
                return nb_error_classify(err, nb_error_class_of_path(e), nb_error_set(err, e, "lockfile %s", path));
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return nb_error_set(err, errno, "lockfile %s", path);
        if (!S_ISREG(st.st_mode))
                return nb_error_input(err, EINVAL, "lockfile %s: not a regular file", path);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = nb_read_fd(fd, LOCKFILE_MAX, &data, &len);
        if (r < 0)
                return nb_error_set(err, -r, "lockfile %s", path);
        return nb_lockfile_parse(path, data, len, env, ret, err);
}
