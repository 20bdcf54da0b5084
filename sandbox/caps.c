/* SPDX-License-Identifier: MIT */
/* Capabilities: the sandbox's processes hold full capabilities inside their own user
 * namespace until this runs. Every set is emptied (bounding first, because clearing
 * it needs CAP_SETPCAP, which the later steps remove) and no_new_privs keeps execve
 * of a setuid or file-capability binary from ever giving any back. */
#include <errno.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "sandbox-internal.h"

static void cap_freep(cap_t *c) {
        if (*c)
                cap_free(*c);
}

int nb_caps_drop_all(struct nb_error *err) {
        for (cap_value_t c = 0; c <= CAP_LAST_CAP || cap_valid(c); c++) {
                if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
                        if (errno == EINVAL)
                                break; /* past the kernel's last capability */
                        return nb_error_set(err, errno, "dropping capability %d from the bounding set", (int) c);
                }
        }
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return nb_error_set(err, errno, "clearing ambient capabilities");
        __attribute__((cleanup(cap_freep))) cap_t none = cap_init();
        if (!none)
                return nb_error_set(err, errno, "cap_init");
        if (cap_set_proc(none) < 0)
                return nb_error_set(err, errno, "dropping capabilities");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return nb_error_set(err, errno, "setting no_new_privs");
        return 0;
}
