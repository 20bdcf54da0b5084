/* SPDX-License-Identifier: MIT */
/* What this machine lets one nestbox use: CPUs (the default of -j) and free memory
 * (the budget the running items' memory limits share). Host files only: trusted. */
#pragma once

#include <stdint.h>

/* The CPUs of the affinity mask, fewer when the cgroup's CPU quota (v2 cpu.max, v1
 * cpu.cfs_quota_us / cpu.cfs_period_us) allows fewer, rounded up; at least 1. */
unsigned nb_cpus_available(void);

/* MemAvailable of /proc/meminfo, less when the cgroup's memory limit leaves less
 * (v2 memory.max - memory.current, v1 memory.limit_in_bytes - memory.usage_in_bytes).
 * NESTBOX_TEST_MEM_AVAILABLE (bytes, as 512M or 2G) replaces the machine's answer: for
 * the tests only, which cannot make a machine short of memory. 0 when unknown. */
uint64_t nb_mem_available(void);
