/* SPDX-License-Identifier: MIT */
/* The rlimit backend, where no cgroup can be used: RLIMIT_AS for memory (address
 * space, a rougher measure than a cgroup's) and RLIMIT_NPROC for pids (counted per
 * user, which inside the sandbox is the sandbox's own uid). Set in the command's
 * process, not in pid 1, which must stay able to fork and reap. Nothing to prepare,
 * attach, read or remove. */
#include <errno.h>
#include <sys/resource.h>

#include "limits-internal.h"

static bool rlimit_available(enum nb_limit_res res) {
        (void) res;
        return true;
}

static int rlimit_apply(const struct nb_limits *l, unsigned mask, struct nb_error *err) {
        static const struct {
                int resource;
                const char *name;
        } rl[NB_RES__MAX] = {
                [NB_RES_MEMORY] = { RLIMIT_AS, "RLIMIT_AS" },
                [NB_RES_PIDS] = { RLIMIT_NPROC, "RLIMIT_NPROC" },
        };
        for (int res = 0; res < NB_RES__MAX; res++) {
                if (!(mask & NB_RES_BIT(res)))
                        continue;
                struct rlimit v = { l->value[res], l->value[res] };
                if (setrlimit(rl[res].resource, &v) < 0)
                        return nb_error_set(err, errno, "%s", rl[res].name);
        }
        return 0;
}

const struct nb_limits_ops nb_limits_rlimit_ops = {
        .backend = NB_LIMIT_RLIMIT,
        .available = rlimit_available,
        .apply = rlimit_apply,
};
