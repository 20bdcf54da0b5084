/* SPDX-License-Identifier: MIT */
/* What the cgroup v1 and v2 backends share: finding our own cgroup in a hierarchy,
 * reading and writing its files, creating a child cgroup for one sandbox and removing
 * it again (and the ones a killed nestbox left behind). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "limits-internal.h"

/* The first answer of match() other than NULL for a line of path. */
static char *scan_lines(const char *path, char *(*match)(char *line, const char *controller), const char *controller) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                char *found = match(line, controller);
                if (found)
                        return found;
        }
        return NULL;
}

/* A line of /proc/self/mountinfo: its mount point, when it is the cgroup hierarchy
 * with the given controller ("" = v2). */
static char *match_mount(char *line, const char *controller) {
        char *sep = strstr(line, " - ");
        if (!sep)
                return NULL;
        char mnt[4096], fstype[64], source[256], opts[1024];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
            sscanf(sep + 3, "%63s %255s %1023s", fstype, source, opts) != 3)
                return NULL;
        if (!*controller && strcmp(fstype, "cgroup2") == 0)
                return strdup(mnt);
        if (*controller && strcmp(fstype, "cgroup") == 0) {
                char *save = NULL;
                for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save))
                        if (strcmp(o, controller) == 0)
                                return strdup(mnt);
        }
        return NULL;
}

/* A line of /proc/self/cgroup: our cgroup, when the line is that hierarchy's ("" =
 * the v2 line "0::"). */
static char *match_own(char *line, const char *controller) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
                return NULL;
        *c1 = *c2 = 0; /* line is the hierarchy's number, ctrls its controllers */
        const char *ctrls = c1 + 1;
        if (!*controller)
                return strcmp(line, "0") == 0 && !*ctrls ? strdup(c2 + 1) : NULL;
        if (!strstr(ctrls, controller))
                return NULL;
        bool found = false;
        _cleanup_free_ char *copy = strdup(ctrls);
        char *save = NULL;
        for (char *o = copy ? strtok_r(copy, ",", &save) : NULL; o; o = strtok_r(NULL, ",", &save))
                found |= strcmp(o, controller) == 0;
        return found ? strdup(c2 + 1) : NULL;
}

/* The cgroup v2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a
 * hybrid one (systemd's two places), else wherever mountinfo has one. */
static char *cgroup2_mount(void) {
        static const char *const usual[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        for (size_t i = 0; i < NB_ELEMENTSOF(usual); i++) {
                struct statfs sfs;
                if (statfs(usual[i], &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
                        return strdup(usual[i]);
        }
        return scan_lines("/proc/self/mountinfo", match_mount, "");
}

/* A v1 hierarchy's mount point, read once a process: the backend choice and the
 * preparation ask for each resource's (four parses of mountinfo a spawn otherwise,
 * 0.1-0.2 ms each), and a hierarchy does not move under a running nestbox. Only an
 * answer is kept: one not mounted yet is looked for again. */
static char *v1_mount(const char *controller) {
        static struct {
                char *controller, *mnt;
        } memo[4];
        size_t i = 0;
        for (; i < NB_ELEMENTSOF(memo) && memo[i].controller; i++)
                if (strcmp(memo[i].controller, controller) == 0)
                        return strdup(memo[i].mnt);
        char *mnt = scan_lines("/proc/self/mountinfo", match_mount, controller);
        if (mnt && i < NB_ELEMENTSOF(memo)) {
                char *c = strdup(controller), *m = strdup(mnt);
                if (c && m) {
                        memo[i].controller = c;
                        memo[i].mnt = m;
                } else {
                        free(c);
                        free(m);
                }
        }
        return mnt;
}

char *nb_cgroup_dir(const char *controller) {
        const char *fake = nb_cgroup2_test_root();
        if (fake && !*controller)
                return strdup(fake); /* test only: that tree is the hierarchy and our cgroup its top */
        _cleanup_free_ char *mnt = *controller ? v1_mount(controller) : cgroup2_mount();
        _cleanup_free_ char *own = scan_lines("/proc/self/cgroup", match_own, controller);
        /* Outside our cgroup namespace's root the path reads "/../x": not ours to name. */
        if (!mnt || !own || *own != '/' || strstr(own, "/.."))
                return NULL;
        char *dir = NULL;
        if (asprintf(&dir, "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own) < 0)
                return NULL;
        return dir;
}

int nb_cgroup_write(const char *dir, const char *file, const char *value) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return -ENOMEM;
        /* The test-only tree is a plain directory: its files appear as they are written. */
        int flags = O_WRONLY | O_CLOEXEC | (nb_cgroup2_test_root() ? O_CREAT | O_TRUNC : 0);
        _cleanup_close_ int fd = open(path, flags, 0644);
        if (fd < 0)
                return -errno;
        return nb_write_all(fd, value, strlen(value));
}

int nb_cgroup_write_u64(const char *dir, const char *file, uint64_t v) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
        return nb_cgroup_write(dir, file, buf);
}

/* Reads "key N" from a flat-keyed cgroup file (memory.events, pids.events, ...);
 * with key NULL, reads a single number. */
uint64_t nb_cgroup_read_key(const char *dir, const char *file, const char *key) {
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

/* A cgroup younger than this is never taken for stale: its creator may live in another
 * pid namespace (kill() cannot see it there) and be about to move a sandbox in. */
#define STALE_AFTER_SEC 60

/* A nestbox killed with SIGKILL cannot remove its cgroups; the next one does, for any
 * whose creator is gone (an empty cgroup is all that is left: the sandbox died with
 * its parent) and that is old enough not to be another process's about to be joined. */
static void remove_stale_cgroups(const char *parent) {
        _cleanup_closedir_ DIR *d = opendir(parent);
        struct dirent *de;
        struct timespec now;
        if (!d || clock_gettime(CLOCK_REALTIME, &now) < 0)
                return;
        while ((de = readdir(d))) {
                int pid;
                unsigned n;
                struct stat st;
                if (sscanf(de->d_name, "nestbox-%d-%u", &pid, &n) != 2 || pid <= 0)
                        continue;
                if (kill(pid, 0) == 0 || errno != ESRCH)
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
                    now.tv_sec - st.st_mtim.tv_sec < STALE_AFTER_SEC)
                        continue;
                (void) unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR); /* best effort: one still busy stays */
        }
}

int nb_cgroup_create_child(const char *parent, char **ret) {
        static unsigned counter;
        remove_stale_cgroups(parent);
        /* A name can be taken: a nestbox killed less than STALE_AFTER_SEC ago whose pid
         * is ours now left its cgroup behind. Take the next free one. */
        for (unsigned tries = 0; tries < 256; tries++) {
                _cleanup_free_ char *dir = NULL;
                if (asprintf(&dir, "%s/nestbox-%d-%u", parent, (int) getpid(), counter++) < 0)
                        return -ENOMEM;
                if (mkdir(dir, 0755) == 0) {
                        *ret = TAKE_PTR(dir);
                        return 0;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

/* Kills whatever is still in a cgroup, then removes it. The sandbox's pid namespace
 * is gone by now, so this is belt and braces. */
void nb_cgroup_destroy(const char *dir) {
        if (!dir)
                return;
        if (nb_cgroup2_test_root()) {
                /* Test only: the pids written there are no cgroup's; remove the files
                 * nestbox wrote as a kernel removes a cgroup's with its directory. */
                _cleanup_closedir_ DIR *d = opendir(dir);
                struct dirent *de;
                while (d && (de = readdir(d)))
                        if (de->d_type == DT_REG)
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                (void) rmdir(dir);
                return;
        }
        if (nb_cgroup_write(dir, "cgroup.kill", "1") < 0) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/cgroup.procs", dir) >= 0) {
                        _cleanup_fclose_ FILE *f = fopen(path, "re");
                        int pid;
                        while (f && fscanf(f, "%d", &pid) == 1)
                                (void) kill(pid, SIGKILL); /* it may be gone already */
                }
        }
        for (int i = 0; i < 200 && rmdir(dir) < 0 && errno == EBUSY; i++)
                usleep(5000);
}
