/* SPDX-License-Identifier: MIT */
/* pid 1 of the sandbox: starts the command, reaps every zombie (orphans are
 * re-parented to us), forwards the signals a supervisor sends, and exits with the
 * command's status. When we exit the kernel kills everything left in our pid
 * namespace, so nothing the test started outlives the sandbox. */
#include <errno.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "sandbox-internal.h"

#define TITLE "nestbox-init"

/* pid 1 is a clone of the supervisor, so /proc/1/cmdline (readable by the command
 * even though pid 1 is not dumpable) would show the host's command line: workspace
 * and cache paths, the invoker's flags. The kernel reads it from our own argument
 * area (arg_start..arg_end, fields 48 and 49 of /proc/self/stat), which we overwrite
 * with TITLE, ending the area on a non-NUL byte: the kernel then reads the title as
 * setproctitle(3) writes it, up to its NUL, and shows nothing of the rest. /proc/1/comm
 * gets the title too. Best effort: a failure leaves the old line, not the sandbox. */
/* Our argument area (arg_start..arg_end, fields 48 and 49 of /proc/self/stat), or
 * NULL. */
static char *arg_area(size_t *ret_len) {
        _cleanup_close_ int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *stat = NULL;
        if (fd < 0 || nb_read_fd(fd, 1 << 16, &stat, NULL) < 0)
                return NULL;
        char *p = strrchr(stat, ')'); /* comm may hold spaces and parentheses */
        unsigned long start = 0, end = 0;
        /* After ")": field 3 onwards; arg_start and arg_end are fields 48 and 49. */
        for (int field = 2; p && field < 49; field++) {
                p = strchr(p + 1, ' ');
                if (p && field + 1 == 48)
                        start = strtoul(p + 1, NULL, 10);
                if (p && field + 1 == 49)
                        end = strtoul(p + 1, NULL, 10);
        }
        if (!start || end <= start + 2)
                return NULL;
        *ret_len = end - start;
        return (char *) (uintptr_t) start;
}

void nb_init_set_title(void) {
        (void) prctl(PR_SET_NAME, TITLE, 0, 0, 0);
        size_t len;
        char *area = arg_area(&len);
        if (!area)
                return;
        size_t n = strlen(TITLE) < len - 2 ? strlen(TITLE) : len - 2;
        memset(area, 0, len);
        memcpy(area, TITLE, n);
        area[len - 1] = ' ';
}

void nb_init_set_cmdline(char *const *argv) {
        size_t len, at = 0;
        char *area = arg_area(&len);
        if (!area || !argv || !argv[0])
                return;
        const char *base = strrchr(argv[0], '/');
        (void) prctl(PR_SET_NAME, base ? base + 1 : argv[0], 0, 0, 0);
        memset(area, 0, len);
        for (char *const *a = argv; *a; a++) {
                size_t n = strlen(*a) + 1;
                if (at + n > len)
                        break; /* what does not fit is cut; the area ends in NUL */
                memcpy(area + at, *a, n);
                at += n;
        }
}

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGUSR1, SIGUSR2 };

extern char **environ;

static void noop_handler(int sig) {
        (void) sig;
}

void nb_child_report(int fd, const struct nb_error *err) {
        char *line = NULL;
        int n = asprintf(&line, "%d\t%s", err->code ? err->code : EIO, nb_error_message(err));
        if (n > 0)
                (void) nb_write_all(fd, line, (size_t) n);
        free(line);
}

__attribute__((noreturn)) static void exec_command(const struct nb_init_args *a) {
        const struct nb_sandbox_config *cfg = a->cfg;
        struct nb_error err = NB_ERROR_INIT;
        /* A new session: no controlling terminal of the host's to type into. */
        if (setsid() < 0) {
                nb_error_set(&err, errno, "setsid");
                goto fail;
        }
        /* Its own pty (controlling_tty): the session takes it, and with it the terminal's
         * foreground, so job control and SIGWINCH reach the shell. */
        if (cfg->controlling_tty && ioctl(STDIN_FILENO, TIOCSCTTY, 0) < 0) {
                nb_error_set(&err, errno, "TIOCSCTTY on the session's terminal");
                goto fail;
        }
        for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
                signal(forwarded[i], SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* rlimits bind the command and what it starts; pid 1 must stay able to reap. */
        if (nb_limits_apply_in_child(a->limits, &err) < 0)
                goto fail;
        const char *cwd = cfg->cwd ? cfg->cwd : "/";
        if (chdir(cwd) < 0) {
                nb_error_set(&err, errno, "--chdir %s", cwd);
                (void) nb_write_all(a->err_fd, "X", 1); /* the caller's argument, like exec */
                goto fail;
        }
        /* Only fds 0, 1 and 2 cross into the command (the error pipe closes on exec). */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
                nb_error_set(&err, errno, "close_range");
                goto fail;
        }
        static char *empty_env[] = { NULL };
        environ = cfg->env ? cfg->env : empty_env;
        execvp(cfg->argv[0], cfg->argv);
        nb_error_set(&err, errno, "execvp %s", cfg->argv[0]);
        /* 'X' marks an exec failure, a problem of the command rather than the sandbox. */
        (void) nb_write_all(a->err_fd, "X", 1);
fail:
        nb_child_report(a->err_fd, &err);
        _exit(127);
}

static void add_usage(struct rusage *to, const struct rusage *ru) {
        timeradd(&to->ru_utime, &ru->ru_utime, &to->ru_utime);
        timeradd(&to->ru_stime, &ru->ru_stime, &to->ru_stime);
        if (ru->ru_maxrss > to->ru_maxrss)
                to->ru_maxrss = ru->ru_maxrss;
}

/* The command is done. What is left of the namespace is reaped now; when nothing is
 * (ECHILD: every process in a pid namespace is pid 1's descendant, and orphans are
 * ours), nothing the test started is alive and the supervisor need not wait for our
 * own exit, in which the kernel tears down the mount namespace (sandbox.c). Our stdio
 * (the capture pipe) and the error pipe close first, so that their readers see EOF
 * without waiting for that teardown either. */
__attribute__((noreturn)) static void report_and_exit(const struct nb_init_args *a, int status) {
        pid_t p;
        while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
                ;
        struct nb_init_report rep = { .status = status, .empty = p < 0 && errno == ECHILD };
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
                add_usage(&rep.usage, &ru);
        if (getrusage(RUSAGE_CHILDREN, &ru) == 0)
                add_usage(&rep.usage, &ru);
        (void) close_range(0, 2, 0);
        (void) close(a->err_fd);
        (void) nb_write_all(a->status_fd, &rep, sizeof(rep));
        if (WIFEXITED(status))
                _exit(WEXITSTATUS(status));
        _exit(128 + WTERMSIG(status));
}

void nb_init_main(const struct nb_init_args *a) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        /* pid 1 only receives signals it has a handler for, even from the supervisor. */
        struct sigaction sa = { .sa_handler = noop_handler };
        for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
                sigaddset(&set, forwarded[i]);
                sigaction(forwarded[i], &sa, NULL);
        }
        sigaction(SIGCHLD, &sa, NULL);
        sigprocmask(SIG_BLOCK, &set, NULL);

        pid_t cmd = fork();
        if (cmd < 0) {
                struct nb_error err = NB_ERROR_INIT;
                nb_error_set(&err, errno, "fork");
                nb_child_report(a->err_fd, &err);
                _exit(125);
        }
        if (cmd == 0)
                exec_command(a);

        for (;;) {
                siginfo_t si;
                int sig = sigwaitinfo(&set, &si);
                if (sig < 0)
                        continue;
                if (sig != SIGCHLD) {
                        kill(cmd, sig);
                        continue;
                }
                int status;
                pid_t p;
                while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
                        /* A stop is reported only to a tracer: a process that called
                         * PTRACE_TRACEME (--allow-syscall ptrace) with us as its parent.
                         * It is not an exit; let go of it, handing the signal back. */
                        if (WIFSTOPPED(status)) {
                                if (ptrace(PTRACE_DETACH, p, 0, (void *) (long) WSTOPSIG(status)) < 0)
                                        kill(p, SIGKILL);
                                continue;
                        }
                        if (p != cmd)
                                continue;
                        report_and_exit(a, status);
                }
        }
}
