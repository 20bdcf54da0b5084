/* SPDX-License-Identifier: MIT */
/* nestbox-runner: the commands that need the whole runner (workspaces, venvs, JUnit,
 * artifacts, the cache). nestbox execs it for them; it can be run directly too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action/timings.h"
#include "cli/cli.h"
#include "nestbox/sandbox.h"

static const struct nb_command commands[] = {
        { "sandbox", cmd_sandbox },
        { "doctor", cmd_doctor },
        { "venv", cmd_venv },
        { "test", cmd_test },
        { "cache", cmd_cache },
        { "actions", cmd_actions },
        { "run", cmd_run },
        { "worker", cmd_worker },
        { "list", cmd_list },
        { "repro", cmd_repro },
        { "bundle", cmd_bundle },
        { "merge", cmd_merge },
};

/* NESTBOX_TIMINGS=1: one line on stderr, the time of each phase summed over every
 * action, forked ones included (README "Performance"); "other" is the rest of the
 * verb's own time. */
static void print_timings(uint64_t start) {
        const char *v = getenv("NESTBOX_TIMINGS");
        if (!v || !*v || strcmp(v, "0") == 0)
                return;
        uint64_t total = nb_timing_now() - start, phases = 0;
        fflush(stdout); /* after what the verb printed */
        fputs("nestbox: timings:", stderr);
        for (int p = 0; p < NB_PHASE_COUNT; p++) {
                unsigned n = 0;
                uint64_t ns = nb_phase_total_ns(p, &n);
                phases += ns;
                fprintf(stderr, " %s %.3f ms (%u),", nb_phase_name(p), (double) ns / 1e6, n);
        }
        uint64_t remembered, read;
        nb_timing_files_total(&remembered, &read);
        /* With -j N the phases of targets running at once add up past the wall time. */
        uint64_t other = total > phases ? total - phases : 0;
        fprintf(stderr, " other %.3f ms; total %.3f ms; declared files: %llu remembered, %llu read\n",
                (double) other / 1e6, (double) total / 1e6, (unsigned long long) remembered,
                (unsigned long long) read);
}

int main(int argc, char **argv) {
        if (argc < 2)
                return nb_die(NB_EXIT_USAGE, "nestbox-runner is run by nestbox; see 'nestbox --help'");
        uint64_t start = nb_timing_now();
        /* Before any item process is forked: they share this process's delegated
         * cgroup v2 subtree only once it has moved into the subtree's leaf. doctor
         * reports and changes nothing. A failure comes back from the first sandbox. */
        if (strcmp(argv[1], "doctor") != 0) {
                struct nb_error err = NB_ERROR_INIT;
                (void) nb_limits_enter_delegated(&err);
                nb_error_clear(&err);
        }
        int r = nb_dispatch(commands, sizeof(commands) / sizeof(commands[0]), argc, argv);
        print_timings(start);
        if (r >= 0)
                return r;
        return nb_die(NB_EXIT_USAGE, "'%s' is not a nestbox command; see 'nestbox --help'", argv[1]);
}
