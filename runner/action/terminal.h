/* SPDX-License-Identifier: MIT */
/* The terminal of an interactive sandbox (nestbox repro --shell): a pty of our own
 * whose slave is the sandbox's stdio and controlling terminal, relayed to and from the
 * user's terminal by a small process of ours, as ssh and `docker run -t` do. The
 * user's terminal is raw meanwhile (so ^C, ^Z reach the shell through the pty's line
 * discipline, not us), and a resize is copied to the pty (the shell gets SIGWINCH).
 * The sandbox never holds the user's terminal: TIOCSTI, a terminal left in the
 * foreground after exit, or a job still reading it cannot happen to it. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <termios.h>

#include "nestbox/error.h"

struct nb_terminal {
        int slave;     /* for the sandbox: fds 0-2; -1 once handed over */
        int master;
        pid_t relay;
        struct termios saved;
        bool raw;
};

#define NB_TERMINAL_INIT { .slave = -1, .master = -1, .relay = 0 }

/* A terminal on stdin and stdout, or an NB_ERROR_USAGE error saying so. */
int nb_terminal_check(struct nb_error *err);

/* Opens the pty and starts the relay (nb_terminal_check first). */
int nb_terminal_open(struct nb_terminal *t, struct nb_error *err);

/* After the sandbox has exited: closes the slave, lets the relay copy what is left,
 * waits for it, restores the user's terminal. Idempotent. */
void nb_terminal_close(struct nb_terminal *t);
