/* SPDX-License-Identifier: MIT */
/* Where a run's time goes, by phase, summed over every action of the process and of
 * the processes it forks: the library records, the CLI prints (NESTBOX_TIMINGS=1,
 * README "Performance"). */
#pragma once

#include <stdint.h>

enum nb_phase {
        NB_PHASE_DIGEST,       /* globs expanded, files hashed (or remembered), the tree digest */
        NB_PHASE_VENV_RESOLVE, /* interpreter, lockfile, wheels chosen and hashed: the venv's digest */
        NB_PHASE_LOOKUP,       /* the result cache asked */
        NB_PHASE_TREES,        /* the input tree and nestbox's plugin materialised (or found) */
        NB_PHASE_VENV,         /* the venv materialised (or found), inputs held */
        NB_PHASE_SANDBOX,      /* the sandbox built, pytest run, the sandbox torn down */
        NB_PHASE_READ_BACK,    /* /out read back, JUnit parsed, the result built */
        NB_PHASE_STORE,        /* the artifact packed and stored */
        NB_PHASE_COUNT
};

/* CLOCK_MONOTONIC in ns: a phase's start. */
uint64_t nb_timing_now(void);
/* Adds now - start to phase p. */
void nb_timing_add(enum nb_phase p, uint64_t start);

/* Declared files digested: remembered (the digest memo knew them) or read. */
void nb_timing_files(uint64_t remembered, uint64_t read);
void nb_timing_files_total(uint64_t *remembered, uint64_t *read);

const char *nb_phase_name(enum nb_phase p);
/* The phase's total and how many times it ran. */
uint64_t nb_phase_total_ns(enum nb_phase p, unsigned *count);
