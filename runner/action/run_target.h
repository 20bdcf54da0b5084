/* SPDX-License-Identifier: MIT */
/* One run of one target (an action): declared inputs + locked venv + pytest in the
 * sandbox -> a JUnit report, the log and the sandbox's result. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cache/cache_dir.h"
#include "cache/digest.h"
#include "junit/junit.h"
#include "nestbox/sandbox.h"
#include "workspace/tree.h"
#include "workspace/workspace.h"

enum nb_target_status {
        NB_TARGET_PASSED,
        NB_TARGET_FAILED,  /* tests failed, or pytest could not run them */
        NB_TARGET_TIMEOUT, /* the target's timeout fired */
};

struct nb_run_options {
        uint64_t seed;
        bool seed_set;       /* else derived from the target's name: stable across runs */
        unsigned shard_index; /* 0-based */
        unsigned shard_count; /* 0 or 1: no sharding */
        bool coverage;        /* on for every target (else the target's setting) */
        bool verbose;
};

/* /out is a tmpfs of NB_OUT_SIZE that the host reads through out_fd after the run
 * (the test cannot fill the host's disk through it); /tmp is a tmpfs of NB_TMP_SIZE.
 * The log goes to <cache>/tmp/run.XXXXXX/log. */
#define NB_OUT_SIZE (1ull << 30)
#define NB_TMP_SIZE (1ull << 30)

struct nb_target_run {
        enum nb_target_status status;
        struct nb_junit_report *report; /* never NULL after success: synthesized if need be */
        struct nb_sandbox_result sandbox;
        char tree_digest[NB_DIGEST_HEX_LEN + 1];
        char venv_digest[NB_DIGEST_HEX_LEN + 1];
        uint64_t seed;
        char *log;          /* stdout+stderr of pytest, capped: head and tail kept */
        size_t log_len;
        char *why;          /* when the report was synthesized: the reason, one line */
        char *run_dir;      /* relative to the cache root; removed by nb_target_run_done */
        int out_fd;         /* /out as the test left it (O_DIRECTORY), -1 when none */
        struct nb_cache_dir *cache;
};

/* Runs target t of workspace ws on its collected tree (see nb_action_prepare) with the
 * given seed. Returns 0 with *ret filled whenever pytest could be started (whatever the
 * tests did), -errno with err when an input is bad (-EINVAL, -ENOENT, -EBADMSG: exit 2)
 * or the sandbox could not be built (others: exit 3). */
int nb_run_target(const struct nb_workspace *ws, const struct nb_target *t, const struct nb_tree *tree,
                  uint64_t seed, struct nb_cache_dir *cache, const struct nb_run_options *o,
                  struct nb_target_run *ret, struct nb_error *err);

void nb_target_run_done(struct nb_target_run *r);

const char *nb_target_status_name(enum nb_target_status s);
