/* SPDX-License-Identifier: MIT */
/* The sandbox has its own network namespace: no interface but lo, so nothing on the
 * host (not even its 127.0.0.1) can be reached. lo is brought up unless the caller
 * asked for no network at all.
 *
 * A new net namespace is the dearest step of a spawn (about 0.65 ms of the kernel's
 * time: the per-namespace sysctls, lo's registration, ~0.1 ms more to bring lo up),
 * and nothing else in the child's setup depends on it. So pid 1 is cloned without
 * CLONE_NEWNET and a thread of its own makes the namespace (nb_net_start) while the
 * main thread assembles the mounts; the main thread joins it (nb_net_finish) before
 * it drops its capabilities, and with one thread again it is what it was: a process
 * in a new net namespace owned by the sandbox's user namespace. Until then it runs
 * only our own setup code, none of which touches the network. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "sandbox-internal.h"

static int loopback_up(int s, struct nb_error *err) {
        struct ifreq ifr = { 0 };
        strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return nb_error_set(err, errno, "loopback: SIOCGIFFLAGS");
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return nb_error_set(err, errno, "loopback: bringing lo up");
        return 0;
}

int nb_net_setup(const struct nb_sandbox_config *cfg, struct nb_error *err) {
        if (cfg->network == NB_NET_NONE)
                return 0;
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return nb_error_set(err, errno, "loopback: socket");
        return loopback_up(s, err);
}

/* The thread: a net namespace of its own (unshare affects the calling thread only),
 * lo up in it, and the namespace's fd for the main thread, taken from a socket in it
 * (SIOCGSKNS) so that no /proc is needed. */
static void *net_thread(void *arg) {
        struct nb_net_job *j = arg;
        __atomic_store_n(&j->tid, gettid(), __ATOMIC_RELEASE);
        if (unshare(CLONE_NEWNET) < 0) {
                nb_error_set(&j->err, errno, "net namespace");
                return NULL;
        }
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
                nb_error_set(&j->err, errno, "loopback: socket");
                return NULL;
        }
        if (j->loopback && loopback_up(s, &j->err) < 0)
                return NULL;
        j->ns_fd = ioctl(s, SIOCGSKNS);
        if (j->ns_fd < 0)
                nb_error_set(&j->err, errno, "net namespace: SIOCGSKNS");
        return NULL;
}

int nb_net_start(const struct nb_sandbox_config *cfg, struct nb_net_job *j, struct nb_error *err) {
        *j = (struct nb_net_job) { .ns_fd = -1, .loopback = cfg->network != NB_NET_NONE, .err = NB_ERROR_INIT };
        /* The thread takes pid 2 of the new pid namespace; the command must still get
         * it, as it did without the thread (and does in the warm interpreter's
         * sandboxes): ns_last_pid is set back once the thread is gone (nb_net_finish).
         * Opened now, through the host's procfs: the sandbox's /proc/sys will be read
         * only. The write acts on the writer's own pid namespace whatever the procfs. */
        j->last_pid_fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
        pthread_attr_t attr;
        int r = pthread_attr_init(&attr);
        if (r != 0)
                return nb_error_set(err, r, "net namespace: thread attributes");
        /* Its work is a handful of syscalls: a small stack maps and unmaps faster. */
        (void) pthread_attr_setstacksize(&attr, 64 * 1024);
        r = pthread_create(&j->thread, &attr, net_thread, j);
        pthread_attr_destroy(&attr);
        if (r != 0)
                return nb_error_set(err, r, "net namespace: starting its thread");
        j->started = true;
        return 0;
}

int nb_net_finish(struct nb_net_job *j, struct nb_error *err) {
        if (!j->started)
                return nb_error_setx(err, EINVAL, "net namespace: never started");
        int r = pthread_join(j->thread, NULL);
        j->started = false;
        _cleanup_close_ int last_pid = j->last_pid_fd;
        j->last_pid_fd = -1;
        if (r != 0)
                return nb_error_set(err, r, "net namespace: joining its thread");
        /* join returns when the thread has cleared its tid, a moment before the
         * kernel frees the pid itself; then the next pid is 2 again. Privileged:
         * safe because it names our own pid namespace only. Best effort: without it
         * the command is pid 3. */
        pid_t tid = __atomic_load_n(&j->tid, __ATOMIC_ACQUIRE);
        if (last_pid >= 0 && tid == 2) {
                while (syscall(SYS_tgkill, getpid(), tid, 0) == 0)
                        sched_yield();
                (void) write(last_pid, "1", 1);
        }
        _cleanup_close_ int fd = j->ns_fd;
        j->ns_fd = -1;
        if (j->err.code) {
                r = nb_error_setx(err, j->err.code, "%s", nb_error_message(&j->err));
                nb_error_clear(&j->err);
                return r;
        }
        /* Privileged: safe because the namespace is the one our thread has just made,
         * owned by our own user namespace. */
        if (setns(fd, CLONE_NEWNET) < 0)
                return nb_error_set(err, errno, "net namespace: setns");
        return 0;
}
