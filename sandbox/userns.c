/* SPDX-License-Identifier: MIT */
/* The user namespace: the sandbox runs as uid/gid 1000 (by default) inside. That id is
 * the caller outside, or nobody/nogroup when the caller is root, so nothing in the
 * sandbox ever acts as host root, even through a bug in the rest of the isolation. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "sandbox-internal.h"

/* The id of name in the host's own file (/etc/passwd or /etc/group), or fallback.
 * Read directly, not through NSS: getpwnam() loads the NSS modules nsswitch.conf names
 * (and may ask nscd, sssd or LDAP), 105 us against 60 us here; the nobody that matters
 * is the local one. */
static unsigned id_in(const char *file, const char *name, const char *alt, bool group, unsigned fallback) {
        _cleanup_fclose_ FILE *f = fopen(file, "re");
        if (!f)
                return fallback;
        unsigned found = fallback;
        bool exact = false;
        while (!exact) {
                const char *n;
                unsigned id;
                if (group) {
                        struct group *gr = fgetgrent(f);
                        if (!gr)
                                break;
                        n = gr->gr_name, id = gr->gr_gid;
                } else {
                        struct passwd *pw = fgetpwent(f);
                        if (!pw)
                                break;
                        n = pw->pw_name, id = pw->pw_uid;
                }
                if (strcmp(n, name) == 0)
                        found = id, exact = true;
                else if (alt && strcmp(n, alt) == 0)
                        found = id;
        }
        return found;
}

void nb_userns_choose_ids(struct nb_id_map *m) {
        m->caller_is_root = geteuid() == 0;
        if (!m->caller_is_root) {
                m->host_uid = geteuid();
                m->host_gid = getegid();
                return;
        }
        /* Once per process: `nestbox test` spawns a sandbox per target. */
        static uid_t uid = (uid_t) -1;
        static gid_t gid;
        if (uid == (uid_t) -1) {
                gid = id_in("/etc/group", "nogroup", "nobody", true, 65534);
                uid = id_in("/etc/passwd", "nobody", NULL, false, 65534);
        }
        m->host_uid = uid;
        m->host_gid = gid;
}

static int write_proc_file(pid_t pid, const char *name, const char *text, struct nb_error *err) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, name);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return nb_error_set(err, errno, "user namespace: opening %s", path);
        if (write(fd, text, strlen(text)) < 0)
                return nb_error_set(err, errno, "user namespace: writing \"%s\" to %s", text, path);
        return 0;
}

int nb_userns_write_maps(pid_t pid, const struct nb_sandbox_config *cfg, const struct nb_id_map *m, struct nb_error *err) {
        char line[64];
        /* An unprivileged writer may map only its own ids, and its gid only once
         * setgroups is denied (else dropping a group could grant access). Root keeps
         * setgroups so the child can shed root's supplementary groups. */
        if (!m->caller_is_root) {
                int r = write_proc_file(pid, "setgroups", "deny", err);
                if (r < 0)
                        return r;
        }
        snprintf(line, sizeof(line), "%u %u 1\n", (unsigned) cfg->gid, (unsigned) m->host_gid);
        int r = write_proc_file(pid, "gid_map", line, err);
        if (r < 0)
                return r;
        snprintf(line, sizeof(line), "%u %u 1\n", (unsigned) cfg->uid, (unsigned) m->host_uid);
        return write_proc_file(pid, "uid_map", line, err);
}

int nb_userns_become(const struct nb_sandbox_config *cfg, const struct nb_id_map *m, struct nb_error *err) {
        /* Safe: we hold CAP_SETUID/CAP_SETGID only inside our own user namespace, where
         * the single mapped id is the target; the kernel refuses any other.
         * Raw syscalls, for this thread alone: libc's wrappers would also switch the
         * net thread (net.c), which needs its capabilities until it is done, and
         * which is joined before anything runs that is not ours. */
        if (m->caller_is_root && syscall(SYS_setgroups, 0, NULL) < 0)
                return nb_error_set(err, errno, "setgroups");
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
                return nb_error_set(err, errno, "PR_SET_KEEPCAPS");
        if (syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid) < 0)
                return nb_error_set(err, errno, "setresgid %u", (unsigned) cfg->gid);
        if (syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid) < 0)
                return nb_error_set(err, errno, "setresuid %u", (unsigned) cfg->uid);
        return 0;
}

void nb_sandbox_host_ids(uid_t *uid, gid_t *gid) {
        struct nb_id_map m;
        nb_userns_choose_ids(&m);
        *uid = m.host_uid;
        *gid = m.host_gid;
}
