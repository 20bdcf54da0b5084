/* SPDX-License-Identifier: MIT */
/* nestbox: the front door. sandbox and doctor run here, in a binary that links only
 * the sandbox library, so starting a sandbox does not pay for loading libxml2, ICU,
 * libarchive and libcrypto. The other commands live in nestbox-runner beside it,
 * which this execs (git's libexec helpers in spirit). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "nestbox/cleanup.h"
#include "nestbox/sandbox.h"

static const char main_usage[] =
        "usage: nestbox [--version] [--help] <command> [<args>]\n"
        "\n"
        "Hermetic, sandboxed test runs for Python monorepos.\n"
        "\n"
        "commands:\n"
        "  sandbox   run any command in the nestbox sandbox (like bwrap)\n"
        "  doctor    what this kernel offers and what isolation a run will get\n"
        "  venv      install a lockfile's wheels into a cached, read-only virtualenv\n"
        "  test      run a workspace's test targets, each in its own sandbox\n"
        "  list      print a workspace's targets\n"
        "  merge     combine the junit.xml and coverage of shards, machines and runs\n"
        "  cache     cache stats, gc by least recent use, verify (and repair)\n"
        "  actions   print a workspace's targets as actions (JSON Lines) for build tools\n"
        "  run       run one action file and print its result as JSON\n"
        "  worker    serve actions over Bazel's JSON persistent worker protocol\n"
        "  repro     re-run a recorded action exactly, or open a shell in its sandbox\n"
        "  bundle    one recorded action in one file, to reproduce it on another machine\n"
        "\n"
        "`nestbox help <command>` (or `nestbox <command> --help`) prints its manual.\n"
        "Exit codes: 0 passed, 1 tests failed, 2 usage or input error,\n"
        "3 sandbox or infrastructure error, 4 timeout; 130 and 143 interrupted (SIGINT,\n"
        "SIGTERM).\n";

static const struct nb_command commands[] = {
        { "sandbox", cmd_sandbox },
        { "doctor", cmd_doctor },
};

static const char *const runner_commands[] = { "venv", "test", "cache", "actions", "run", "worker", "list",
                                               "repro", "bundle", "merge" };

/* Execs nestbox-runner from the directory this binary is in, with the same argv. */
static int exec_runner(char **argv) {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n < 0)
                return nb_die(NB_EXIT_INFRA, "/proc/self/exe: %s", strerror(errno));
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (!slash || (size_t) (slash - self) + sizeof("/nestbox-runner") > sizeof(self))
                return nb_die(NB_EXIT_INFRA, "%s: cannot locate nestbox-runner", self);
        strcpy(slash, "/nestbox-runner");
        execv(self, argv);
        return nb_die(NB_EXIT_INFRA, "%s: %s", self, strerror(errno));
}

/* NESTBOX_CGROUP=systemd-scope: this command again, inside a delegated scope of the
 * user's systemd manager, when it is in no delegated cgroup (README "Limits"). */
static int exec_in_scope(char **argv) {
        _cleanup_strv_free_ char **cmd = NULL;
        _cleanup_free_ char *why = NULL;
        int r = nb_limits_scope_command(argv, &cmd, &why);
        if (r == -EINVAL)
                return nb_die(NB_EXIT_USAGE, "%s", why ? why : "NESTBOX_CGROUP: bad value");
        if (r < 0) {
                fprintf(stderr, "nestbox: warning: NESTBOX_CGROUP=systemd-scope: %s; memory is limited per process only\n",
                        why ? why : strerror(-r));
                return 0;
        }
        if (!cmd)
                return 0;
        execvp(cmd[0], cmd);
        fprintf(stderr, "nestbox: warning: NESTBOX_CGROUP=systemd-scope: %s: %s; memory is limited per process only\n",
                cmd[0], strerror(errno));
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2)
                return nb_usage(stderr, main_usage, NB_EXIT_USAGE);
        /* git's habit: `nestbox help test` is `nestbox test --help`. */
        char *help_argv[] = { argv[0], argc > 2 ? argv[2] : NULL, (char *) "--help", NULL };
        if (strcmp(argv[1], "help") == 0 && argc > 2) {
                if (argc > 3)
                        return nb_die(NB_EXIT_USAGE, "help takes one command; see 'nestbox --help'");
                argv = help_argv;
                argc = 3;
        }
        const char *verb = argv[1];
        if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0)
                return nb_usage(stdout, main_usage, 0);
        if (strcmp(verb, "--version") == 0) {
                printf("nestbox %s\n", NESTBOX_VERSION);
                return 0;
        }
        int r = exec_in_scope(argv);
        if (r > 0)
                return r;
        r = nb_dispatch(commands, sizeof(commands) / sizeof(commands[0]), argc, argv);
        if (r >= 0)
                return r;
        for (size_t i = 0; i < sizeof(runner_commands) / sizeof(runner_commands[0]); i++)
                if (strcmp(verb, runner_commands[i]) == 0)
                        return exec_runner(argv);
        return nb_die(NB_EXIT_USAGE, "'%s' is not a nestbox command; see 'nestbox --help'", verb);
}
