/* SPDX-License-Identifier: MIT */
/* Memory and pids limits behind one table of backends (crun's cgroup managers in
 * spirit): cgroup v2 where a writable cgroup with both controllers exists; the cgroup
 * v1 memory and pids hierarchies where that is what the machine has (hybrid hosts);
 * rlimits where neither can be used. Memory and pids are chosen independently: on a
 * v1 host one may be writable and the other not. The result says which was used. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "sandbox-internal.h"

struct nb_limits {
        uint64_t memory, pids;
        enum nb_limit_backend mem_backend, pids_backend;
        char *mem_dir;  /* the cgroup directory holding the memory limit */
        char *pids_dir; /* the same for pids (same directory on cgroup v2) */
};

/* ---- where the hierarchies are ---------------------------------------------------- */

/* The mount point of the cgroup hierarchy with the given controller ("" = v2). */
static char *cgroup_mount(const char *controller) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                char *sep = strstr(line, " - ");
                if (!sep)
                        continue;
                char mnt[4096], fstype[64], source[256], opts[1024];
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
                    sscanf(sep + 3, "%63s %255s %1023s", fstype, source, opts) != 3)
                        continue;
                if (!*controller && strcmp(fstype, "cgroup2") == 0)
                        return strdup(mnt);
                if (*controller && strcmp(fstype, "cgroup") == 0) {
                        char *save = NULL;
                        for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save))
                                if (strcmp(o, controller) == 0)
                                        return strdup(mnt);
                }
        }
        return NULL;
}

/* Our own cgroup in that hierarchy, from /proc/self/cgroup ("" = the v2 line "0::"). */
static char *own_cgroup(const char *controller) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                line[strcspn(line, "\n")] = 0;
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = 0;
                const char *ctrls = c1 + 1;
                if (!*controller ? (strcmp(line, "0") == 0 && !*ctrls) : strstr(ctrls, controller) != NULL) {
                        if (*controller) {
                                bool found = false;
                                _cleanup_free_ char *copy = strdup(ctrls);
                                char *save = NULL;
                                for (char *o = copy ? strtok_r(copy, ",", &save) : NULL; o; o = strtok_r(NULL, ",", &save))
                                        found |= strcmp(o, controller) == 0;
                                if (!found)
                                        continue;
                        }
                        return strdup(c2 + 1);
                }
        }
        return NULL;
}

static char *cgroup_dir(const char *controller) {
        _cleanup_free_ char *mnt = cgroup_mount(controller);
        _cleanup_free_ char *own = own_cgroup(controller);
        char *dir = NULL;
        if (!mnt || !own || asprintf(&dir, "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own) < 0)
                return NULL;
        return dir;
}

static int write_str(const char *dir, const char *file, const char *value) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return -ENOMEM;
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        free(path);
        if (fd < 0)
                return -errno;
        int r = nb_write_all(fd, value, strlen(value));
        close(fd);
        return r;
}

static int write_u64(const char *dir, const char *file, uint64_t v) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
        return write_str(dir, file, buf);
}

/* Reads "key N" from a flat-keyed cgroup file (memory.events, pids.events, ...);
 * with key NULL, reads a single number. */
static uint64_t read_key(const char *dir, const char *file, const char *key) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return 0;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        char k[64];
        unsigned long long v;
        if (!key)
                return fscanf(f, "%llu", &v) == 1 ? v : 0;
        while (fscanf(f, "%63s %llu", k, &v) == 2)
                if (strcmp(k, key) == 0)
                        return v;
        return 0;
}

static bool v2_has_controllers(const char *dir) {
        _cleanup_free_ char *path = NULL, *data = NULL;
        if (asprintf(&path, "%s/cgroup.controllers", dir) < 0)
                return false;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || nb_read_fd(fd, 4096, &data, NULL) < 0)
                return false;
        if (!strstr(data, "memory") || !strstr(data, "pids") || access(dir, W_OK) < 0)
                return false;
        /* We live in this cgroup, so we cannot enable controllers for its children
         * ("no internal processes"): they must be delegated to its subtree already. */
        _cleanup_free_ char *sub_path = NULL, *sub = NULL;
        if (asprintf(&sub_path, "%s/cgroup.subtree_control", dir) < 0)
                return false;
        _cleanup_close_ int sfd = open(sub_path, O_RDONLY | O_CLOEXEC);
        if (sfd < 0 || nb_read_fd(sfd, 4096, &sub, NULL) < 0)
                return false;
        return strstr(sub, "memory") && strstr(sub, "pids");
}

void nb_limits_choose(uint64_t memory, uint64_t pids, enum nb_limit_backend *mem, enum nb_limit_backend *pids_b) {
        *mem = memory ? NB_LIMIT_RLIMIT : NB_LIMIT_NONE;
        *pids_b = pids ? NB_LIMIT_RLIMIT : NB_LIMIT_NONE;
        if (!memory && !pids)
                return; /* nothing to limit: no need to look at cgroups at all */
        _cleanup_free_ char *v2 = cgroup_dir("");
        if (v2 && v2_has_controllers(v2)) {
                if (memory)
                        *mem = NB_LIMIT_CGROUP2;
                if (pids)
                        *pids_b = NB_LIMIT_CGROUP2;
                return;
        }
        _cleanup_free_ char *m1 = cgroup_dir("memory");
        _cleanup_free_ char *p1 = cgroup_dir("pids");
        if (memory && m1 && access(m1, W_OK) == 0)
                *mem = NB_LIMIT_CGROUP1;
        if (pids && p1 && access(p1, W_OK) == 0)
                *pids_b = NB_LIMIT_CGROUP1;
}

/* ---- life cycle --------------------------------------------------------------------- */

/* A nestbox killed with SIGKILL cannot remove its cgroups; the next one does, for any
 * whose creator is gone (an empty cgroup is all that is left: the sandbox died with
 * its parent). */
static void remove_stale_cgroups(const char *parent) {
        _cleanup_closedir_ DIR *d = opendir(parent);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                int pid;
                unsigned n;
                if (sscanf(de->d_name, "nestbox-%d-%u", &pid, &n) != 2 || pid <= 0)
                        continue;
                if (kill(pid, 0) == 0 || errno != ESRCH)
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", parent, de->d_name) >= 0)
                        (void) rmdir(path);
        }
}

static char *make_child_cgroup(const char *parent) {
        static unsigned counter;
        remove_stale_cgroups(parent);
        char *dir = NULL;
        if (asprintf(&dir, "%s/nestbox-%d-%u", parent, (int) getpid(), counter++) < 0)
                return NULL;
        if (mkdir(dir, 0755) < 0) {
                free(dir);
                return NULL;
        }
        return dir;
}

static int prepare_v2(struct nb_limits *l, struct nb_error *err) {
        _cleanup_free_ char *parent = cgroup_dir("");
        if (!parent)
                return nb_error_setx(err, ENOENT, "cgroup2: no cgroup of ours");
        char *dir = make_child_cgroup(parent);
        if (!dir)
                return nb_error_set(err, errno, "cgroup2: creating a cgroup under %s", parent);
        l->mem_dir = dir;
        l->pids_dir = strdup(dir);
        if (l->memory) {
                int r = write_u64(dir, "memory.max", l->memory);
                if (r < 0)
                        return nb_error_set(err, -r, "cgroup2: %s/memory.max", dir);
                (void) write_str(dir, "memory.swap.max", "0");
        }
        if (l->pids) {
                int r = write_u64(dir, "pids.max", l->pids);
                if (r < 0)
                        return nb_error_set(err, -r, "cgroup2: %s/pids.max", dir);
        }
        return 0;
}

static int prepare_v1(const char *controller, const char *limit_file, uint64_t value, char **ret_dir, struct nb_error *err) {
        _cleanup_free_ char *parent = cgroup_dir(controller);
        if (!parent)
                return nb_error_setx(err, ENOENT, "cgroup1: no %s hierarchy", controller);
        _cleanup_free_ char *dir = make_child_cgroup(parent);
        if (!dir)
                return nb_error_set(err, errno, "cgroup1: creating a %s cgroup under %s", controller, parent);
        int r = write_u64(dir, limit_file, value);
        if (r < 0) {
                rmdir(dir);
                return nb_error_set(err, -r, "cgroup1: %s/%s", dir, limit_file);
        }
        /* Swap must not stretch the memory limit: memsw is limit + 0 swap. */
        if (strcmp(controller, "memory") == 0)
                (void) write_u64(dir, "memory.memsw.limit_in_bytes", value);
        *ret_dir = TAKE_PTR(dir);
        return 0;
}

int nb_limits_prepare(const struct nb_sandbox_config *cfg, struct nb_limits **ret, struct nb_error *err) {
        struct nb_limits *l = calloc(1, sizeof(*l));
        if (!l)
                return nb_error_set(err, ENOMEM, "limits");
        l->memory = cfg->memory_bytes;
        l->pids = cfg->pids_max;
        nb_limits_choose(l->memory, l->pids, &l->mem_backend, &l->pids_backend);
        int r = 0;
        if (l->mem_backend == NB_LIMIT_CGROUP2 || l->pids_backend == NB_LIMIT_CGROUP2)
                r = prepare_v2(l, err);
        if (r >= 0 && l->mem_backend == NB_LIMIT_CGROUP1)
                r = prepare_v1("memory", "memory.limit_in_bytes", l->memory, &l->mem_dir, err);
        if (r >= 0 && l->pids_backend == NB_LIMIT_CGROUP1)
                r = prepare_v1("pids", "pids.max", l->pids, &l->pids_dir, err);
        if (r < 0) {
                nb_limits_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

int nb_limits_attach(struct nb_limits *l, pid_t pid, struct nb_error *err) {
        const char *dirs[] = { l->mem_dir, l->pids_dir };
        for (size_t i = 0; i < NB_ELEMENTSOF(dirs); i++) {
                if (!dirs[i] || (i == 1 && l->mem_dir && strcmp(dirs[0], dirs[1]) == 0))
                        continue;
                int r = write_u64(dirs[i], "cgroup.procs", (uint64_t) pid);
                if (r < 0)
                        return nb_error_set(err, -r, "joining cgroup %s", dirs[i]);
        }
        return 0;
}

int nb_limits_apply_in_child(const struct nb_limits *l, struct nb_error *err) {
        if (l->mem_backend == NB_LIMIT_RLIMIT) {
                struct rlimit rl = { l->memory, l->memory };
                if (setrlimit(RLIMIT_AS, &rl) < 0)
                        return nb_error_set(err, errno, "RLIMIT_AS");
        }
        if (l->pids_backend == NB_LIMIT_RLIMIT) {
                struct rlimit rl = { l->pids, l->pids };
                if (setrlimit(RLIMIT_NPROC, &rl) < 0)
                        return nb_error_set(err, errno, "RLIMIT_NPROC");
        }
        return 0;
}

void nb_limits_collect(struct nb_limits *l, struct nb_sandbox_result *res) {
        res->memory_backend = l->mem_backend;
        res->pids_backend = l->pids_backend;
        if (l->mem_backend == NB_LIMIT_CGROUP2) {
                res->oom_killed = read_key(l->mem_dir, "memory.events", "oom_kill") > 0;
                uint64_t peak = read_key(l->mem_dir, "memory.peak", NULL);
                if (peak > res->peak_rss_bytes)
                        res->peak_rss_bytes = peak;
        } else if (l->mem_backend == NB_LIMIT_CGROUP1) {
                res->oom_killed = read_key(l->mem_dir, "memory.oom_control", "oom_kill") > 0;
        }
        if (l->pids_backend == NB_LIMIT_CGROUP2 || l->pids_backend == NB_LIMIT_CGROUP1)
                res->pids_limited = read_key(l->pids_dir, "pids.events", "max") > 0;
}

/* Kills whatever is still in a cgroup, then removes it. The sandbox's pid namespace
 * is gone by now, so this is belt and braces. */
static void destroy_cgroup(const char *dir) {
        if (!dir)
                return;
        if (write_str(dir, "cgroup.kill", "1") < 0) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/cgroup.procs", dir) >= 0) {
                        _cleanup_fclose_ FILE *f = fopen(path, "re");
                        int pid;
                        while (f && fscanf(f, "%d", &pid) == 1)
                                kill(pid, SIGKILL);
                }
        }
        for (int i = 0; i < 200 && rmdir(dir) < 0 && errno == EBUSY; i++)
                usleep(5000);
}

void nb_limits_free(struct nb_limits *l) {
        if (!l)
                return;
        destroy_cgroup(l->mem_dir);
        if (l->pids_dir && (!l->mem_dir || strcmp(l->pids_dir, l->mem_dir) != 0))
                destroy_cgroup(l->pids_dir);
        free(l->mem_dir);
        free(l->pids_dir);
        free(l);
}
