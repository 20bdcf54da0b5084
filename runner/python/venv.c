/* SPDX-License-Identifier: MIT */
/* Building and finding locked venvs in the cache. The order is the point:
 *   1. ask the interpreter, parse the lock, pick and hash every wheel (cheap; this is
 *      all a cache hit costs);
 *   2. digest those answers; a complete venvs/<digest> is the result;
 *   3. otherwise build under tmp/, seal (read-only, marker, fsync) and rename into
 *      place. Any failure removes the tmp dir: nothing half-built is ever visible. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/build_lock.h"
#include "python/bytecode.h"
#include "python/interp.h"
#include "python/lockfile.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "python/venv.h"
#include "python/wheel.h"
#include "python/wheel_files.h"

/* Bumped whenever the layout nestbox writes changes, so old venvs are not reused. */
#define VENV_FORMAT "nestbox-venv-2" /* 2: bytecode compiled at build time */
/* No wheel nests packages this deep; the limit keeps the sealing walk's descriptors
 * bounded whatever a wheel contains. */
#define MAX_TREE_DEPTH 128

char *nb_venv_site_packages(const struct nb_python *py) {
        char *s = NULL;
        if (asprintf(&s, "lib/python%s/site-packages", py->version_short) < 0)
                return NULL;
        return s;
}

void nb_venv_info_done(struct nb_venv_info *info) {
        free(info->path);
        info->path = NULL;
}

struct wheel_set {
        struct nb_wheel *v;
        size_t n;
};

static void wheel_set_donep(struct wheel_set *s) {
        for (size_t i = 0; i < s->n; i++)
                nb_wheel_done(&s->v[i]);
        free(s->v);
}

/* The build directory under tmp/, removed on every way out but success. */
struct build_dir {
        struct nb_cache_dir *cache;
        char *rel;
};

static void build_dir_removep(struct build_dir *b) {
        if (b->rel) {
                /* Best effort while unwinding: the error being reported is the one that
                 * matters, and a leftover under tmp/ is never mistaken for a venv. */
                (void) nb_rm_rf_at(b->cache->fd, b->rel);
                free(b->rel);
        }
}

/* The interpreter's identity is its real path, what it says it is, and the size and
 * mtime of the binary. Size and mtime rather than a hash of the binary: hashing
 * several megabytes on every call would dominate a cache hit, and a package manager
 * replacing the interpreter always changes at least the mtime. (The venv links to
 * the interpreter, so a same-version rebuild in place is picked up either way; this
 * only makes sure the digest moves with it.) */
static int digest_inputs(const struct nb_python *py, const struct nb_lockfile *lock, const struct wheel_set *wheels,
                         char out[NB_DIGEST_HEX_LEN + 1]) {
        struct nb_hasher *h = nb_hasher_new();
        if (!h)
                return -ENOMEM;
        nb_hasher_update_str(h, VENV_FORMAT);
        nb_hasher_update_str(h, py->path);
        nb_hasher_update_str(h, py->version);
        nb_hasher_update_str(h, py->implementation);
        nb_hasher_update_str(h, py->soabi);
        nb_hasher_update_str(h, py->abiflags);
        nb_hasher_update_str(h, py->platform);
        nb_hasher_update_str(h, py->abi_tag);
        nb_hasher_update_u64(h, ((uint64_t) py->glibc_major << 32) | py->glibc_minor);
        nb_hasher_update_u64(h, py->size);
        nb_hasher_update_u64(h, (uint64_t) py->mtime_ns);
        /* Requirements are sorted by name, so reordering the lockfile keeps the digest. */
        nb_hasher_update_u64(h, lock->n_reqs);
        for (size_t i = 0; i < lock->n_reqs; i++) {
                nb_hasher_update_str(h, lock->reqs[i].name);
                nb_hasher_update_str(h, lock->reqs[i].version);
                nb_hasher_update_str(h, wheels->v[i].filename);
                nb_hasher_update_str(h, wheels->v[i].sha256);
        }
        nb_hasher_finish(h, out);
        return 0;
}

static int write_new_file(int dirfd, const char *name, const char *text, mode_t mode) {
        _cleanup_close_ int fd = nb_open_beneath(dirfd, name, O_WRONLY | O_CREAT | O_EXCL, mode);
        if (fd < 0)
                return fd;
        if (fchmod(fd, mode) < 0)
                return -errno;
        int r = nb_write_all(fd, text, strlen(text));
        if (r < 0)
                return r;
        return fsync(fd) < 0 ? -errno : 0;
}

static int make_layout(int root, const struct nb_python *py, const char *where, struct nb_error *err) {
        _cleanup_free_ char *site = nb_venv_site_packages(py), *versioned = NULL;
        if (!site || asprintf(&versioned, "python%s", py->version_short) < 0)
                return nb_error_set(err, ENOMEM, "venv");
        _cleanup_close_ int s = nb_mkdir_p_beneath(root, site, 0755);
        if (s < 0)
                return nb_error_set(err, -s, "venv %s/%s", where, site);
        _cleanup_close_ int bin = nb_mkdir_p_beneath(root, "bin", 0755);
        if (bin < 0)
                return nb_error_set(err, -bin, "venv %s/bin", where);
        /* Absolute links to the host interpreter: the sandbox mounts /usr at the same
         * path, so they resolve identically inside and out. */
        const char *names[] = { "python", "python3", versioned };
        for (size_t i = 0; i < NB_ELEMENTSOF(names); i++)
                if (symlinkat(py->path, bin, names[i]) < 0)
                        return nb_error_set(err, errno, "venv %s/bin/%s", where, names[i]);
        return 0;
}

static int write_pyvenv_cfg(int root, const struct nb_python *py, const char *where, struct nb_error *err) {
        _cleanup_free_ char *home = strdup(py->path), *cfg = NULL;
        if (!home)
                return nb_error_set(err, ENOMEM, "venv");
        char *slash = strrchr(home, '/');
        if (slash)
                *(slash == home ? slash + 1 : slash) = 0;
        if (asprintf(&cfg,
                     "home = %s\n"
                     "include-system-site-packages = false\n"
                     "version = %s\n"
                     "executable = %s\n"
                     "command = nestbox venv\n",
                     home, py->version, py->path) < 0)
                return nb_error_set(err, ENOMEM, "venv");
        /* O_EXCL: a wheel's .data/data cannot have planted one first (wheel_files.c
         * refuses it by name; this is the second line). */
        int r = write_new_file(root, "pyvenv.cfg", cfg, 0444);
        if (r == -EEXIST)
                return nb_error_input(err, EINVAL, "venv: a wheel planted pyvenv.cfg");
        if (r < 0)
                return nb_error_set(err, -r, "venv %s/pyvenv.cfg", where);
        return 0;
}

static int build(struct nb_cache_dir *cache, const struct nb_python *py, const struct nb_lockfile *lock,
                 const struct wheel_set *wheels, int wheelhouse_fd, const char *digest, const char *final_rel,
                 struct nb_error *err) {
        _cleanup_(build_dir_removep) struct build_dir b = { .cache = cache };
        int r = nb_cache_dir_mkdtemp(cache, "venv", &b.rel, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *where = NULL;
        if (asprintf(&where, "%s/%s", cache->path, b.rel) < 0)
                return nb_error_set(err, ENOMEM, "venv");
        _cleanup_close_ int root = nb_open_beneath(cache->fd, b.rel, O_RDONLY | O_DIRECTORY, 0);
        if (root < 0)
                return nb_error_set(err, -root, "venv %s", where);
        r = make_layout(root, py, where, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *site = nb_venv_site_packages(py);
        if (!site)
                return nb_error_set(err, ENOMEM, "venv");
        const struct nb_wheel_dest dest = { .fd = root, .site = site, .python = NB_VENV_MOUNT "/bin/python" };
        for (size_t i = 0; i < lock->n_reqs; i++) {
                r = nb_wheel_install(py, wheelhouse_fd, &lock->reqs[i], &wheels->v[i], &dest, err);
                if (r < 0)
                        return r;
        }
        r = write_pyvenv_cfg(root, py, where, err);
        if (r < 0)
                return r;
        /* The sandbox user reads the venv through /venv (mkdtemp made it 0700). */
        if (fchmod(root, 0755) < 0)
                return nb_error_set(err, errno, "venv %s", where);
        r = nb_venv_compile_bytecode(py, root, where, MAX_TREE_DEPTH, err);
        if (r < 0)
                return r;
        r = nb_cache_dir_seal(root, MAX_TREE_DEPTH);
        if (r == -ELOOP)
                return nb_error_input(err, EINVAL, "venv: the wheels nest directories deeper than %d levels",
                                      MAX_TREE_DEPTH);
        if (r < 0)
                return nb_error_set(err, -r, "venv %s: making it read-only", where);
        /* The marker goes last, and everything is on disk before the rename makes the
         * venv visible: a crash leaves either no venv or a whole one. */
        _cleanup_free_ char *marker = NULL;
        if (asprintf(&marker, "%s\n", digest) < 0)
                return nb_error_set(err, ENOMEM, "venv");
        r = write_new_file(root, NB_VENV_COMPLETE_MARKER, marker, 0444);
        if (r < 0)
                return nb_error_set(err, -r, "venv %s/%s", where, NB_VENV_COMPLETE_MARKER);
        r = nb_cache_dir_sync(root, MAX_TREE_DEPTH);
        if (r < 0)
                return nb_error_set(err, r, "venv %s: syncing", where);
        /* The root's own mode (0755 since the compile) stays writable until after the
         * rename: moving a directory rewrites its "..". */
        r = nb_cache_dir_publish(cache, b.rel, final_rel, err);
        /* publish removed the tmp dir itself on every outcome but a successful rename. */
        free(TAKE_PTR(b.rel));
        if (r < 0)
                return r;
        if ((r = nb_cache_dir_seal_published(cache, final_rel)) < 0)
                return nb_error_set(err, -r, "venv %s/%s", cache->path, final_rel);
        return 0;
}

/* 1 when rel is a finished venv, 0 when it is not there (any unfinished remains are
 * removed: a venvs/<digest> without its marker was not made by the rename of a sealed
 * build but by a crash while copying a cache or a manual edit, and a bad entry is a
 * miss). */
static int is_complete(struct nb_cache_dir *cache, const char *rel) {
        _cleanup_free_ char *marker = NULL;
        if (asprintf(&marker, "%s/%s", rel, NB_VENV_COMPLETE_MARKER) < 0)
                return -ENOMEM;
        struct stat st;
        if (fstatat(cache->fd, marker, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (S_ISREG(st.st_mode))
                        return 1;
        } else if (errno != ENOENT && errno != ENOTDIR)
                return -errno;
        return nb_rm_rf_at(cache->fd, rel);
}

struct nb_venv_plan {
        struct nb_python py;
        struct nb_lockfile lock;
        struct wheel_set wheels;
        int wheelhouse_fd;
        char digest[NB_DIGEST_HEX_LEN + 1];
};

void nb_venv_plan_free(struct nb_venv_plan *p) {
        if (!p)
                return;
        nb_python_done(&p->py);
        nb_lockfile_done(&p->lock);
        wheel_set_donep(&p->wheels);
        if (p->wheelhouse_fd >= 0)
                close(p->wheelhouse_fd);
        free(p);
}

const char *nb_venv_plan_digest(const struct nb_venv_plan *p) {
        return p->digest;
}

size_t nb_venv_plan_wheels(const struct nb_venv_plan *p, const struct nb_wheel **wheels,
                           const struct nb_requirement **reqs) {
        *wheels = p->wheels.v;
        *reqs = p->lock.reqs;
        return p->wheels.n;
}

int nb_venv_plan_wheelhouse(const struct nb_venv_plan *p) {
        return p->wheelhouse_fd;
}

static int resolve(struct nb_cache_dir *cache, const char *python, const char *lockfile, const char *wheelhouse,
                   struct nb_venv_plan *p, struct nb_error *err) {
        struct nb_store store = { .dir = cache };
        int r = nb_python_probe(&store, python, &p->py, err);
        if (r < 0)
                return r;
        if ((r = nb_lockfile_load(lockfile, &p->py.env, &p->lock, err)) < 0)
                return r;
        p->wheelhouse_fd = open(wheelhouse, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (p->wheelhouse_fd < 0) {
                /* Not there (or not a directory) is a wrong name; unreadable is the machine's. */
                int e = errno == ENOTDIR ? ENOENT : errno;
                return nb_error_classify(err, nb_error_class_of_path(e),
                                         nb_error_set(err, e, "wheelhouse %s", wheelhouse));
        }
        p->wheels.v = calloc(p->lock.n_reqs + 1, sizeof(struct nb_wheel));
        if (!p->wheels.v)
                return nb_error_set(err, ENOMEM, "venv");
        for (; p->wheels.n < p->lock.n_reqs; p->wheels.n++) {
                r = nb_wheel_select(&store, &p->py, p->wheelhouse_fd, wheelhouse, &p->lock.reqs[p->wheels.n],
                                    &p->wheels.v[p->wheels.n], err);
                if (r < 0)
                        return r;
        }
        if (digest_inputs(&p->py, &p->lock, &p->wheels, p->digest) < 0)
                return nb_error_set(err, ENOMEM, "venv");
        return 0;
}

int nb_venv_resolve(struct nb_cache_dir *cache, const char *python, const char *lockfile, const char *wheelhouse,
                    struct nb_venv_plan **ret, struct nb_error *err) {
        struct nb_venv_plan *p = calloc(1, sizeof(*p));
        if (!p)
                return nb_error_set(err, ENOMEM, "venv");
        p->wheelhouse_fd = -1;
        int r = resolve(cache, python, lockfile, wheelhouse, p, err);
        if (r < 0) {
                nb_venv_plan_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static struct {
        nb_venv_built_fn fn;
        void *userdata;
} built_hook;

void nb_venv_on_built(nb_venv_built_fn fn, void *userdata) {
        built_hook.fn = fn;
        built_hook.userdata = userdata;
}

int nb_venv_materialize(struct nb_cache_dir *cache, const struct nb_venv_plan *p, struct nb_venv_info *ret,
                        struct nb_error *err) {
        _cleanup_free_ char *rel = NULL, *path = NULL;
        if (asprintf(&rel, "venvs/%s", p->digest) < 0 || asprintf(&path, "%s/%s", cache->path, rel) < 0)
                return nb_error_set(err, ENOMEM, "venv");
        int r = is_complete(cache, rel);
        if (r < 0)
                return nb_error_set(err, -r, "venv %s", path);
        bool built = false;
        if (r == 0) {
                /* Items needing this venv at once (and other nestbox processes) wait for
                 * one builder, then find its venv complete. */
                _cleanup_close_ int lock = -1;
                if ((r = nb_build_lock(cache, "venv", p->digest, &lock, err)) < 0)
                        return r;
                if ((r = is_complete(cache, rel)) < 0)
                        return nb_error_set(err, -r, "venv %s", path);
                built = r == 0;
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                if (built && (r = build(cache, &p->py, &p->lock, &p->wheels, p->wheelhouse_fd, p->digest, rel, err)) < 0)
                        return r;
                clock_gettime(CLOCK_MONOTONIC, &t1);
                if (built && built_hook.fn)
                        built_hook.fn(p->digest,
                                      (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9,
                                      built_hook.userdata);
        }
        memcpy(ret->digest, p->digest, sizeof(ret->digest));
        ret->path = TAKE_PTR(path);
        ret->built = built;
        return 0;
}

int nb_venv_ensure(struct nb_cache_dir *cache, const char *python, const char *lockfile, const char *wheelhouse,
                   struct nb_venv_info *ret, struct nb_error *err) {
        _cleanup_(nb_venv_plan_freep) struct nb_venv_plan *p = NULL;
        int r = nb_venv_resolve(cache, python, lockfile, wheelhouse, &p, err);
        if (r < 0)
                return r;
        return nb_venv_materialize(cache, p, ret, err);
}
