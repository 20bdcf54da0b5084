/* SPDX-License-Identifier: MIT */
/* The denial report: the supervisor's side of seccomp user notification. With the
 * report on, every denied call (seccomp.c) stops in the kernel until we answer; we
 * count it by architecture and syscall number and answer EPERM, which is what the call
 * would have got without the report. The test cannot forge or hide a count: the
 * notification comes from the kernel, and the listener never enters the sandbox (pid 1
 * sends it to us over a socket of its own and closes its copy).
 *
 * A call that is not denied never reaches us, so a run without denials costs what a
 * plain filter costs. Memory is bounded by the deny list: one entry per distinct
 * (architecture, syscall). */
#include <errno.h>
#include <poll.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "sandbox-internal.h"

int nb_denials_init(struct nb_denials *d, int sock) {
        memset(d, 0, sizeof(*d));
        d->sock = sock;
        d->listener = -1;
        int r = seccomp_notify_alloc(&d->req, &d->resp);
        return r < 0 ? r : 0;
}

void nb_denials_done(struct nb_denials *d) {
        if (d->listener >= 0)
                close(d->listener);
        d->listener = -1;
        seccomp_notify_free(d->req, d->resp);
        d->req = NULL;
        d->resp = NULL;
        nb_denial_list_free(d->v, d->n);
        d->v = NULL;
        d->n = 0;
}

int nb_denials_poll_fd(const struct nb_denials *d) {
        return d->listener >= 0 ? d->listener : d->sock;
}

static int count(struct nb_denials *d, uint32_t arch, int nr) {
        for (size_t i = 0; i < d->n; i++)
                if (d->v[i].arch == arch && d->v[i].nr == nr) {
                        d->v[i].count++;
                        return 0;
                }
        struct nb_denial *nv = realloc(d->v, (d->n + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        d->v = nv;
        _cleanup_free_ char *name = seccomp_syscall_resolve_num_arch(arch, nr);
        const char *suffix = arch == seccomp_arch_native() && !(nr & 0x40000000) ? ""
                             : arch == SCMP_ARCH_X86                            ? "[i386]"
                             : (nr & 0x40000000)                                ? "[x32]"
                                                                                : "[compat]";
        char *label = NULL;
        if (name ? asprintf(&label, "%s%s", name, suffix) < 0 : asprintf(&label, "syscall %d%s", nr, suffix) < 0)
                return -ENOMEM;
        d->v[d->n++] = (struct nb_denial) { .name = label, .arch = arch, .nr = nr, .count = 1 };
        return 0;
}

int nb_denials_ready(struct nb_denials *d, short revents) {
        if (d->listener < 0) {
                /* The child's listener, once: then the socket has nothing more to say. */
                int fd = nb_recv_fd(d->sock);
                if (fd >= 0) {
                        d->listener = fd;
                        return 0;
                }
                if (revents & (POLLHUP | POLLERR))
                        d->sock = -1; /* the child is gone without one: nothing to listen to */
                return 0;
        }
        memset(d->req, 0, sizeof(*d->req));
        /* ENOENT: the caller was killed while we were on our way; nothing to answer.
         * With POLLHUP every process under the filter has exited: stop listening
         * (never spin on a listener that has nothing more to say). */
        if (!(revents & POLLIN) || seccomp_notify_receive(d->listener, d->req) < 0) {
                if (revents & (POLLHUP | POLLERR)) {
                        close(d->listener);
                        d->listener = -1;
                        d->sock = -1;
                }
                return 0;
        }
        d->resp->id = d->req->id;
        d->resp->val = 0;
        d->resp->error = -EPERM;
        d->resp->flags = 0;
        (void) seccomp_notify_respond(d->listener, d->resp);
        return count(d, d->req->data.arch, d->req->data.nr);
}

static int by_name(const void *x, const void *y) {
        return strcmp(((const struct nb_denial *) x)->name, ((const struct nb_denial *) y)->name);
}

void nb_denials_take(struct nb_denials *d, struct nb_sandbox_result *res) {
        nb_qsort(d->v, d->n, sizeof(*d->v), by_name);
        res->denied = d->v;
        res->n_denied = d->n;
        d->v = NULL;
        d->n = 0;
}

void nb_denial_list_free(struct nb_denial *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
}
