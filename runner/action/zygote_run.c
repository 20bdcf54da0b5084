/* SPDX-License-Identifier: MIT */
/* The run's warm interpreters (zygote_run.h): which one serves an action, starting
 * them, and the zygote's own sandbox: the host's system directories, the venv at
 * /venv, the zygote's directory (zygote.py, libnestbox-zygote.so) at /.zygote, and the
 * cache's trees/ read-only at /.nbcache/trees (a directory bind, so trees materialised
 * later appear in it). Its environment is a target's, less what differs per target,
 * so an interpreter started there matches a fresh one (sys.flags, the hash seed). */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "action/run.h"
#include "action/zygote_run.h"
#include "nestbox/cleanup.h"
#include "python/venv.h"

#define ARG_ROOM (64u << 10) /* four of them: 256 KiB of command line a target can show */
#define MAX_ZYGOTES 4 /* each holds an interpreter with pytest imported: ~40 MB */

struct entry {
        char *key;       /* lockfile, wheelhouse, python, seed: what prewarm saw */
        char *venv_path; /* what nb_zygote_for looks up */
        uint32_t hash_seed;
        struct nb_zygote *z; /* NULL: it could not start; those actions run cold */
};

static struct entry entries[MAX_ZYGOTES];
static size_t n_entries;
static pid_t owner;
static int mode = -1;
static bool lazy;

void nb_zygote_set_mode(int on, bool may_start_lazily) {
        mode = on;
        lazy = may_start_lazily;
}

bool nb_zygote_enabled(void) {
        if (mode >= 0)
                return mode;
        const char *e = getenv("NESTBOX_ZYGOTE");
        return e && strcmp(e, "1") == 0;
}

void nb_zygote_stop_all(void) {
        if (getpid() != owner)
                return; /* an item process: the zygotes are the run's */
        for (size_t i = 0; i < n_entries; i++) {
                nb_zygote_stop(entries[i].z);
                free(entries[i].key);
                free(entries[i].venv_path);
        }
        n_entries = 0;
}

/* Where zygote.py and its library are: NESTBOX_ZYGOTE_DIR, or python/zygote beside
 * the running binary (the build tree's layout, and the installed one's). */
static char *zygote_dir(void) {
        const char *e = getenv("NESTBOX_ZYGOTE_DIR");
        char *dir = NULL;
        if (e && *e)
                return strdup(e);
        _cleanup_free_ char *exe = realpath("/proc/self/exe", NULL);
        char *slash = exe ? strrchr(exe, '/') : NULL;
        if (!slash)
                return NULL;
        *slash = 0;
        if (asprintf(&dir, "%s/python/zygote", exe) < 0)
                return NULL;
        _cleanup_free_ char *lib = NULL;
        if (asprintf(&lib, "%s/libnestbox-zygote.so", dir) < 0 || access(lib, R_OK) < 0) {
                free(dir);
                return NULL;
        }
        return dir;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NB_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(NB_ASAN)
/* An ASan build (tests/run --sanitize) makes an ASan libnestbox-zygote.so, which the
 * runtime accepts only when it comes first in the interpreter's library list: the
 * same runtime as ours, preloaded; the interpreter's own leaks are not ours to
 * report. Each target's environment is its own, so neither reaches a test. */
static int sanitizer_env(struct nb_sandbox_config *cfg) {
        void *sym = dlsym(RTLD_DEFAULT, "__asan_init");
        Dl_info info;
        if (!sym || !dladdr(sym, &info) || !info.dli_fname)
                return 0;
        int r = nb_sandbox_setenv(cfg, "LD_PRELOAD", info.dli_fname);
        return r < 0 ? r : nb_sandbox_setenv(cfg, "ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1");
}
#else
static int sanitizer_env(struct nb_sandbox_config *cfg) {
        (void) cfg;
        return 0;
}
#endif

static uint32_t hash_seed_of(const struct nb_action *a) {
        return (uint32_t) (a->seed % 4294967296ull);
}

static int configure(struct nb_sandbox_config *cfg, const char *venv_path, const char *dir, const char *trees,
                     uint32_t seed) {
        static const char *const allowed[] = { "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount",
                                               "move_mount", "open_tree", "mount_setattr", "unshare", "clone" };
        /* The padding is the room each target's command writes its own command line
         * into (nb_init_set_cmdline), as /proc/PID/cmdline shows it. */
        _cleanup_free_ char *room = malloc(ARG_ROOM + 1);
        if (!room)
                return -ENOMEM;
        memset(room, ' ', ARG_ROOM);
        room[ARG_ROOM] = 0;
        char *const argv[] = { (char *) "/venv/bin/python", (char *) "/.zygote/zygote.py", room, room, room, room, NULL };
        int r;
        if ((r = nb_sandbox_add_system_dirs(cfg)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, venv_path, "/venv", 0)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, dir, "/.zygote", 0)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_RO_BIND, trees, "/.nbcache/trees", 0)) < 0 ||
            (r = nb_sandbox_add_mount(cfg, NB_MOUNT_DIR, NULL, "/tmp/home", 0)) < 0 ||
            (r = nb_run_interpreter_env(cfg, seed)) < 0 || (r = sanitizer_env(cfg)) < 0 ||
            (r = nb_sandbox_set_argv(cfg, argv)) < 0)
                return r;
        struct nb_error err = NB_ERROR_INIT;
        for (size_t i = 0; r >= 0 && i < NB_ELEMENTSOF(allowed); i++)
                r = nb_sandbox_allow_syscall(cfg, allowed[i], &err);
        nb_error_clear(&err);
        return r;
}

/* The zygote sees the system directories where the host has them, the venv at /venv
 * and trees/ at /.nbcache/trees: every read-only bind a target asks for is under one. */
static int start(const char *venv_path, struct nb_cache_dir *cache, uint32_t seed, struct nb_zygote **ret,
                 struct nb_error *err) {
        _cleanup_free_ char *dir = zygote_dir(), *trees = NULL;
        if (!dir)
                return nb_error_setx(err, ENOENT, "libnestbox-zygote.so not found (set NESTBOX_ZYGOTE_DIR)");
        if (asprintf(&trees, "%s/trees", cache->path) < 0)
                return nb_error_set(err, ENOMEM, "zygote");
        __attribute__((cleanup(nb_sandbox_config_done))) struct nb_sandbox_config cfg;
        nb_sandbox_config_init(&cfg);
        int r = configure(&cfg, venv_path, dir, trees, seed);
        if (r < 0)
                return nb_error_set(err, -r, "the zygote's sandbox");
        size_t n = 0;
        const char **views = calloc(2 * cfg.n_mounts + 6, sizeof(char *));
        if (!views)
                return nb_error_set(err, ENOMEM, "zygote");
        for (size_t i = 0; i < cfg.n_mounts; i++)
                if (cfg.mounts[i].kind == NB_MOUNT_RO_BIND && strcmp(cfg.mounts[i].src, cfg.mounts[i].dst) == 0) {
                        views[n++] = cfg.mounts[i].src;
                        views[n++] = cfg.mounts[i].dst;
                }
        views[n++] = trees;
        views[n++] = "/.nbcache/trees";
        views[n++] = venv_path;
        views[n++] = "/venv";
        r = nb_zygote_start(&cfg, views, ret, err);
        free(views);
        return r;
}

static struct entry *find(const char *key, const char *venv_path, uint32_t seed) {
        for (size_t i = 0; i < n_entries; i++)
                if (entries[i].hash_seed == seed && ((key && strcmp(entries[i].key, key) == 0) ||
                                                     (venv_path && strcmp(entries[i].venv_path, venv_path) == 0)))
                        return &entries[i];
        return NULL;
}

static struct entry *add(const char *key, const char *venv_path, uint32_t seed, struct nb_cache_dir *cache,
                         struct nb_error *err) {
        if (n_entries == MAX_ZYGOTES)
                return NULL;
        struct entry *e = &entries[n_entries];
        if (!(e->key = strdup(key)) || !(e->venv_path = strdup(venv_path))) {
                free(e->key);
                return NULL;
        }
        e->hash_seed = seed;
        n_entries++;
        if (!owner)
                owner = getpid();
        if (start(venv_path, cache, seed, &e->z, err) < 0)
                e->z = NULL;
        return e;
}

static bool is_a_hit(struct nb_action *a, struct nb_store *s, const struct nb_cache_modes *m) {
        if (m->no_cache || m->force)
                return false;
        struct nb_error quiet = NB_ERROR_INIT;
        struct nb_result res;
        bool hit = nb_result_lookup(s, a, &res, &quiet) == 0;
        if (hit) {
                hit = nb_result_replayable(&res, m);
                nb_result_done(&res);
        }
        nb_error_clear(&quiet);
        return hit;
}

int nb_zygote_prewarm(struct nb_action *a, struct nb_store *s, const struct nb_cache_modes *m, struct nb_error *err) {
        struct nb_cache_dir *cache = s->dir;
        if (!nb_zygote_enabled() || a->venv_given[0])
                return 0;
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%s\n%s\n%s", a->lockfile, a->wheelhouse, a->python) < 0)
                return 0;
        if (find(key, NULL, hash_seed_of(a)))
                return 0;
        struct nb_error quiet = NB_ERROR_INIT;
        struct nb_venv_info venv = {};
        int r = nb_action_resolve(a, cache, &quiet);
        nb_error_clear(&quiet);
        if (r < 0 || is_a_hit(a, s, m))
                return 0;
        /* A local miss may be a remote hit, which must not build a venv; asking the
         * remote here would count its answers twice (here and in the item): with a
         * remote cache the targets run cold. */
        if (s->remote)
                return 0;
        r = nb_venv_materialize(cache, a->resolved.venv, &venv, &quiet);
        nb_error_clear(&quiet);
        if (r < 0)
                return 0;
        struct entry *e = add(key, venv.path, hash_seed_of(a), cache, err);
        nb_venv_info_done(&venv);
        return e && !e->z ? -1 : 0;
}

struct nb_zygote *nb_zygote_for(const struct nb_action *a, struct nb_cache_dir *cache, const char *venv_path) {
        if (!nb_zygote_enabled())
                return NULL;
        /* A PYTHON* variable of the action's would change how an interpreter starts. */
        for (char **e = a->env; *e; e++)
                if (strncmp(*e, "PYTHON", 6) == 0)
                        return NULL;
        struct entry *e = find(NULL, venv_path, hash_seed_of(a));
        if (!e && lazy && (!owner || owner == getpid())) {
                struct nb_error err = NB_ERROR_INIT;
                e = add(venv_path, venv_path, hash_seed_of(a), cache, &err);
                nb_error_clear(&err);
        }
        return e ? e->z : NULL;
}
