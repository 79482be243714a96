/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A consumer linked against Debian's real libxenctrl (test harness only; root in the
 * QEMU dom0): xc_domain_maximum_gpfn() of each domain named, one JSON object a line.
 * Built twice on the host (watch_boot.build_callers), once against bullseye's
 * libxenctrl.so.4.14, whose memory ops go through the int ioctl, once against
 * bookworm's libxenctrl.so.4.17, which issues them as a one-entry multicall and reads
 * the 64-bit result from the entry (the path changed in 4.15.1).
 *
 *   libxc_caller DOMID...
 *
 * Prototypes as tools/include/xenctrl.h declares them at RELEASE-4.14.6 and
 * RELEASE-4.17.0 (xc_interface_open, xc_domain_maximum_gpfn with its xen_pfn_t out
 * pointer, xc_interface_close); no Xen development package is needed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct xc_interface_core xc_interface;
typedef uint64_t xen_pfn_t;

xc_interface *xc_interface_open(void *logger, void *dombuild_logger, unsigned open_flags);
int xc_interface_close(xc_interface *xch);
int xc_domain_maximum_gpfn(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns);

int main(int argc, char **argv)
{
	xc_interface *xch = xc_interface_open(NULL, NULL, 0);
	int i;

	if (!xch)
		return perror("xc_interface_open"), 1;
	for (i = 1; i < argc; i++) {
		xen_pfn_t gpfn = 0;
		uint32_t domid = (uint32_t)atoi(argv[i]);

		errno = 0;
		int rc = xc_domain_maximum_gpfn(xch, domid, &gpfn);

		printf("{\"what\": \"libxc\", \"pid\": %d, \"domid\": %u, \"rc\": %d, "
		       "\"errno\": %d, \"gpfn\": %llu}\n",
		       getpid(), domid, rc, rc < 0 ? errno : 0, (unsigned long long)gpfn);
	}
	xc_interface_close(xch);
	return 0;
}
