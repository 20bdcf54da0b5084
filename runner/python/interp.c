/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "python/interp.h"
#include "cache/digest.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/sandbox.h"

/* -I -S: no PYTHON* variables, no user or site packages, so the answer describes the
 * interpreter alone. One key=value per line; values never contain a newline. */
static const char probe_script[] =
        "import os, sys, sysconfig, platform\n"
        "try:\n"
        "    libc = os.confstr('CS_GNU_LIBC_VERSION') or ''\n"
        "except (ValueError, OSError, AttributeError):\n"
        "    libc = ''\n"
        "v = sys.version_info\n"
        "for k, x in (('major', v[0]), ('minor', v[1]),\n"
        "             ('version', platform.python_version()),\n"
        "             ('implementation', sys.implementation.name),\n"
        "             ('python_implementation', platform.python_implementation()),\n"
        "             ('sys_platform', sys.platform), ('os_name', os.name),\n"
        "             ('platform_system', platform.system()),\n"
        "             ('platform_machine', platform.machine()),\n"
        "             ('soabi', sysconfig.get_config_var('SOABI') or ''),\n"
        "             ('abiflags', getattr(sys, 'abiflags', '')),\n"
        "             ('platform', sysconfig.get_platform()), ('libc', libc),\n"
        "             ('cache_tag', sys.implementation.cache_tag or '')):\n"
        "    print(k + '=' + str(x).replace('\\n', ' '))\n";

/* Anything longer is not an answer to the script above (nor compileall's -q). */
#define PROBE_OUTPUT_MAX (64u << 10)
/* Starting Python takes well under a second even on a loaded machine. */
#define PROBE_TIMEOUT_SEC 120.0
/* The interpreter's walls: generous for compileall over a large venv, far below
 * what would hurt the host. */
#define PYTHON_MEMORY_MAX (2ull << 30)
#define PYTHON_PIDS_MAX 64u

void nb_python_done(struct nb_python *py) {
        char **fields[] = {
                &py->path, &py->version, &py->version_short, &py->implementation, &py->python_implementation,
                &py->sys_platform, &py->os_name, &py->platform_system, &py->platform_machine, &py->soabi,
                &py->abiflags, &py->platform, &py->cache_tag, &py->interp_tag, &py->abi_tag, &py->plat_tag,
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(fields); i++) {
                free(*fields[i]);
                *fields[i] = NULL;
        }
}

static void python_donep(struct nb_python *py) {
        nb_python_done(py);
}

static void config_donep(struct nb_sandbox_config *cfg) {
        nb_sandbox_config_done(cfg);
}

int nb_python_check_system(const char *python, const char *real, struct nb_error *err) {
        /* The venv links to the interpreter and the sandbox mounts only the system's
         * directories: one elsewhere (a pyenv build under $HOME, a script in the
         * checkout) would be invisible there, and must not run outside it either. */
        if (nb_sandbox_is_system_path(real))
                return 0;
        return nb_error_input(err, EINVAL, "python %s is %s, outside the system directories the sandbox mounts "
                              "(/usr, /bin, /sbin, /lib*): use a system interpreter such as /usr/bin/python3",
                              python, real);
}

static int configure(struct nb_sandbox_config *cfg, char *const argv[], const struct nb_python_run_opts *opts) {
        int r;
        if ((r = nb_sandbox_add_system_dirs(cfg)) < 0 || (r = nb_sandbox_set_argv(cfg, argv)) < 0)
                return r;
        if (opts && opts->venv && (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, opts->venv, "/venv", 0)) < 0)
                return r;
        if (opts && opts->out_size && (r = nb_sandbox_add_mount(cfg, NB_MOUNT_OUT_TMPFS, NULL, "/out", opts->out_size)) < 0)
                return r;
        /* The walls of a test: no network, bounded time, memory and processes, and an
         * empty environment (the answer must not depend on the caller's). */
        cfg->network = NB_NET_NONE;
        cfg->timeout_sec = opts && opts->timeout_sec > 0 ? opts->timeout_sec : PROBE_TIMEOUT_SEC;
        cfg->memory_bytes = PYTHON_MEMORY_MAX;
        cfg->pids_max = PYTHON_PIDS_MAX;
        cfg->capture_head = PROBE_OUTPUT_MAX;
        return 0;
}

/* nb_python_run(); with cancel, the run is cancellable (nb_sandbox_config.cancel) and
 * *cancel is the SIGINT or SIGTERM that stopped it, 0 when none did. */
static int run(char *const argv[], const struct nb_python_run_opts *opts, volatile sig_atomic_t *cancel, char **out,
               int *status, int *out_fd, struct nb_error *err) {
        if (out_fd)
                *out_fd = -1;
        if (!nb_sandbox_is_system_path(argv[0]))
                return nb_error_input(err, EPERM, "%s: only the system's interpreters run, and only in a sandbox",
                                      argv[0]);
        __attribute__((cleanup(config_donep))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        _cleanup_close_ int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0)
                return nb_error_set(err, errno, "/dev/null");
        int r = configure(&cfg, argv, opts);
        if (r < 0)
                return nb_error_set(err, -r, "%s: sandbox configuration", argv[0]);
        cfg.stdin_fd = devnull;
        cfg.cancel = cancel;
        __attribute__((cleanup(nb_sandbox_result_done))) struct nb_sandbox_result res = { .out_fd = -1 };
        r = nb_sandbox_run(&cfg, &res, err);
        if (r < 0) {
                /* The kernel would not run it (ENOEXEC: not a program; ENOENT: its #!
                 * interpreter is missing; EINVAL: a bad ELF): the caller's to name. */
                bool theirs = res.exec_failed && (r == -ENOEXEC || r == -ENOENT || r == -EINVAL || r == -EACCES);
                return nb_error_classify(err, theirs ? NB_ERROR_INPUT : NB_ERROR_INFRA,
                                         nb_error_wrap(err, -r, "python %s", argv[0]));
        }
        _cleanup_close_ int ofd = res.out_fd;
        res.out_fd = -1;
        if (res.timed_out)
                return nb_error_classify(err, NB_ERROR_INPUT,
                                         nb_error_setx(err, ETIMEDOUT, "python %s: no answer within %.0fs", argv[0],
                                                       cfg.timeout_sec));
        *out = res.output ? TAKE_PTR(res.output) : strdup("");
        if (!*out)
                return nb_error_set(err, ENOMEM, "python %s", argv[0]);
        *status = res.signal ? W_EXITCODE(0, res.signal) : W_EXITCODE(res.exit_code & 0xff, 0);
        if (out_fd)
                *out_fd = TAKE_FD(ofd);
        return 0;
}

int nb_python_run(char *const argv[], const struct nb_python_run_opts *opts, char **out, int *status, int *out_fd,
                  struct nb_error *err) {
        if (!opts || !opts->cancellable)
                return run(argv, opts, NULL, out, status, out_fd, err);
        volatile sig_atomic_t cancel = 0;
        int r = run(argv, opts, &cancel, out, status, out_fd, err);
        if (r < 0 || !cancel)
                return r;
        free(*out);
        *out = NULL;
        if (out_fd && *out_fd >= 0) {
                close(*out_fd);
                *out_fd = -1;
        }
        (void) raise(cancel);
        return nb_error_setx(err, ECANCELED, "python %s: interrupted by %s", argv[0],
                             cancel == SIGINT ? "SIGINT" : "SIGTERM");
}

/* The probe, asked again after a ^C or SIGTERM that stopped it: the signal was meant
 * for nestbox, not the interpreter, whose dying of it says nothing about it. The
 * signal goes on to nestbox's own handler (nestbox test's cancel cell, which ends the
 * run "interrupted" once it is planned) as if it had come between two runs; without
 * one, nestbox dies of it. A second signal during the next probe is the caller's
 * second signal (nestbox test then exits at once). */
static int probe_run(char *const argv[], char **out, int *status, struct nb_error *err) {
        for (unsigned i = 0;; i++) {
                volatile sig_atomic_t cancel = 0;
                int r = run(argv, NULL, &cancel, out, status, NULL, err);
                if (r < 0 || !cancel)
                        return r;
                free(*out);
                *out = NULL;
                (void) raise(cancel);
                if (i > 0)
                        return nb_error_setx(err, EINTR, "python %s: the interpreter probe was interrupted by %s",
                                             argv[0], cancel == SIGINT ? "SIGINT" : "SIGTERM");
        }
}

static int set_field(char **field, const char *value) {
        free(*field);
        *field = strdup(value);
        return *field ? 0 : -ENOMEM;
}

static int parse_probe(char *out, struct nb_python *py) {
        struct { const char *key; char **field; } keys[] = {
                { "version", &py->version },
                { "implementation", &py->implementation },
                { "python_implementation", &py->python_implementation },
                { "sys_platform", &py->sys_platform },
                { "os_name", &py->os_name },
                { "platform_system", &py->platform_system },
                { "platform_machine", &py->platform_machine },
                { "soabi", &py->soabi },
                { "abiflags", &py->abiflags },
                { "platform", &py->platform },
                { "cache_tag", &py->cache_tag },
        };
        bool have_major = false, have_minor = false;
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *eq = strchr(line, '=');
                if (!eq)
                        continue;
                *eq = 0;
                const char *v = eq + 1;
                if (strcmp(line, "major") == 0)
                        have_major = sscanf(v, "%u", &py->major) == 1;
                else if (strcmp(line, "minor") == 0)
                        have_minor = sscanf(v, "%u", &py->minor) == 1;
                else if (strcmp(line, "libc") == 0) {
                        if (sscanf(v, "glibc %u.%u", &py->glibc_major, &py->glibc_minor) != 2)
                                py->glibc_major = py->glibc_minor = 0;
                } else
                        for (size_t i = 0; i < NB_ELEMENTSOF(keys); i++)
                                if (strcmp(line, keys[i].key) == 0 && set_field(keys[i].field, v) < 0)
                                        return -ENOMEM;
        }
        if (!have_major || !have_minor || py->major != 3)
                return -EINVAL;
        for (size_t i = 0; i < NB_ELEMENTSOF(keys); i++)
                if (!*keys[i].field)
                        return -EINVAL;
        return 0;
}

/* The short interpreter names of the wheel tag spec (PEP 425). */
static const char *short_name(const char *impl) {
        if (strcmp(impl, "cpython") == 0)
                return "cp";
        if (strcmp(impl, "pypy") == 0)
                return "pp";
        if (strcmp(impl, "ironpython") == 0)
                return "ip";
        if (strcmp(impl, "jython") == 0)
                return "jy";
        return impl;
}

static char *normalize_tag(const char *s) {
        char *t = strdup(s);
        if (t)
                for (char *p = t; *p; p++)
                        if (*p == '-' || *p == '.')
                                *p = '_';
        return t;
}

static int derive_tags(struct nb_python *py) {
        if (asprintf(&py->version_short, "%u.%u", py->major, py->minor) < 0 ||
            asprintf(&py->interp_tag, "%s%u%u", short_name(py->implementation), py->major, py->minor) < 0)
                return -ENOMEM;
        if (strcmp(py->implementation, "cpython") == 0 || !*py->soabi) {
                if (asprintf(&py->abi_tag, "%s%s", py->interp_tag, py->abiflags) < 0)
                        return -ENOMEM;
        } else {
                /* packaging's _generic_abi: "pypy39-pp73-x86_64-linux-gnu" -> "pypy39_pp73". */
                _cleanup_free_ char *s = strdup(py->soabi);
                if (!s)
                        return -ENOMEM;
                char *d1 = strchr(s, '-');
                char *d2 = d1 ? strchr(d1 + 1, '-') : NULL;
                if (d2)
                        *d2 = 0;
                py->abi_tag = normalize_tag(s);
                if (!py->abi_tag)
                        return -ENOMEM;
        }
        py->plat_tag = normalize_tag(py->platform);
        if (!py->plat_tag)
                return -ENOMEM;
        py->env = (struct nb_marker_env) {
                .python_version = py->version_short,
                .python_full_version = py->version,
                .sys_platform = py->sys_platform,
                .platform_system = py->platform_system,
                .platform_machine = py->platform_machine,
                .os_name = py->os_name,
                .implementation_name = py->implementation,
                .platform_python_implementation = py->python_implementation,
        };
        return 0;
}

/* The probe's answer, from the cache when this very binary (same path, inode, size,
 * mtime and ctime) was asked before: a warm venv must not pay for starting Python. */
static int probe_output(struct nb_store *store, const char *python, const struct nb_python *py, char *const argv[],
                        char **out, int *status, struct nb_error *err) {
        char key[NB_DIGEST_HEX_LEN + 1];
        struct stat st;
        if (!store || stat(py->path, &st) < 0)
                return probe_run(argv, out, status, err);
        struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return nb_error_set(err, ENOMEM, "python %s", python);
        nb_hasher_update_str(h, "nestbox-python-probe-2"); /* 2: asked in a sandbox */
        nb_hasher_update_str(h, probe_script);
        nb_hasher_update_str(h, python);
        nb_hasher_update_str(h, py->path);
        nb_hasher_update_file_identity(h, &st);
        nb_hasher_finish(h, key);
        size_t len = 0;
        if (nb_ac_get(store, key, out, &len, NULL) == 0) {
                *status = 0;
                return 0;
        }
        int r = probe_run(argv, out, status, err);
        if (r >= 0 && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
                (void) nb_ac_put(store, key, *out, strlen(*out), NULL); /* only an optimisation */
        return r;
}

int nb_python_probe(struct nb_store *store, const char *python, struct nb_python *ret, struct nb_error *err) {
        _cleanup_(python_donep) struct nb_python py = {};
        py.path = realpath(python, NULL);
        if (!py.path) {
                /* No such interpreter is a wrong name; an unreadable path is the machine's. */
                int e = errno;
                return nb_error_classify(err, e == ENOENT ? NB_ERROR_INPUT : NB_ERROR_INFRA,
                                         nb_error_set(err, e, "python %s", python));
        }
        struct stat st;
        if (stat(py.path, &st) < 0)
                return nb_error_set(err, errno, "python %s", py.path);
        if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
                return nb_error_input(err, EINVAL, "python %s: not an executable file", python);
        /* nestbox.json names the interpreter, and the workspace is not trusted: what it
         * names runs only if the sandbox can see it, and then only inside one. */
        int r = nb_python_check_system(python, py.path, err);
        if (r < 0)
                return r;
        py.size = (uint64_t) st.st_size;
        py.mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;

        _cleanup_free_ char *out = NULL;
        int status = 0;
        /* The real path: the sandbox has the system directories at their own paths, and
         * Python finds its prefix from it as from any link to it. */
        char *argv[] = { py.path, (char *) "-I", (char *) "-S", (char *) "-c", (char *) probe_script, NULL };
        r = probe_output(store, python, &py, argv, &out, &status, err);
        if (r < 0)
                return r;
        /* Killed (out of memory, by another process): not what the interpreter answers. */
        if (WIFSIGNALED(status))
                return nb_error_setx(err, EINTR, "python %s: the interpreter probe was killed by signal %d (%s)", python,
                                     WTERMSIG(status), strsignal(WTERMSIG(status)));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                size_t n = strcspn(out, "\n");
                return nb_error_input(err, EINVAL, "python %s: the interpreter probe failed%s%.*s", python,
                                      n ? ": " : "", (int) (n > 200 ? 200 : n), out);
        }
        r = parse_probe(out, &py);
        if (r == -ENOMEM)
                return nb_error_set(err, ENOMEM, "python %s", python);
        if (r < 0)
                return nb_error_input(err, EINVAL, "python %s: not a Python 3 interpreter nestbox understands", python);
        if (derive_tags(&py) < 0)
                return nb_error_set(err, ENOMEM, "python %s", python);
        *ret = py;
        py = (struct nb_python) {};
        return 0;
}

/* "py3" -> (3, -1), "py311" -> (3, 11) after the two-letter prefix; false when the
 * rest is not a version. */
static bool tag_version(const char *digits, unsigned *major, int *minor) {
        if (!isdigit((unsigned char) digits[0]) || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 4)
                return false;
        *major = (unsigned) (digits[0] - '0');
        *minor = digits[1] ? atoi(digits + 1) : -1;
        return true;
}

/* A python tag next to abi "none": our own interpreter tag, or pyX / pyXY no newer
 * than us. */
static int py_score(const struct nb_python *py, const char *t) {
        unsigned major;
        int minor;
        if (strcmp(t, py->interp_tag) == 0)
                return 90;
        if (strncmp(t, "py", 2) != 0 || !tag_version(t + 2, &major, &minor) || major != py->major)
                return 0;
        if (minor < 0)
                return 20 + (int) py->minor; /* "py3" ranks with our own "py3Y" */
        return minor <= (int) py->minor ? 20 + minor : 0;
}

/* abi3 wheels built for CPython 3.2 .. us; never on free-threaded builds. */
static int abi3_score(const struct nb_python *py, const char *t) {
        unsigned major;
        int minor;
        if (strcmp(py->implementation, "cpython") != 0 || strchr(py->abiflags, 't'))
                return 0;
        if (strncmp(t, "cp", 2) != 0 || !tag_version(t + 2, &major, &minor) || major != py->major)
                return 0;
        return minor >= 2 && minor <= (int) py->minor ? 40 + minor : 0;
}

/* manylinux1 / 2010 / 2014 are the old names of manylinux_2_5 / 2_12 / 2_17. */
static int manylinux_score(const struct nb_python *py, const char *t, const char *arch) {
        static const struct { const char *name; unsigned minor; } legacy[] = {
                { "manylinux1_", 5 }, { "manylinux2010_", 12 }, { "manylinux2014_", 17 },
        };
        unsigned gmaj = 0, gmin = 0;
        const char *rest = NULL;
        for (size_t i = 0; i < NB_ELEMENTSOF(legacy); i++)
                if (strncmp(t, legacy[i].name, strlen(legacy[i].name)) == 0) {
                        gmaj = 2;
                        gmin = legacy[i].minor;
                        rest = t + strlen(legacy[i].name);
                }
        if (!rest) {
                int n = 0;
                if (sscanf(t, "manylinux_%u_%u_%n", &gmaj, &gmin, &n) != 2 || n == 0)
                        return 0;
                rest = t + n;
        }
        if (strcmp(rest, arch) != 0 || py->glibc_major == 0)
                return 0;
        if (gmaj > py->glibc_major || (gmaj == py->glibc_major && gmin > py->glibc_minor))
                return 0;
        return 50 + (int) (gmin > 49 ? 49 : gmin);
}

static int plat_score(const struct nb_python *py, const char *t) {
        if (strcmp(t, "any") == 0)
                return 1;
        if (strcmp(t, py->plat_tag) == 0)
                return 10;
        if (strncmp(py->plat_tag, "linux_", 6) == 0)
                return manylinux_score(py, t, py->plat_tag + 6);
        return 0;
}

static int triple_score(const struct nb_python *py, const char *pyt, const char *abit, const char *platt) {
        int ps = plat_score(py, platt);
        if (ps == 0)
                return 0;
        /* The ABI class dominates (exact > abi3 > none), then the python tag, then the
         * platform: packaging.tags.sys_tags() order, reduced to one number. */
        int s = 0, cls = 0;
        if (strcmp(abit, py->abi_tag) == 0) {
                s = strcmp(pyt, py->interp_tag) == 0 ? 90 : 0;
                cls = 3;
        } else if (strcmp(abit, "abi3") == 0) {
                s = abi3_score(py, pyt);
                cls = 2;
        } else if (strcmp(abit, "none") == 0) {
                s = py_score(py, pyt);
                cls = 1;
        }
        return s ? cls * 10000 + s * 100 + ps : 0;
}

/* Splits a compressed tag set ("py2.py3") into a NULL-terminated vector. */
static char **split_dots(const char *s) {
        size_t n = 1;
        for (const char *p = s; *p; p++)
                n += *p == '.';
        _cleanup_strv_free_ char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return NULL;
        const char *p = s;
        for (size_t i = 0; i < n; i++) {
                size_t len = strcspn(p, ".");
                v[i] = strndup(p, len);
                if (!v[i])
                        return NULL;
                p += len + (p[len] == '.');
        }
        return TAKE_PTR(v);
}

int nb_python_tag_score(const struct nb_python *py, const char *pytags, const char *abitags, const char *plattags) {
        _cleanup_strv_free_ char **pys = split_dots(pytags);
        _cleanup_strv_free_ char **abis = split_dots(abitags);
        _cleanup_strv_free_ char **plats = split_dots(plattags);
        if (!pys || !abis || !plats)
                return -ENOMEM;
        int best = 0;
        for (char **a = pys; *a; a++)
                for (char **b = abis; *b; b++)
                        for (char **c = plats; *c; c++) {
                                int s = triple_score(py, *a, *b, *c);
                                if (s > best)
                                        best = s;
                        }
        return best;
}
