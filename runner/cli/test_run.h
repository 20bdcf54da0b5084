/* SPDX-License-Identifier: MIT */
/* One `nestbox test` invocation as the pool sees it (cli/cmd_test.c makes its items
 * and runs the pool): what each finished item prints, writes to --output and adds to
 * the summary, the events and the combined report. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "action/execute.h"
#include "cache/digest.h"
#include "cli/events.h"
#include "cli/flake_table.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/summary.h"
#include "cli/test_warm.h"
#include "coverage/lcov.h"
#include "schedule/item_result.h"
#include "schedule/item_run.h"
#include "schedule/pool.h"
#include "workspace/workspace.h"

/* One invocation: what the pool's callbacks share. Only this process prints, writes
 * --output and keeps the summary; the items' processes send it frames. */
struct nb_test_run {
        struct nb_store store;
        const struct nb_cache_modes *modes;
        int out_dir;
        const char *out_arg;
        bool verbose;
        struct nb_item_reports combined; /* for --output DIR/junit.xml */
        struct nb_summary summary;
        struct nb_coverage_sum coverage;
        struct nb_events events;
        struct nb_progress *progress;
        struct nb_work_item *items;
        struct nb_item_outcome *outcomes; /* one per item */
        size_t n;
        int status;
        const struct nb_target **not_run; /* started but gave nothing when cancelled */
        size_t n_not_run;
        bool throttle_said;
        bool remote_off; /* an item's remote cache faulted */
        const struct nb_action_options *options;
        bool flakes_wanted;            /* several runs: print the flake table */
        struct nb_flake_table flakes;
        char failed_action[NB_DIGEST_HEX_LEN + 1];
        unsigned failed_run;
        uint64_t failed_seed;
        struct nb_remote_stats remote; /* the items' remote counters */
        struct nb_warm_tally warm;     /* for -v: which targets ran warm */
        const struct nb_workspace *ws; /* whose other targets' --output folders are spared */
        bool *cleared;                 /* per item: its --output folder was cleared */
        const volatile sig_atomic_t *cancelled; /* the signal that cancels the run; 0: none yet */
};

/* Frees what the run holds: every item's action and outcome, the reports, the
 * progress block; closes the events. */
void nb_test_run_done(struct nb_test_run *tr);

/* The pool's callbacks; userdata is the struct nb_test_run. */
extern const struct nb_pool_ops nb_test_run_pool_ops;

/* Clears the --output folders of the items that never started (cancelled,
 * --until-failure stopped early): they may hold an earlier invocation's files, which
 * must not pass for this one's. */
void nb_test_run_clear_never_started(struct nb_test_run *tr);
