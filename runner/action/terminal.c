/* SPDX-License-Identifier: MIT */
/* The pty relay of an interactive sandbox (terminal.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "action/terminal.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"

static volatile sig_atomic_t resized;

static void on_winch(int sig) {
        (void) sig;
        resized = 1;
}

static void copy_size(int from, int to) {
        struct winsize ws;
        if (ioctl(from, TIOCGWINSZ, &ws) == 0)
                (void) ioctl(to, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH to its foreground */
}

/* Moves what is readable from in to out; false at end of input (EOF, or EIO: a
 * master whose slaves are all closed). */
static bool pump(int in, int out) {
        char buf[4096];
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return true;
        if (n <= 0)
                return false;
        return nb_write_all(out, buf, (size_t) n) == 0;
}

/* The relay: user's terminal -> master, master -> user's terminal, until the master
 * reports that every slave is closed (the sandbox has exited and nestbox closed its
 * own). It dies with nestbox. */
__attribute__((noreturn)) static void relay(int master) {
        (void) prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
        struct sigaction sa = { .sa_handler = on_winch };
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGWINCH, &sa, NULL);
        bool input = true;
        for (;;) {
                if (resized) {
                        resized = 0;
                        copy_size(STDIN_FILENO, master);
                }
                struct pollfd p[2] = { { .fd = master, .events = POLLIN },
                                       { .fd = input ? STDIN_FILENO : -1, .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(1);
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
                        if (!pump(master, STDOUT_FILENO))
                                _exit(0);
                if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
                        input = pump(STDIN_FILENO, master);
        }
}

int nb_terminal_check(struct nb_error *err) {
        if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
                return nb_error_classify(err, NB_ERROR_USAGE,
                                         nb_error_setx(err, ENOTTY, "--shell and --python need a terminal on stdin "
                                                       "and stdout"));
        return 0;
}

int nb_terminal_open(struct nb_terminal *t, struct nb_error *err) {
        *t = (struct nb_terminal) NB_TERMINAL_INIT;
        int r = nb_terminal_check(err);
        if (r < 0)
                return r;
        t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (t->master < 0 || grantpt(t->master) < 0 || unlockpt(t->master) < 0)
                return nb_error_set(err, errno, "a pseudo-terminal");
        /* The peer by descriptor, not by its /dev/pts name, which could be swapped. */
        t->slave = ioctl(t->master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (t->slave < 0)
                return nb_error_set(err, errno, "the pseudo-terminal's peer");
        if (tcgetattr(STDIN_FILENO, &t->saved) < 0)
                return nb_error_set(err, errno, "the terminal's settings");
        /* The shell starts with the user's settings (erase key, utf-8) and size. */
        (void) tcsetattr(t->slave, TCSANOW, &t->saved);
        copy_size(STDIN_FILENO, t->slave);
        struct termios raw = t->saved;
        cfmakeraw(&raw);
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0)
                return nb_error_set(err, errno, "the terminal's raw mode");
        t->raw = true;
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                nb_terminal_close(t);
                return nb_error_set(err, e, "the terminal relay");
        }
        if (pid == 0) {
                close(t->slave);
                relay(t->master);
        }
        t->relay = pid;
        return 0;
}

void nb_terminal_close(struct nb_terminal *t) {
        nb_closep(&t->slave);
        t->slave = -1;
        if (t->relay > 0) {
                while (waitpid(t->relay, NULL, 0) < 0 && errno == EINTR)
                        ;
                t->relay = 0;
        }
        nb_closep(&t->master);
        t->master = -1;
        if (t->raw) {
                (void) tcsetattr(STDIN_FILENO, TCSADRAIN, &t->saved);
                t->raw = false;
        }
}
