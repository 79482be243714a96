/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Linux privcmd ioctl ABI xenprobe uses (include/uapi/xen/privcmd.h).
 * Declared here because the uapi header includes Xen headers Debian does not ship.
 */
#ifndef XENPROBE_PRIVCMD_ABI_H
#define XENPROBE_PRIVCMD_ABI_H

#include <stdint.h>
#include <sys/ioctl.h>

struct privcmd_hypercall {
    uint64_t op;
    uint64_t arg[5];
};

/* _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall)) = 0x00305000 on x86-64 */
#define IOCTL_PRIVCMD_HYPERCALL _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))

_Static_assert(sizeof(struct privcmd_hypercall) == 48, "privcmd_hypercall is 48 bytes");
_Static_assert(IOCTL_PRIVCMD_HYPERCALL == 0x00305000, "IOCTL_PRIVCMD_HYPERCALL");

#endif
