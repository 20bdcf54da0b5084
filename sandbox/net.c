/* SPDX-License-Identifier: MIT */
/* The sandbox has its own network namespace: no interface but lo, so nothing on the
 * host (not even its 127.0.0.1) can be reached. lo is brought up unless the caller
 * asked for no network at all. */
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "nestbox/cleanup.h"
#include "sandbox-internal.h"

int nb_net_setup(const struct nb_sandbox_config *cfg, struct nb_error *err) {
        if (cfg->network == NB_NET_NONE)
                return 0;
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return nb_error_set(err, errno, "loopback: socket");
        struct ifreq ifr = { 0 };
        strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return nb_error_set(err, errno, "loopback: SIOCGIFFLAGS");
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return nb_error_set(err, errno, "loopback: bringing lo up");
        return 0;
}
