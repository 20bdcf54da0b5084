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
#include <sys/socket.h>
#include <unistd.h>

#include "action/run.h"
#include "action/zygote_run.h"
#include "nestbox/cleanup.h"
#include "python/venv.h"

#define ARG_ROOM (64u << 10) /* four of them: 256 KiB of command line a target can show */
#define MAX_ZYGOTES 4 /* each holds an interpreter with pytest imported: ~40 MB */
#define MAX_STARTS 2  /* per (venv, seed) in a worker: one that keeps failing stays cold */
#define MAX_HITS_SEEN 8 /* per group in prewarm (below) */

struct entry {
        char *key;       /* lockfile, wheelhouse, python (test) or the venv (worker) */
        char *venv_path; /* what nb_zygote_for looks up */
        uint32_t hash_seed;
        unsigned starts;
        struct nb_zygote *z; /* NULL: it could not start, or failed; those actions run cold */
};

static struct entry entries[MAX_ZYGOTES];
static size_t n_entries;
/* Zygotes a worker dropped: still serving the requests in flight that hold them, so
 * stopped only with the rest (stopping one kills every target it serves). */
static struct nb_zygote *retired[MAX_ZYGOTES * MAX_STARTS];
static size_t n_retired;
static pid_t owner;
static int mode = -1;
/* A worker's socket: its request processes ask it for zygotes ('w') and tell it of
 * those that failed ('d'); -1 elsewhere. */
static int serve_sock[2] = { -1, -1 };

void nb_zygote_set_mode(int on) {
        mode = on;
}

static int env_mode(void) {
        const char *e = getenv("NESTBOX_ZYGOTE");
        return !e ? -1 : strcmp(e, "1") == 0 ? 1 : strcmp(e, "0") == 0 ? 0 : -1;
}

bool nb_zygote_enabled(void) {
        return (mode >= 0 ? mode : env_mode()) != 0;
}

bool nb_zygote_forced(void) {
        return (mode >= 0 ? mode : env_mode()) == 1;
}

void nb_zygote_stop_all(void) {
        if (getpid() != owner)
                return; /* an item process: the zygotes are the run's */
        for (size_t i = 0; i < n_entries; i++) {
                nb_zygote_stop(entries[i].z);
                free(entries[i].key);
                free(entries[i].venv_path);
        }
        for (size_t i = 0; i < n_retired; i++)
                nb_zygote_stop(retired[i]);
        n_entries = n_retired = 0;
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
static int start(const char *venv_path, const char *cache_path, uint32_t seed, struct nb_zygote **ret,
                 struct nb_error *err) {
        _cleanup_free_ char *dir = zygote_dir(), *trees = NULL;
        if (!dir)
                return nb_error_setx(err, ENOENT, "libnestbox-zygote.so not found (set NESTBOX_ZYGOTE_DIR)");
        if (asprintf(&trees, "%s/trees", cache_path) < 0)
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

static int start_entry(struct entry *e, const char *cache_path, struct nb_error *err) {
        e->starts++;
        if (!owner)
                owner = getpid();
        int r = start(e->venv_path, cache_path, e->hash_seed, &e->z, err);
        if (r < 0)
                e->z = NULL;
        return r;
}

static struct entry *add(const char *key, const char *venv_path, uint32_t seed, const char *cache_path,
                         struct nb_error *err) {
        if (n_entries == MAX_ZYGOTES)
                return NULL;
        struct entry *e = &entries[n_entries];
        *e = (struct entry) { .key = strdup(key), .venv_path = strdup(venv_path), .hash_seed = seed };
        if (!e->key || !e->venv_path) {
                free(e->key);
                free(e->venv_path);
                return NULL;
        }
        n_entries++;
        (void) start_entry(e, cache_path, err);
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

static char *key_of(const struct nb_action *a) {
        char *key = NULL;
        return asprintf(&key, "%s\n%s\n%s", a->lockfile, a->wheelhouse, a->python) < 0 ? NULL : key;
}

/* Whether action a is one the zygote of its group would run: it resolves, misses the
 * local cache, and its venv builds (into ret_venv). */
static bool would_run(struct nb_action *a, struct nb_store *s, const struct nb_cache_modes *m,
                      struct nb_venv_info *ret_venv, nb_zygote_note_fn note, void *userdata) {
        struct nb_error quiet = NB_ERROR_INIT;
        int r = nb_action_resolve(a, s->dir, &quiet);
        nb_error_clear(&quiet);
        if (r < 0 || is_a_hit(a, s, m))
                return false;
        if (note)
                note(a, NULL, userdata);
        r = nb_venv_materialize(s->dir, a->resolved.venv, ret_venv, &quiet);
        nb_error_clear(&quiet);
        return r >= 0;
}

/* One group: the actions from first on of key and seed. Its zygote starts once `need`
 * of them would run (a single cold run is faster than a zygote's start and a fork).
 * Resolving here takes the digests out of the items' parallel start (they inherit what
 * is resolved), so a group whose first MAX_HITS_SEEN are cache hits is taken for a run
 * of hits, and what misses in it runs cold. */
static void prewarm_group(struct nb_action *const *actions, size_t n, size_t first, const char *key, size_t need,
                          struct nb_store *s, const struct nb_cache_modes *m, nb_zygote_note_fn note, void *userdata) {
        uint32_t seed = hash_seed_of(actions[first]);
        size_t running = 0, other = 0;
        for (size_t i = first; i < n && other < MAX_HITS_SEEN && !(m->cancel && *m->cancel); i++) {
                struct nb_action *a = actions[i];
                _cleanup_free_ char *k = a->venv_given[0] || hash_seed_of(a) != seed ? NULL : key_of(a);
                struct nb_venv_info venv = {};
                if (!k || strcmp(k, key) != 0)
                        continue;
                if (!would_run(a, s, m, &venv, note, userdata)) {
                        other++;
                        continue;
                }
                if (++running < need) {
                        nb_venv_info_done(&venv);
                        continue;
                }
                struct nb_error err = NB_ERROR_INIT;
                struct entry *e = add(key, venv.path, seed, s->dir->path, &err);
                nb_venv_info_done(&venv);
                if (e && !e->z && note)
                        note(a, &err, userdata);
                nb_error_clear(&err);
                return;
        }
}

void nb_zygote_prewarm(struct nb_action *const *actions, size_t n, struct nb_store *s, const struct nb_cache_modes *m,
                       nb_zygote_note_fn note, void *userdata) {
        size_t need = nb_zygote_forced() ? 1 : 2;
        /* A local miss may be a remote hit, which must not build a venv; asking the
         * remote here would count its answers twice (here and in the item): with a
         * remote cache the targets run cold. */
        if (!nb_zygote_enabled() || s->remote || n < need)
                return;
        /* Groups already seen, so that each is walked once: O(n) per group. */
        _cleanup_free_ char **seen = calloc(n, sizeof(*seen));
        _cleanup_free_ uint32_t *seen_seed = calloc(n, sizeof(*seen_seed));
        size_t n_seen = 0;
        for (size_t i = 0; seen && seen_seed && i < n && !(m->cancel && *m->cancel); i++) {
                if (actions[i]->venv_given[0])
                        continue;
                char *key = key_of(actions[i]);
                uint32_t seed = hash_seed_of(actions[i]);
                bool known = !key || find(key, NULL, seed);
                for (size_t j = 0; !known && j < n_seen; j++)
                        known = seen_seed[j] == seed && strcmp(seen[j], key) == 0;
                if (known) {
                        free(key);
                        continue;
                }
                seen[n_seen] = key;
                seen_seed[n_seen++] = seed;
                prewarm_group(actions, n, i, key, need, s, m, note, userdata);
        }
        for (size_t j = 0; j < n_seen; j++)
                free(seen[j]);
}

/* A worker's request process asks for the zygote of (venv, seed) it missed; the
 * worker starts it for the requests that come after (this one runs cold: a zygote
 * that has yet to import pytest would not serve it sooner). */
static void tell_worker(char what, uint32_t seed, const char *venv_path, const char *cache_path) {
        _cleanup_free_ char *msg = NULL;
        int n = asprintf(&msg, "%c%u%c%s%c%s", what, (unsigned) seed, 0, venv_path, 0, cache_path);
        if (n > 0) /* with its last NUL */
                (void) send(serve_sock[1], msg, (size_t) n + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

int nb_zygote_serve_start(void) {
        if (!nb_zygote_enabled())
                return -1;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, serve_sock) < 0)
                return -errno;
        owner = getpid();
        return serve_sock[0];
}

static void serve_one(const char *msg, size_t len) {
        /* From our own request processes: "w<seed>\0<venv>\0<cache>\0" (wanted) or the
         * same with 'd' (it failed). */
        const char *venv = memchr(msg, 0, len);
        const char *cache = venv ? memchr(venv + 1, 0, len - (size_t) (venv + 1 - msg)) : NULL;
        if (!cache || (msg[0] != 'w' && msg[0] != 'd') || msg[len - 1] != 0 || !venv[1])
                return;
        venv++;
        cache++;
        uint32_t seed = (uint32_t) strtoul(msg + 1, NULL, 10);
        struct entry *e = find(NULL, venv, seed);
        struct nb_error quiet = NB_ERROR_INIT;
        if (msg[0] == 'w' && !e && *cache)
                (void) add(venv, venv, seed, cache, &quiet);
        else if (msg[0] == 'w' && e && !e->z && e->starts < MAX_STARTS && *cache)
                (void) start_entry(e, cache, &quiet);
        else if (msg[0] == 'd' && e && e->z && n_retired < NB_ELEMENTSOF(retired)) {
                retired[n_retired++] = e->z;
                e->z = NULL;
                if (e->starts < MAX_STARTS && *cache) /* for the requests that come next */
                        (void) start_entry(e, cache, &quiet);
        }
        nb_error_clear(&quiet);
}

void nb_zygote_serve_ready(void) {
        if (serve_sock[0] < 0)
                return;
        char buf[2 * 4096 + 32];
        ssize_t n;
        while ((n = recv(serve_sock[0], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                serve_one(buf, (size_t) n);
}

void nb_zygote_failed(const struct nb_action *a, struct nb_cache_dir *cache, const char *venv_path) {
        if (serve_sock[1] >= 0 && getpid() != owner)
                tell_worker('d', hash_seed_of(a), venv_path, cache->path);
}

struct nb_zygote *nb_zygote_for(const struct nb_action *a, struct nb_cache_dir *cache, const char *venv_path) {
        if (!nb_zygote_enabled())
                return NULL;
        /* A PYTHON* variable of the action's would change how an interpreter starts. */
        for (char **e = a->env; *e; e++)
                if (strncmp(*e, "PYTHON", 6) == 0)
                        return NULL;
        struct entry *e = find(NULL, venv_path, hash_seed_of(a));
        if ((!e || !e->z) && serve_sock[1] >= 0 && getpid() != owner)
                tell_worker('w', hash_seed_of(a), venv_path, cache->path);
        return e ? e->z : NULL;
}
