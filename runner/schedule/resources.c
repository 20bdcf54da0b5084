/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nestbox/cleanup.h"
#include "nestbox/text.h"
#include "schedule/resources.h"

/* This process's cgroup path in the hierarchy of controller ("" for v2's 0::), from
 * /proc/self/cgroup; NULL when it is in none. */
static char *own_cgroup(const char *controller) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        while (f && getline(&line, &cap, f) > 0) {
                char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;
                if (!path)
                        continue;
                *path++ = 0;
                path[strcspn(path, "\n")] = 0;
                ctl++;
                if (!*controller && !*ctl)
                        return strdup(path);
                /* v1 lists its controllers comma-separated ("cpu,cpuacct"). */
                for (char *save = NULL, *c = strtok_r(ctl, ",", &save); *controller && c; c = strtok_r(NULL, ",", &save))
                        if (strcmp(c, controller) == 0)
                                return strdup(path);
        }
        return NULL;
}

/* The first number of base/<own cgroup of controller>/file; -1 when there is none
 * ("max" included). */
static int64_t cgroup_number(const char *base, const char *controller, const char *file, int64_t *second) {
        _cleanup_free_ char *cg = own_cgroup(controller), *path = NULL;
        if (!cg || asprintf(&path, "%s%s/%s", base, cg, file) < 0)
                return -1;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        long long a = -1, b = -1;
        if (!f || fscanf(f, "%lld %lld", &a, &b) < 1)
                return -1;
        if (second)
                *second = b;
        return a;
}

unsigned nb_cpus_available(void) {
        cpu_set_t set;
        unsigned n = sched_getaffinity(0, sizeof(set), &set) == 0 ? (unsigned) CPU_COUNT(&set) : 1;
        /* cgroup v2 ("max 100000" reads as no quota), mounted alone or as "unified". */
        int64_t period = -1, quota = -1;
        for (const char *base = "/sys/fs/cgroup", *alt = "/sys/fs/cgroup/unified"; base; base = alt, alt = NULL)
                if ((quota = cgroup_number(base, "", "cpu.max", &period)) > 0)
                        break;
        if (quota <= 0) {
                quota = cgroup_number("/sys/fs/cgroup/cpu", "cpu", "cpu.cfs_quota_us", NULL);
                period = cgroup_number("/sys/fs/cgroup/cpu", "cpu", "cpu.cfs_period_us", NULL);
        }
        if (quota > 0 && period > 0) {
                unsigned q = (unsigned) ((quota + period - 1) / period);
                n = q < n ? q : n;
        }
        return n ? n : 1;
}

static uint64_t meminfo_available(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/meminfo", "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        unsigned long long kib;
        while (f && getline(&line, &cap, f) > 0)
                if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
                        return (uint64_t) kib * 1024;
        return 0;
}

uint64_t nb_mem_available(void) {
        const char *fake = getenv("NESTBOX_TEST_MEM_AVAILABLE");
        uint64_t v;
        if (fake && nb_parse_size(fake, &v) == 0)
                return v;
        uint64_t avail = meminfo_available();
        int64_t limit = -1, used = -1;
        for (const char *base = "/sys/fs/cgroup", *alt = "/sys/fs/cgroup/unified"; base && limit <= 0; base = alt, alt = NULL) {
                limit = cgroup_number(base, "", "memory.max", NULL);
                used = cgroup_number(base, "", "memory.current", NULL);
        }
        if (limit <= 0) {
                limit = cgroup_number("/sys/fs/cgroup/memory", "memory", "memory.limit_in_bytes", NULL);
                used = cgroup_number("/sys/fs/cgroup/memory", "memory", "memory.usage_in_bytes", NULL);
        }
        if (limit > 0 && used >= 0 && limit > used) {
                uint64_t left = (uint64_t) (limit - used);
                if (!avail || left < avail)
                        avail = left;
        }
        return avail;
}
