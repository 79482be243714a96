/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The load for the watch's reader-throughput benchmark (tests/bench/watch.py): one
 * process issuing IOCTL_PRIVCMD_HYPERCALL XENMEM_maximum_gpfn (memory_op 14, the
 * domid behind arg[1]) in a loop, on the mock host (LD_PRELOAD), whose privcmd emits
 * the kernel's two trace lines a call (native/mock/tracing.c).
 *
 * Usage: privcmd_loop SECONDS RATE DOMID
 * RATE: calls a second to pace at (checked every 64 calls against CLOCK_MONOTONIC),
 * 0 for as fast as the mock allows. Prints one JSON line: calls, seconds, errors.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* include/uapi/xen/privcmd.h: struct privcmd_hypercall, IOCTL_PRIVCMD_HYPERCALL. */
struct privcmd_hypercall {
	uint64_t op, arg[5];
};
#define IOCTL_PRIVCMD_HYPERCALL 0x00305000UL
#define HYPERVISOR_memory_op 12
#define XENMEM_maximum_gpfn 14

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s SECONDS RATE DOMID\n", argv[0]);
		return 2;
	}
	double seconds = atof(argv[1]), rate = atof(argv[2]);
	uint16_t domid = (uint16_t)atoi(argv[3]);
	struct privcmd_hypercall hc = { HYPERVISOR_memory_op,
		{ XENMEM_maximum_gpfn, (uint64_t)(uintptr_t)&domid, 0, 0, 0 } };
	int fd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
	long calls = 0, errors = 0;
	double t0 = now(), t = t0;

	if (fd < 0) {
		perror("/dev/xen/privcmd");
		return 1;
	}
	while (t - t0 < seconds) {
		for (int i = 0; i < 64; i++, calls++)
			if (ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &hc) < 0)
				errors++;
		t = now();
		if (rate > 0) {
			double due = t0 + calls / rate;

			while (t < due) {
				struct timespec d = { 0, (long)((due - t) * 1e9) };

				nanosleep(&d, NULL);
				t = now();
			}
		}
	}
	printf("{\"calls\": %ld, \"seconds\": %.6f, \"errors\": %ld}\n", calls, t - t0, errors);
	return 0;
}
