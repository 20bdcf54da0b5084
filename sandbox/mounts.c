/* SPDX-License-Identifier: MIT */
/* The sandbox's root filesystem, assembled from nothing:
 *
 *   1. stop mount propagation between the host and our mount namespace;
 *   2. open every bind source as a detached clone (open_tree) while the host's tree
 *      is still what the caller named, so no path can be swapped under a mount later,
 *      and with the caller's own credentials (nb_mounts_prepare, before the switch to
 *      the sandbox's uid): whatever the caller may read, it may bind;
 *   3. an empty tmpfs becomes the new root; /etc is generated into it;
 *   4. the caller's binds, tmpfs, symlinks and directories, in the order given;
 *   5. a fresh /proc, hardened as container runtimes do; a minimal /dev;
 *   6. pivot_root into it, detach the old root, make the root itself read-only.
 *
 * Targets are resolved by fs.c's walker in its RESOLVE_IN_ROOT mode (nb_open_in_root,
 * nb_mkdir_p_in_root): a symlink inside the new root (say /lib -> usr/lib) is honoured
 * but can never point outside it. We hold
 * CAP_SYS_ADMIN only over this mount namespace, so none of this touches the host. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "sandbox-internal.h"

/* Where the new root is assembled: any directory of our private copy of the host tree
 * will do, the mount over it is invisible outside our namespace. */
#define STAGING_DIR "/tmp"

static const char *const dev_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };

static const char *const proc_readonly[] = { "sys", "sysrq-trigger", "irq", "bus" };
static const char *const proc_masked_files[] = {
        "kcore", "keys", "timer_list", "sched_debug", "latency_stats", "kallsyms", "kmsg", "key-users",
};
static const char *const proc_masked_dirs[] = { "acpi", "scsi", "asound", "driver" };

struct nb_mount_plan {
        int *source_trees; /* per cfg mount: a detached clone of the bind source, or -1 */
        bool *overlay;     /* per cfg mount: shown through an overlay (mounts_overlay.c) */
        size_t n;
        int dev_null_tree;
        int dev_trees[NB_ELEMENTSOF(dev_nodes)];
};

void nb_mount_plan_free(struct nb_mount_plan *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++)
                if (p->source_trees[i] >= 0)
                        close(p->source_trees[i]);
        free(p->source_trees);
        free(p->overlay);
        for (size_t i = 0; i < NB_ELEMENTSOF(dev_nodes); i++)
                if (p->dev_trees[i] >= 0)
                        close(p->dev_trees[i]);
        free(p);
}

/* The mount point for dst: a directory, or an empty file when binding a file. */
static int make_mountpoint(int root, const char *dst, bool is_dir) {
        if (is_dir)
                return nb_mkdir_p_in_root(root, dst, 0755);
        _cleanup_free_ char *parent = strdup(dst);
        if (!parent)
                return -ENOMEM;
        char *slash = strrchr(parent, '/');
        const char *name = dst + (slash - parent) + 1;
        *slash = 0;
        _cleanup_close_ int pfd = nb_mkdir_p_in_root(root, *parent ? parent : "/", 0755);
        if (pfd < 0)
                return pfd;
        _cleanup_close_ int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        /* An existing file (or one under an earlier read-only bind) is a fine mount point. */
        _cleanup_close_ int f = openat(dfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (f < 0 && errno != EISDIR && errno != EROFS && errno != EACCES)
                return -errno;
        int mp = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        return mp < 0 ? -errno : mp;
}

static int set_attrs(int tree, uint64_t attrs, bool recursive) {
        struct mount_attr a = { .attr_set = attrs };
        if (mount_setattr(tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a, sizeof(a)) < 0)
                return -errno;
        return 0;
}

static int attach(int tree, int target) {
        if (move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return -errno;
        return 0;
}

static int clone_host_path(const char *path) {
        int fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        return fd < 0 ? -errno : fd;
}

static int new_tmpfs(uint64_t size, const char *mode, uint64_t attrs) {
        _cleanup_close_ int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0)
                return -errno;
        char sz[32];
        snprintf(sz, sizeof(sz), "%llu", (unsigned long long) size);
        if (fsconfig(fs, FSCONFIG_SET_STRING, "size", sz, 0) < 0 ||
            fsconfig(fs, FSCONFIG_SET_STRING, "mode", mode, 0) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        int m = fsmount(fs, FSMOUNT_CLOEXEC, (unsigned) attrs);
        return m < 0 ? -errno : m;
}

static int prepare_plan(const struct nb_sandbox_config *cfg, struct nb_mount_plan *p, struct nb_error *err) {
        for (size_t i = 0; i < NB_ELEMENTSOF(dev_nodes); i++)
                p->dev_trees[i] = -1;
        p->source_trees = malloc((cfg->n_mounts + 1) * sizeof(int));
        p->overlay = calloc(cfg->n_mounts + 1, sizeof(bool));
        if (!p->source_trees || !p->overlay)
                return nb_error_set(err, ENOMEM, "mounts");
        _cleanup_(nb_mountinfo_done) struct nb_mountinfo mountinfo = { 0 };
        p->n = cfg->n_mounts;
        for (size_t i = 0; i < p->n; i++)
                p->source_trees[i] = -1;
        for (size_t i = 0; i < p->n; i++) {
                const struct nb_mount *m = &cfg->mounts[i];
                if (m->kind != NB_MOUNT_RO_BIND && m->kind != NB_MOUNT_BIND)
                        continue;
                int t = clone_host_path(m->src);
                if (t < 0)
                        return nb_error_set(err, -t, "%s %s", m->kind == NB_MOUNT_RO_BIND ? "--ro-bind" : "--bind", m->src);
                p->source_trees[i] = t;
                p->overlay[i] = nb_overlay_wanted(m, &mountinfo);
        }
        for (size_t i = 0; i < NB_ELEMENTSOF(dev_nodes); i++) {
                char path[32];
                snprintf(path, sizeof(path), "/dev/%s", dev_nodes[i]);
                int t = clone_host_path(path);
                if (t < 0)
                        return nb_error_set(err, -t, "cloning host %s", path);
                p->dev_trees[i] = t;
        }
        p->dev_null_tree = p->dev_trees[0];
        return 0;
}

static int write_etc(int root, const struct nb_sandbox_config *cfg, struct nb_error *err) {
        _cleanup_close_ int etc = nb_mkdir_p_in_root(root, "/etc", 0755);
        if (etc < 0)
                return nb_error_set(err, -etc, "creating /etc");
        _cleanup_close_ int dfd = openat(etc, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return nb_error_set(err, errno, "opening /etc");
        const char *host = cfg->hostname ? cfg->hostname : "nestbox";
        _cleanup_free_ char *passwd = NULL, *group = NULL, *hosts = NULL;
        if (asprintf(&passwd,
                     "root:x:0:0:root:/root:/bin/sh\n"
                     "nestbox:x:%u:%u:nestbox:/tmp/home:/bin/sh\n"
                     "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                     (unsigned) cfg->uid, (unsigned) cfg->gid) < 0 ||
            asprintf(&group, "root:x:0:\nnestbox:x:%u:\nnogroup:x:65534:\n", (unsigned) cfg->gid) < 0 ||
            asprintf(&hosts, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", host) < 0)
                return nb_error_set(err, ENOMEM, "generating /etc");
        struct { const char *name, *text; } files[] = {
                { "passwd", passwd }, { "group", group }, { "hosts", hosts },
                { "nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n" },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(files); i++) {
                int r = nb_write_file_beneath(dfd, files[i].name, files[i].text, strlen(files[i].text), 0644);
                if (r < 0)
                        return nb_error_set(err, -r, "writing /etc/%s", files[i].name);
        }
        return 0;
}

static bool has_mount_at(const struct nb_sandbox_config *cfg, const char *dst) {
        for (size_t i = 0; i < cfg->n_mounts; i++)
                if (strcmp(cfg->mounts[i].dst, dst) == 0)
                        return true;
        return false;
}

/* The overlay of a read-only bind's clone (mounts_overlay.c), or the clone itself when
 * the kernel refuses one. The empty lower layer is made once per sandbox. */
static int overlay_or_clone(int tree, int *empty_lower, int *ret) {
        if (*empty_lower < 0)
                *empty_lower = new_tmpfs(4096, "0555", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        int o = *empty_lower >= 0 ? nb_overlay_of(tree, *empty_lower) : *empty_lower;
        *ret = o >= 0 ? o : -1;
        return 0;
}

static int apply_user_mount(int root, const struct nb_mount *m, int tree, bool overlay, int *empty_lower,
                            int export_sock, struct nb_error *err) {
        int r = 0;
        switch (m->kind) {
        case NB_MOUNT_RO_BIND:
        case NB_MOUNT_BIND: {
                _cleanup_close_ int shown = -1;
                if (overlay && overlay_or_clone(tree, empty_lower, &shown) == 0 && shown >= 0)
                        tree = shown;
                struct stat st;
                if (fstatat(tree, "", &st, AT_EMPTY_PATH) < 0)
                        return nb_error_set(err, errno, "bind %s", m->src);
                _cleanup_close_ int target = make_mountpoint(root, m->dst, S_ISDIR(st.st_mode));
                if (target < 0)
                        return nb_error_set(err, -target, "bind target %s", m->dst);
                uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
                if (m->kind == NB_MOUNT_RO_BIND)
                        attrs |= MOUNT_ATTR_RDONLY;
                if ((r = set_attrs(tree, attrs, true)) < 0 || (r = attach(tree, target)) < 0)
                        return nb_error_set(err, -r, "binding %s to %s", m->src, m->dst);
                return 0;
        }
        case NB_MOUNT_TMPFS:
        case NB_MOUNT_OUT_TMPFS: {
                _cleanup_close_ int target = nb_mkdir_p_in_root(root, m->dst, 0755);
                if (target < 0)
                        return nb_error_set(err, -target, "tmpfs target %s", m->dst);
                _cleanup_close_ int fs = new_tmpfs(m->size ? m->size : (64ull << 20),
                                                   m->kind == NB_MOUNT_OUT_TMPFS ? "0755" : "1777",
                                                   MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
                if (fs < 0)
                        return nb_error_set(err, -fs, "tmpfs at %s", m->dst);
                /* The supervisor keeps a descriptor of the root: it reads what was
                 * written there after the sandbox (and its mount namespace) is gone. */
                if (m->kind == NB_MOUNT_OUT_TMPFS) {
                        _cleanup_close_ int dir = openat(fs, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (dir < 0 || (r = nb_send_fd(export_sock, dir)) < 0)
                                return nb_error_set(err, dir < 0 ? errno : -r, "handing out %s", m->dst);
                }
                if ((r = attach(fs, target)) < 0)
                        return nb_error_set(err, -r, "tmpfs at %s", m->dst);
                return 0;
        }
        case NB_MOUNT_SYMLINK: {
                _cleanup_free_ char *parent = strdup(m->dst);
                if (!parent)
                        return nb_error_set(err, ENOMEM, "symlink");
                char *slash = strrchr(parent, '/');
                *slash = 0;
                _cleanup_close_ int pfd = nb_mkdir_p_in_root(root, *parent ? parent : "/", 0755);
                if (pfd < 0)
                        return nb_error_set(err, -pfd, "symlink %s", m->dst);
                _cleanup_close_ int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0 || symlinkat(m->src, dfd, slash + 1) < 0)
                        return nb_error_set(err, errno, "symlink %s -> %s", m->dst, m->src);
                return 0;
        }
        case NB_MOUNT_DIR: {
                _cleanup_close_ int d = nb_mkdir_p_in_root(root, m->dst, 0755);
                if (d < 0)
                        return nb_error_set(err, -d, "directory %s", m->dst);
                return 0;
        }
        }
        return nb_error_setx(err, EINVAL, "unknown mount kind %d", (int) m->kind);
}

/* Read-only views and masks over the new procfs (crun's and runc's defaults): the test
 * sees its own processes, not knobs that reach the whole machine. */
static int harden_proc(int proc, int dev_null, struct nb_error *err) {
        for (size_t i = 0; i < NB_ELEMENTSOF(proc_readonly); i++) {
                _cleanup_close_ int t = open_tree(proc, proc_readonly[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                if (t < 0) {
                        if (errno == ENOENT)
                                continue;
                        return nb_error_set(err, errno, "/proc/%s", proc_readonly[i]);
                }
                _cleanup_close_ int target = openat(proc, proc_readonly[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
                int r = 0;
                if (target < 0 || (r = set_attrs(t, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true)) < 0 ||
                    (r = attach(t, target)) < 0)
                        return nb_error_set(err, target < 0 ? errno : -r, "making /proc/%s read-only", proc_readonly[i]);
        }
        for (size_t i = 0; i < NB_ELEMENTSOF(proc_masked_files); i++) {
                _cleanup_close_ int target = openat(proc, proc_masked_files[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (target < 0)
                        continue;
                _cleanup_close_ int null = open_tree(dev_null, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
                int r = 0;
                if (null < 0 || (r = attach(null, target)) < 0)
                        return nb_error_set(err, null < 0 ? errno : -r, "masking /proc/%s", proc_masked_files[i]);
        }
        /* One empty read-only tmpfs serves every masked directory: the first mask is
         * it, the others are clones of that mount (a superblock fewer to make and to
         * tear down for each). */
        _cleanup_close_ int first = -1;
        for (size_t i = 0; i < NB_ELEMENTSOF(proc_masked_dirs); i++) {
                _cleanup_close_ int target = openat(proc, proc_masked_dirs[i], O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
                if (target < 0)
                        continue;
                _cleanup_close_ int empty = first < 0 ? new_tmpfs(4096, "0555", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                                                            MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)
                                                      : open_tree(first, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
                if (empty < 0 && first >= 0)
                        empty = -errno;
                int r = 0;
                if (empty < 0 || (r = attach(empty, target)) < 0)
                        return nb_error_set(err, empty < 0 ? -empty : -r, "masking /proc/%s", proc_masked_dirs[i]);
                if (first < 0)
                        first = TAKE_FD(empty);
        }
        return 0;
}

static int mount_proc(int root, const struct nb_mount_plan *p, bool unmasked, struct nb_error *err) {
        _cleanup_close_ int target = nb_mkdir_p_in_root(root, "/proc", 0755);
        if (target < 0)
                return nb_error_set(err, -target, "creating /proc");
        /* A procfs of our own pid namespace: the host's processes do not exist in it. */
        _cleanup_close_ int fs = fsopen("proc", FSOPEN_CLOEXEC);
        if (fs < 0 || fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return nb_error_set(err, errno, "creating procfs");
        _cleanup_close_ int proc = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (proc < 0)
                return nb_error_set(err, errno, "mounting procfs");
        int r = attach(proc, target);
        if (r < 0)
                return nb_error_set(err, -r, "attaching /proc");
        _cleanup_close_ int attached = nb_open_in_root(root, "/proc", O_PATH | O_DIRECTORY);
        if (attached < 0)
                return nb_error_set(err, -attached, "opening /proc");
        return unmasked ? 0 : harden_proc(attached, p->dev_null_tree, err);
}

static int mount_dev(int root, const struct nb_mount_plan *p, struct nb_error *err) {
        _cleanup_close_ int target = nb_mkdir_p_in_root(root, "/dev", 0755);
        if (target < 0)
                return nb_error_set(err, -target, "creating /dev");
        _cleanup_close_ int fs = new_tmpfs(1 << 20, "0755", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        int r = 0;
        if (fs < 0 || (r = attach(fs, target)) < 0)
                return nb_error_set(err, fs < 0 ? -fs : -r, "tmpfs at /dev");
        _cleanup_close_ int dev = nb_open_in_root(root, "/dev", O_RDONLY | O_DIRECTORY);
        if (dev < 0)
                return nb_error_set(err, -dev, "opening /dev");
        /* Device nodes cannot be created in a user namespace; the host's harmless ones
         * are bound instead. */
        for (size_t i = 0; i < NB_ELEMENTSOF(dev_nodes); i++) {
                _cleanup_close_ int node = openat(dev, dev_nodes[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
                if (node < 0)
                        return nb_error_set(err, errno, "creating /dev/%s", dev_nodes[i]);
                _cleanup_close_ int mp = openat(dev, dev_nodes[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (mp < 0 || (r = attach(p->dev_trees[i], mp)) < 0)
                        return nb_error_set(err, mp < 0 ? errno : -r, "binding /dev/%s", dev_nodes[i]);
        }
        static const struct { const char *name, *target; } links[] = {
                { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
                { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
        };
        for (size_t i = 0; i < NB_ELEMENTSOF(links); i++)
                if (symlinkat(links[i].target, dev, links[i].name) < 0)
                        return nb_error_set(err, errno, "/dev/%s", links[i].name);
        if (mkdirat(dev, "shm", 01777) < 0 || mkdirat(dev, "pts", 0755) < 0)
                return nb_error_set(err, errno, "/dev/shm");
        _cleanup_close_ int shm_target = openat(dev, "shm", O_PATH | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int shm = new_tmpfs(64ull << 20, "1777", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (shm_target < 0 || shm < 0 || (r = attach(shm, shm_target)) < 0)
                return nb_error_set(err, shm < 0 ? -shm : (shm_target < 0 ? errno : -r), "tmpfs at /dev/shm");
        /* The /dev tmpfs itself becomes read-only: the test cannot plant nodes or links. */
        _cleanup_close_ int devmnt = nb_open_in_root(root, "/dev", O_PATH | O_DIRECTORY);
        if (devmnt < 0 || (r = set_attrs(devmnt, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false)) < 0)
                return nb_error_set(err, devmnt < 0 ? -devmnt : -r, "making /dev read-only");
        return 0;
}

static int enter_root(struct nb_error *err) {
        /* pivot_root(".", ".") stacks the old root under the new one; detaching it then
         * leaves no path back to the host's tree (the runc/crun idiom). */
        if (chdir(STAGING_DIR) < 0)
                return nb_error_set(err, errno, "chdir to the new root");
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return nb_error_set(err, errno, "pivot_root");
        if (umount2(".", MNT_DETACH) < 0)
                return nb_error_set(err, errno, "detaching the old root");
        if (chdir("/") < 0)
                return nb_error_set(err, errno, "chdir /");
        struct mount_attr a = { .attr_set = MOUNT_ATTR_RDONLY };
        if (mount_setattr(AT_FDCWD, "/", 0, &a, sizeof(a)) < 0)
                return nb_error_set(err, errno, "making / read-only");
        return 0;
}

int nb_mounts_prepare(const struct nb_sandbox_config *cfg, struct nb_mount_plan **ret, struct nb_error *err) {
        /* Nothing we mount from here on may propagate back into the host. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return nb_error_set(err, errno, "making mounts private");
        struct nb_mount_plan *plan = calloc(1, sizeof(*plan));
        if (!plan)
                return nb_error_set(err, ENOMEM, "mounts");
        int r = prepare_plan(cfg, plan, err);
        if (r < 0) {
                nb_mount_plan_free(plan);
                return r;
        }
        *ret = plan;
        return 0;
}

int nb_mounts_setup(const struct nb_sandbox_config *cfg, const struct nb_mount_plan *plan, int export_sock,
                    struct nb_error *err) {
        _cleanup_close_ int root_fs = new_tmpfs(4ull << 20, "0755", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (root_fs < 0)
                return nb_error_set(err, -root_fs, "tmpfs for the new root");
        if (move_mount(root_fs, "", AT_FDCWD, STAGING_DIR, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return nb_error_set(err, errno, "attaching the new root");
        _cleanup_close_ int root = open(STAGING_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return nb_error_set(err, errno, "opening the new root");

        int r;
        if ((r = write_etc(root, cfg, err)) < 0)
                return r;
        if (!has_mount_at(cfg, "/tmp")) {
                struct nb_mount tmp = { .kind = NB_MOUNT_TMPFS, .dst = (char *) "/tmp", .size = cfg->tmp_size };
                if ((r = apply_user_mount(root, &tmp, -1, false, NULL, -1, err)) < 0)
                        return r;
        }
        _cleanup_close_ int empty_lower = -1;
        for (size_t i = 0; i < cfg->n_mounts; i++)
                if ((r = apply_user_mount(root, &cfg->mounts[i], plan->source_trees[i], plan->overlay[i], &empty_lower,
                                          export_sock, err)) < 0)
                        return r;
        if ((r = mount_proc(root, plan, cfg->zygote, err)) < 0)
                return r;
        if ((r = mount_dev(root, plan, err)) < 0)
                return r;
        return enter_root(err);
}
