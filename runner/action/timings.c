/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "action/timings.h"

struct totals {
        uint64_t ns[NB_PHASE_COUNT];
        uint64_t count[NB_PHASE_COUNT];
        uint64_t files_remembered, files_read;
};

static struct totals own;
static struct totals *totals = &own;

/* With NESTBOX_TIMINGS set, the totals live in memory shared with every process forked
 * from this one (the -j pool runs each target in its own), added to atomically, so the
 * line the CLI prints covers them all. Without it, plain static memory. */
__attribute__((constructor)) static void share_totals(void) {
        const char *v = getenv("NESTBOX_TIMINGS");
        if (!v || !*v || strcmp(v, "0") == 0)
                return;
        void *m = mmap(NULL, sizeof(struct totals), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED)
                totals = m;
}

static const char *const names[NB_PHASE_COUNT] = {
        [NB_PHASE_DIGEST] = "digest",   [NB_PHASE_VENV_RESOLVE] = "venv-resolve",
        [NB_PHASE_LOOKUP] = "lookup",   [NB_PHASE_TREES] = "trees",
        [NB_PHASE_VENV] = "venv",       [NB_PHASE_SANDBOX] = "sandbox",
        [NB_PHASE_READ_BACK] = "read-back", [NB_PHASE_STORE] = "store",
};

uint64_t nb_timing_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

void nb_timing_add(enum nb_phase p, uint64_t start) {
        __atomic_fetch_add(&totals->ns[p], nb_timing_now() - start, __ATOMIC_RELAXED);
        __atomic_fetch_add(&totals->count[p], 1, __ATOMIC_RELAXED);
}

const char *nb_phase_name(enum nb_phase p) {
        return names[p];
}

uint64_t nb_phase_total_ns(enum nb_phase p, unsigned *count) {
        if (count)
                *count = (unsigned) __atomic_load_n(&totals->count[p], __ATOMIC_RELAXED);
        return __atomic_load_n(&totals->ns[p], __ATOMIC_RELAXED);
}

void nb_timing_files(uint64_t remembered, uint64_t read) {
        __atomic_fetch_add(&totals->files_remembered, remembered, __ATOMIC_RELAXED);
        __atomic_fetch_add(&totals->files_read, read, __ATOMIC_RELAXED);
}

void nb_timing_files_total(uint64_t *remembered, uint64_t *read) {
        *remembered = __atomic_load_n(&totals->files_remembered, __ATOMIC_RELAXED);
        *read = __atomic_load_n(&totals->files_read, __ATOMIC_RELAXED);
}
