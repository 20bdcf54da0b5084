/* SPDX-License-Identifier: MIT */
/* The supervisor's signals while a sandbox runs: SIGINT, SIGTERM, SIGHUP and SIGQUIT
 * are blocked and read from a signalfd (supervise() in sandbox.c forwards them to pid
 * 1), SIGPIPE is blocked so a child that died early cannot kill us through a pipe, and
 * the caller's mask comes back on every way out, with a signal it handles raised again. */
#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>

#include "nestbox/cleanup.h"
#include "sandbox-internal.h"

static const int supervisor_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

/* The signal mask from before the run, restored when its variable goes out of scope.
 * SIGPIPE is blocked while we run a sandbox (a child that died early must not kill
 * us through the sync pipe); one that became pending is consumed before unblocking. */
void nb_saved_mask_restore(struct nb_saved_mask *m) {
        if (!m->saved)
                return;
        nb_sandbox_restore_signals(&m->old);
        /* A caller that handles it (its cancel flag) would otherwise never hear of it:
         * the signalfd took it, and it reached only the sandbox. One that would die of
         * it keeps the command's own status instead. */
        struct sigaction sa;
        if (m->reraise && sigaction(m->reraise, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
            sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN)
                (void) raise(m->reraise);
}

void nb_sandbox_restore_signals(const sigset_t *old) {
        int saved = errno;
        sigset_t pipe_set;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE)
                ;
        (void) sigprocmask(SIG_SETMASK, old, NULL); /* a mask we got from it */
        errno = saved;
}

int nb_sandbox_block_signals(sigset_t *old, struct nb_error *err) {
        /* Our own SIGINT/SIGTERM are for the sandbox: forwarded, not fatal to us. */
        sigset_t sigs;
        sigemptyset(&sigs);
        for (size_t i = 0; i < NB_ELEMENTSOF(supervisor_signals); i++)
                sigaddset(&sigs, supervisor_signals[i]);
        sigset_t blocked = sigs;
        sigaddset(&blocked, SIGPIPE);
        if (sigprocmask(SIG_BLOCK, &blocked, old) < 0)
                return nb_error_set(err, errno, "blocking signals");
        /* Without it a ^C would stay blocked and never reach the command. */
        int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sigfd < 0) {
                int e = errno;
                nb_sandbox_restore_signals(old);
                return nb_error_set(err, e, "signalfd");
        }
        return sigfd;
}
