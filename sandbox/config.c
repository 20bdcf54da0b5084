/* SPDX-License-Identifier: MIT */
/* The nb_sandbox_config builder: grows its arrays, owns its strings. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/sandbox.h"
#include "nestbox/text.h"

void nb_sandbox_config_init(struct nb_sandbox_config *cfg) {
        memset(cfg, 0, sizeof(*cfg));
        cfg->kill_grace_sec = 5;
        cfg->tmp_size = 256ull << 20;
        cfg->uid = 1000;
        cfg->gid = 1000;
        cfg->network = NB_NET_LOOPBACK;
        cfg->stdin_fd = cfg->stdout_fd = cfg->stderr_fd = -1;
}

static void strv_free(char **v, size_t n) {
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

void nb_sandbox_config_done(struct nb_sandbox_config *cfg) {
        for (size_t i = 0; i < cfg->n_mounts; i++) {
                free(cfg->mounts[i].src);
                free(cfg->mounts[i].dst);
        }
        free(cfg->mounts);
        if (cfg->argv) {
                for (char **a = cfg->argv; *a; a++)
                        free(*a);
                free(cfg->argv);
        }
        strv_free(cfg->env, cfg->n_env);
        strv_free(cfg->allow_syscalls, cfg->n_allow_syscalls);
        free(cfg->cwd);
        free(cfg->hostname);
        nb_sandbox_config_init(cfg);
}

void nb_sandbox_result_done(struct nb_sandbox_result *res) {
        nb_denial_list_free(res->denied, res->n_denied);
        res->denied = NULL;
        res->n_denied = 0;
        free(res->output);
        res->output = NULL;
        res->output_len = res->output_head = 0;
}

/* Appends s to a NULL-terminated vector of n entries. */
static int strv_push(char ***v, size_t *n, char *s) {
        char **nv = realloc(*v, (*n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[(*n)++] = s;
        nv[*n] = NULL;
        *v = nv;
        return 0;
}

/* A mount target is absolute and has no ".." component: it names one place in the
 * new root, however the path is read. */
static bool valid_target(const char *dst) {
        return dst && dst[0] == '/' && !nb_path_has_dotdot(dst);
}

int nb_sandbox_add_mount(struct nb_sandbox_config *cfg, enum nb_mount_kind kind,
                         const char *src, const char *dst, uint64_t size) {
        if (!valid_target(dst))
                return -EINVAL;
        struct nb_mount *nm = realloc(cfg->mounts, (cfg->n_mounts + 1) * sizeof(*nm));
        if (!nm)
                return -ENOMEM;
        cfg->mounts = nm;
        struct nb_mount *m = &nm[cfg->n_mounts];
        *m = (struct nb_mount) { .kind = kind, .size = size };
        m->dst = strdup(dst);
        m->src = src ? strdup(src) : NULL;
        if (!m->dst || (src && !m->src)) {
                free(m->dst);
                free(m->src);
                return -ENOMEM;
        }
        cfg->n_mounts++;
        return 0;
}

int nb_sandbox_setenv(struct nb_sandbox_config *cfg, const char *key, const char *value) {
        if (!key || !*key || strchr(key, '='))
                return -EINVAL;
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", key, value ? value : "") < 0)
                return -ENOMEM;
        size_t klen = strlen(key);
        for (size_t i = 0; i < cfg->n_env; i++)
                if (strncmp(cfg->env[i], key, klen) == 0 && cfg->env[i][klen] == '=') {
                        free(cfg->env[i]);
                        cfg->env[i] = kv;
                        return 0;
                }
        return strv_push(&cfg->env, &cfg->n_env, kv);
}

int nb_sandbox_allow_syscall(struct nb_sandbox_config *cfg, const char *name, struct nb_error *err) {
        size_t n;
        const struct nb_denied_syscall *list = nb_seccomp_deny_list(&n);
        for (size_t i = 0; i < n; i++)
                if (strcmp(list[i].name, name) == 0) {
                        char *s = strdup(name);
                        if (!s)
                                return nb_error_set(err, ENOMEM, "--allow-syscall");
                        return strv_push(&cfg->allow_syscalls, &cfg->n_allow_syscalls, s);
                }
        return nb_error_setx(err, EINVAL, "--allow-syscall %s: not on the deny list (see nestbox doctor --syscalls)", name);
}

int nb_sandbox_set_argv(struct nb_sandbox_config *cfg, char *const *argv) {
        size_t n = 0;
        while (argv[n])
                n++;
        if (n == 0)
                return -EINVAL;
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                v[i] = strdup(argv[i]);
                if (!v[i]) {
                        strv_free(v, i);
                        return -ENOMEM;
                }
        }
        if (cfg->argv)
                for (char **a = cfg->argv; *a; a++)
                        free(*a);
        free(cfg->argv);
        cfg->argv = v;
        return 0;
}

const char *nb_limit_backend_name(enum nb_limit_backend b) {
        switch (b) {
        case NB_LIMIT_CGROUP2: return "cgroup2";
        case NB_LIMIT_CGROUP1: return "cgroup1";
        case NB_LIMIT_RLIMIT: return "rlimit";
        default: return "none";
        }
}

static const char *const system_dirs[] = { "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32" };

bool nb_sandbox_is_system_path(const char *path) {
        for (size_t i = 0; i < NB_ELEMENTSOF(system_dirs); i++) {
                size_t n = strlen(system_dirs[i]);
                if (strncmp(path, system_dirs[i], n) == 0 && path[n] == '/')
                        return true;
        }
        return false;
}

int nb_sandbox_add_system_dirs(struct nb_sandbox_config *cfg) {
        const char *const *dirs = system_dirs;
        for (size_t i = 0; i < NB_ELEMENTSOF(system_dirs); i++) {
                struct stat st;
                if (lstat(dirs[i], &st) < 0)
                        continue;
                int r = 0;
                if (S_ISLNK(st.st_mode)) {
                        char target[4096];
                        ssize_t n = readlink(dirs[i], target, sizeof(target) - 1);
                        if (n < 0)
                                continue;
                        target[n] = 0;
                        r = nb_sandbox_add_mount(cfg, NB_MOUNT_SYMLINK, target, dirs[i], 0);
                } else if (S_ISDIR(st.st_mode))
                        r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, dirs[i], dirs[i], 0);
                if (r < 0)
                        return r;
        }
        return 0;
}
