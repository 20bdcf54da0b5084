/* SPDX-License-Identifier: MIT */
/* The cgroup v2 subtree the cgroup2 backend makes its cgroups in: which one, whether it
 * may be used, and making it ready (crun's sub-cgroup of a systemd scope, systemd's
 * Delegate=yes, in spirit).
 *
 * A cgroup is delegated to a user when its directory, its cgroup.procs and its
 * cgroup.subtree_control are the user's: the kernel's model of delegation
 * (Documentation/admin-guide/cgroup-v2.rst), and what systemd's Delegate=yes does for
 * a unit of a user's manager (`systemd-run --user --scope -p Delegate=yes`). The host's
 * root owns every cgroup, so for it ownership says nothing: it takes its own cgroup
 * only when that already hands memory and pids to its children, as before, and never
 * moves. Root of a user namespace (a rootless container) is an ordinary delegatee: a
 * cgroup shows as its own only when it was handed to the uid mapped to it.
 *
 * The kernel's "no internal processes" rule: a cgroup can hand memory and pids to its
 * children only while it holds no process itself. nestbox lives in the delegated
 * cgroup D it was started in, so, as crun does in a delegated scope, it moves itself
 * into a leaf, D/nestbox-supervisor, then writes "+memory +pids" to
 * D/cgroup.subtree_control, then makes each sandbox's cgroup beside the leaf
 * (D/nestbox-<pid>-<n>). It does so only when it is D's only process: the invoker's
 * shell or build tool in D would make the kernel refuse, and moving them is not
 * nestbox's business. Nothing outside D is ever written. Processes forked after the
 * move (the items of `nestbox test -j`) start in the leaf; finding it as their own
 * cgroup, they take its parent D.
 *
 * A scope of a user's manager without Delegate=yes is the user's too, and nestbox
 * cannot tell it from a delegated one (systemd's user.delegate xattr is not written by
 * every version): hence the command doctor recommends asks for Delegate=yes.
 *
 * Test only: NESTBOX_TEST_CGROUP2_ROOT=DIR makes the plain directory DIR stand for the
 * cgroup v2 hierarchy, nestbox's own cgroup being its top; its files are what a test
 * wrote and what nestbox writes (limits_cgroup.c creates them). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "limits-internal.h"

#define LEAF "nestbox-supervisor"

const char *nb_cgroup2_test_root(void) {
        const char *v = getenv("NESTBOX_TEST_CGROUP2_ROOT");
        return v && *v == '/' ? v : NULL;
}

/* A cgroup file, whole (cgroup.procs of a big cgroup is long, but never 16 MiB). */
static char *read_cgroup_file(const char *dir, const char *file) {
        _cleanup_free_ char *path = NULL;
        char *data = NULL;
        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return NULL;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || nb_read_fd(fd, 16 << 20, &data, NULL) < 0)
                return NULL;
        return data;
}

/* Whether a space-separated controller list names c ("+memory" as written counts). */
static bool lists(const char *list, const char *c) {
        size_t n = strlen(c);
        for (const char *p = list; p && *p;) {
                p += strspn(p, " \t\n+");
                size_t len = strcspn(p, " \t\n");
                if (len == n && strncmp(p, c, n) == 0)
                        return true;
                p += len;
        }
        return false;
}

static bool lists_both(const char *list) {
        return lists(list, "memory") && lists(list, "pids");
}

static bool writable(const char *dir, const char *file) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return false;
        return faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0;
}

/* The processes in dir other than this one. */
static size_t others_in(const char *dir) {
        _cleanup_free_ char *procs = read_cgroup_file(dir, "cgroup.procs");
        size_t n = 0;
        for (char *p = procs, *end; p && *p; p = end) {
                long pid = strtol(p, &end, 10);
                if (end == p)
                        break;
                n += pid != (long) getpid();
        }
        return n;
}

void nb_cgroup2_subtree_done(struct nb_cgroup2_subtree *s) {
        free(s->dir);
        s->dir = NULL;
}

/* Whether this process is the host's root: uid 0 in the initial user namespace, whose
 * uid_map is the identity over the whole range. */
static bool host_root(void) {
        if (geteuid() != 0)
                return false;
        _cleanup_free_ char *map = read_cgroup_file("/proc/self", "uid_map");
        unsigned long inside, outside, count;
        return !map || (sscanf(map, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 &&
                        count == 4294967295ul);
}

/* Whether dir is the invoker's to write: the kernel's model of delegation. */
static int check_delegated(const char *dir, struct nb_error *why) {
        struct stat st;
        if (stat(dir, &st) < 0)
                return nb_error_set(why, errno, "%s", dir);
        if (st.st_uid != geteuid())
                return nb_error_setx(why, EACCES, "%s belongs to uid %u, not to uid %u: not delegated to this user",
                                     dir, (unsigned) st.st_uid, (unsigned) geteuid());
        static const char *const files[] = { "cgroup.procs", "cgroup.subtree_control" };
        for (size_t i = 0; i < NB_ELEMENTSOF(files); i++)
                if (!writable(dir, files[i]))
                        return nb_error_setx(why, EACCES, "%s/%s is not writable by uid %u: not delegated", dir,
                                             files[i], (unsigned) geteuid());
        if (faccessat(AT_FDCWD, dir, W_OK, AT_EACCESS) < 0)
                return nb_error_setx(why, EACCES, "%s is not writable by uid %u: not delegated", dir,
                                     (unsigned) geteuid());
        return 0;
}

int nb_cgroup2_find(struct nb_cgroup2_subtree *ret, struct nb_error *why) {
        *ret = (struct nb_cgroup2_subtree) { 0 };
        _cleanup_free_ char *dir = nb_cgroup_dir("");
        if (!dir)
                return nb_error_setx(why, ENOENT, "no cgroup v2 hierarchy holds this process");
        bool root = host_root();
        /* Our own leaf (we moved, or were forked after the move): the subtree is above. */
        char *slash = strrchr(dir, '/');
        bool in_leaf = !root && slash && slash != dir && strcmp(slash + 1, LEAF) == 0 && !nb_cgroup2_test_root();
        if (in_leaf)
                *slash = 0;
        int r = root ? 0 : check_delegated(dir, why);
        if (r < 0)
                return r;
        _cleanup_free_ char *ctrl = read_cgroup_file(dir, "cgroup.controllers");
        if (!ctrl || !lists_both(ctrl)) {
                if (ctrl)
                        ctrl[strcspn(ctrl, "\n")] = 0;
                return nb_error_setx(why, ENOTSUP, "%s: memory and pids are not among its controllers (it has: %s)",
                                     dir, ctrl && *ctrl ? ctrl : "none");
        }
        _cleanup_free_ char *subtree = read_cgroup_file(dir, "cgroup.subtree_control");
        bool enabled = subtree && lists_both(subtree);
        if (root && (!enabled || faccessat(AT_FDCWD, dir, W_OK, AT_EACCESS) < 0))
                return nb_error_setx(why, ENOTSUP,
                                     "%s: memory and pids are not handed to its children (cgroup.subtree_control); "
                                     "as root nestbox uses its own cgroup v2 only when they are, and never moves",
                                     dir);
        size_t others = enabled ? 0 : others_in(dir);
        if (others)
                return nb_error_setx(why, EBUSY,
                                     "%s holds %zu other process%s: a cgroup hands memory and pids to its children "
                                     "only while it holds no process, so nestbox must be its delegated cgroup's "
                                     "only process", dir, others, others == 1 ? "" : "es");
        *ret = (struct nb_cgroup2_subtree) { .dir = TAKE_PTR(dir), .in_leaf = in_leaf, .enabled = enabled };
        return 0;
}

int nb_cgroup2_enter(struct nb_cgroup2_subtree *s, struct nb_error *err) {
        if (s->enabled)
                return 0;
        if (!s->in_leaf) {
                _cleanup_free_ char *leaf = NULL;
                if (asprintf(&leaf, "%s/" LEAF, s->dir) < 0)
                        return nb_error_set(err, ENOMEM, "cgroup2");
                if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
                        return nb_error_set(err, errno, "cgroup2: creating %s", leaf);
                int r = nb_cgroup_write_u64(leaf, "cgroup.procs", (uint64_t) getpid());
                if (r < 0)
                        return nb_error_set(err, -r, "cgroup2: moving nestbox into %s", leaf);
                s->in_leaf = true;
        }
        /* Left in the leaf when this fails: the next run finds it and tries again. */
        int r = nb_cgroup_write(s->dir, "cgroup.subtree_control", "+memory +pids");
        if (r < 0)
                return nb_error_set(err, -r, "cgroup2: handing memory and pids to the children of %s", s->dir);
        s->enabled = true;
        return 0;
}

int nb_limits_enter_delegated(struct nb_error *err) {
        struct nb_cgroup2_subtree s;
        if (nb_cgroup2_find(&s, NULL) < 0)
                return 0; /* none: the backends choose another way */
        int r = nb_cgroup2_enter(&s, err);
        nb_cgroup2_subtree_done(&s);
        return r;
}

/* Whether `systemd-run --user --scope` can work here: the program on PATH and a user
 * manager to ask, which systemd-run reaches at $XDG_RUNTIME_DIR/systemd/private or over
 * the session bus. NULL when it can, else why not. */
char *nb_systemd_scope_unavailable(void) {
        const char *path = getenv("PATH");
        bool found = false;
        for (const char *p = path; p && *p && !found;) {
                size_t len = strcspn(p, ":");
                _cleanup_free_ char *exe = NULL;
                if (len && asprintf(&exe, "%.*s/systemd-run", (int) len, p) >= 0)
                        found = access(exe, X_OK) == 0;
                p += len + (p[len] == ':');
        }
        char *why = NULL;
        if (!found)
                return strdup("systemd-run is not on PATH");
        const char *xdg = getenv("XDG_RUNTIME_DIR"), *bus = getenv("DBUS_SESSION_BUS_ADDRESS");
        if (bus && *bus)
                return NULL;
        _cleanup_free_ char *sock = NULL;
        struct stat st;
        if (xdg && *xdg && asprintf(&sock, "%s/systemd/private", xdg) >= 0 && stat(sock, &st) == 0 &&
            S_ISSOCK(st.st_mode))
                return NULL;
        if (!xdg || !*xdg)
                why = strdup("no systemd user manager to ask: neither XDG_RUNTIME_DIR nor DBUS_SESSION_BUS_ADDRESS is set");
        else if (asprintf(&why, "no systemd user manager to ask: no %s/systemd/private, no DBUS_SESSION_BUS_ADDRESS",
                          xdg) < 0)
                why = NULL;
        return why;
}

/* The path of this process's binary (readlink grows its buffer until the name fits). */
static char *self_exe(void) {
        for (size_t cap = 256; cap <= (1 << 16); cap *= 2) {
                _cleanup_free_ char *buf = malloc(cap);
                if (!buf)
                        return NULL;
                ssize_t n = readlink("/proc/self/exe", buf, cap);
                if (n < 0)
                        return NULL;
                if ((size_t) n < cap) {
                        buf[n] = 0;
                        return TAKE_PTR(buf);
                }
        }
        return NULL;
}

/* NESTBOX_CGROUP=systemd-scope: run nestbox again as the only process of a new scope of
 * the invoker's systemd user manager, with Delegate=yes, so that it finds a delegated
 * subtree there. systemd-run --scope execs the command in the same process once the
 * scope exists: stdio, the terminal, signals, the environment and the exit status stay
 * the caller's. NESTBOX_CGROUP_SCOPED marks the second start, which never asks again. */
int nb_limits_scope_command(char *const *argv, char ***ret, char **why) {
        *ret = NULL;
        *why = NULL;
        const char *want = getenv("NESTBOX_CGROUP");
        if (!want || !*want || strcmp(want, "auto") == 0)
                return 0;
        if (strcmp(want, "systemd-scope") != 0) {
                if (asprintf(why, "NESTBOX_CGROUP=%s: expected systemd-scope or auto", want) < 0)
                        *why = NULL;
                return -EINVAL;
        }
        struct nb_cgroup2_subtree s;
        int found = nb_cgroup2_find(&s, NULL);
        nb_cgroup2_subtree_done(&s);
        /* Root keeps its own backends; a usable subtree needs no scope; and once is enough. */
        if (host_root() || found == 0 || getenv("NESTBOX_CGROUP_SCOPED"))
                return 0;
        if ((*why = nb_systemd_scope_unavailable()))
                return -ENOENT;
        static const char *const head[] = { "systemd-run", "--user", "--scope", "--quiet", "--collect",
                                            "-p", "Delegate=yes", "--" };
        size_t n = 0;
        while (argv[n])
                n++;
        _cleanup_strv_free_ char **cmd = calloc(NB_ELEMENTSOF(head) + n + 1, sizeof(char *));
        if (!cmd)
                return -ENOMEM;
        size_t k = 0;
        for (; k < NB_ELEMENTSOF(head); k++)
                if (!(cmd[k] = strdup(head[k])))
                        return -ENOMEM;
        /* This very binary, not whatever "nestbox" PATH finds. */
        if (!(cmd[k++] = self_exe()))
                return errno ? -errno : -ENAMETOOLONG;
        for (size_t i = 1; i < n; i++)
                if (!(cmd[k++] = strdup(argv[i])))
                        return -ENOMEM;
        if (setenv("NESTBOX_CGROUP_SCOPED", "1", 1) < 0)
                return -errno;
        *ret = TAKE_PTR(cmd);
        return 0;
}
