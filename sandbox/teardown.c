/* SPDX-License-Identifier: MIT */
/* What the supervisor waits for when a run ends.
 *
 * It must wait until nothing the test started is alive: until then a process could
 * still write to /out while we read it back, or outlive the sandbox. It need not wait
 * for pid 1's own exit, in which the kernel tears the mount namespace down (every
 * tmpfs, overlay and bind of the sandbox: 0.15-0.3 ms for a bare /bin/true).
 *
 * So pid 1 reports the command's status once it has exited, with whether anything else
 * was left in the pid namespace (init.c). When nothing was, and the run has no memory
 * or pids limit (a cgroup's rmdir needs pid 1 gone), the supervisor returns at once;
 * pid 1 is reaped at the next run (nb_end_reap_left), so a long-lived caller keeps no
 * zombie for long.
 * Otherwise, and whenever the report is missing (pid 1 killed at the timeout), it waits
 * for pid 1 to be reaped: the kernel has then killed everything in the namespace.
 * bwrap leaves as soon as its init reports the command's exit, whatever it left
 * running; we leave early only when nothing is. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox-internal.h"

int nb_end_read_report(struct nb_sandbox_end *end) {
        ssize_t n;
        do
                n = read(end->status_fd, &end->report, sizeof(end->report));
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN)
                return -errno;
        end->have_report = n == (ssize_t) sizeof(end->report);
        if (n == 0 || end->have_report)
                end->status_fd = -1; /* nothing more will come: stop polling it */
        return 0;
}

/* The pid 1s we left to finish their teardown, reaped at the next run. A process forked
 * from ours inherits the list but not the children: owner tells them apart. */
static pthread_mutex_t left_lock = PTHREAD_MUTEX_INITIALIZER;
static struct left_pid1 {
        pid_t pid, owner;
} *left_pid1s;
static size_t n_left;

void nb_end_leave(pid_t pid) {
        pthread_mutex_lock(&left_lock);
        struct left_pid1 *v = realloc(left_pid1s, (n_left + 1) * sizeof(*v));
        if (v) {
                left_pid1s = v;
                left_pid1s[n_left++] = (struct left_pid1) { pid, getpid() };
        }
        pthread_mutex_unlock(&left_lock);
        if (!v) /* no memory to remember it: wait for it now */
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
}

void nb_end_reap_left(void) {
        pthread_mutex_lock(&left_lock);
        pid_t self = getpid();
        for (size_t i = 0; i < n_left; i++)
                if (left_pid1s[i].owner == self)
                        while (waitpid(left_pid1s[i].pid, NULL, 0) < 0 && errno == EINTR)
                                ;
        n_left = 0;
        pthread_mutex_unlock(&left_lock);
}

