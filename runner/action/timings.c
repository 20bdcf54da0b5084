/* SPDX-License-Identifier: MIT */
#include <time.h>

#include "action/timings.h"

static uint64_t total_ns[NB_PHASE_COUNT];
static unsigned counts[NB_PHASE_COUNT];
static uint64_t files_remembered, files_read;

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
        total_ns[p] += nb_timing_now() - start;
        counts[p]++;
}

const char *nb_phase_name(enum nb_phase p) {
        return names[p];
}

uint64_t nb_phase_total_ns(enum nb_phase p, unsigned *count) {
        if (count)
                *count = counts[p];
        return total_ns[p];
}

void nb_timing_files(uint64_t remembered, uint64_t read) {
        files_remembered += remembered;
        files_read += read;
}

void nb_timing_files_total(uint64_t *remembered, uint64_t *read) {
        *remembered = files_remembered;
        *read = files_read;
}
