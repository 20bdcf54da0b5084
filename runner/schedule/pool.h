/* SPDX-License-Identifier: MIT */
/* -j N: work items run in parallel, each in a process of its own (pool.c says why). */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nestbox/error.h"
#include "schedule/item.h"

/* A message from an item's process to the pool's: a type and bytes. */
struct nb_frame {
        char type;
        const char *data;
        size_t len;
};

/* Writes one frame to fd (an item's process uses the fd its run callback got). */
int nb_frame_send(int fd, char type, const void *data, size_t len);

struct nb_pool_ops {
        /* The pool's process, before an item starts: 0 to start it, < 0 to count it as
         * done (its problem is the callback's to report). */
        int (*starting)(struct nb_work_item *it, void *userdata);
        /* The item's own process: runs it, sending frames to fd; returns the exit
         * status of that process. */
        int (*run)(struct nb_work_item *it, int fd, void *userdata);
        /* The pool's process: a frame from the item, in the order sent. */
        void (*frame)(struct nb_work_item *it, const struct nb_frame *f, void *userdata);
        /* The pool's process: the item's process ended (wait status), after its last frame. */
        void (*ended)(struct nb_work_item *it, int wstatus, void *userdata);
        /* The pool's process: it is held back because running it now would put the
         * running items' memory limits over the budget. Once per item at most. */
        void (*throttled)(const struct nb_work_item *it, uint64_t running, uint64_t budget, void *userdata);
        /* The pool's process, every tick_ms while items run (a live display). */
        void (*tick)(void *userdata);
};

struct nb_pool_config {
        unsigned jobs;          /* at most this many at once; >= 1 */
        uint64_t memory_budget; /* the running items' memory limits sum at most to this; 0: no budget */
        unsigned tick_ms;       /* 0: no ticks */
        /* Set by the first SIGINT/SIGTERM (the cell nb_cache_modes.cancel points to):
         * each running item's process gets the signal, nothing new starts. */
        volatile sig_atomic_t *cancel;
};

/* Runs items in their order. *ret_started counts those started (or refused by
 * starting), so items + *ret_started are the ones never started. -errno with err when
 * the pool itself fails (no fork, no pipe); running items are killed then. */
int nb_pool_run(struct nb_work_item *items, size_t n, const struct nb_pool_config *cfg, const struct nb_pool_ops *ops,
                void *userdata, size_t *ret_started, struct nb_error *err);
