/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A consumer of /dev/xen/privcmd for the real-Xen watch proof (test harness only; it
 * runs as root in the QEMU dom0).  It issues IOCTL_PRIVCMD_HYPERCALL itself, the way a
 * toolstack library of the int path does, and prints what each call delivered, as
 * the kernel returned it (the raw syscall's return value, before glibc turns
 * -4095..-1 into -1/errno), one JSON object a line on stdout.
 *
 *   privcmd_caller gpfn DOMID...            XENMEM_maximum_gpfn of each domain
 *   privcmd_caller debugreg REG...          get_debugreg(REG) of the calling vCPU
 *   privcmd_caller version COUNT            xen_version(XENVER_version) COUNT times
 *   privcmd_caller loop COUNT               the same, timed: one JSON line with ns/call
 *   privcmd_caller burst PROCS THREADS COUNT DOMID...
 *                                           PROCS processes of THREADS threads, thread
 *                                           k of process p asking COUNT times for the
 *                                           maximum_gpfn of DOMID[(p*THREADS+k) % n];
 *                                           prints per-thread tid, domid, calls and
 *                                           the delivered value
 *
 * ABI (include/uapi/xen/privcmd.h): struct privcmd_hypercall { __u64 op, arg[5]; },
 * IOCTL_PRIVCMD_HYPERCALL = _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))
 * = 0x305000.  Hypercall numbers and sub-ops from xen/include/public/xen.h,
 * memory.h and version.h (RELEASE-4.17.0): __HYPERVISOR_get_debugreg 9,
 * __HYPERVISOR_memory_op 12, __HYPERVISOR_xen_version 17, XENMEM_maximum_gpfn 14
 * (its argument: a pointer to the domid_t), XENVER_version 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IOCTL_PRIVCMD_HYPERCALL 0x305000UL
#define HYPERVISOR_get_debugreg 9
#define HYPERVISOR_memory_op 12
#define HYPERVISOR_xen_version 17
#define XENMEM_maximum_gpfn 14
#define XENVER_version 0

struct privcmd_hypercall {
	uint64_t op;
	uint64_t arg[5];
};

static int privcmd = -1;

/* The ioctl system call itself: its return value as the kernel gave it. */
static long raw_ioctl(int fd, unsigned long cmd, void *arg)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"((long)SYS_ioctl), "D"((long)fd), "S"(cmd), "d"(arg)
			 : "rcx", "r11", "memory");
	return ret;
}

static long hypercall(uint64_t op, uint64_t a0, uint64_t a1)
{
	struct privcmd_hypercall call = { .op = op, .arg = { a0, a1 } };

	return raw_ioctl(privcmd, IOCTL_PRIVCMD_HYPERCALL, &call);
}

/* Xen copies the domid from the caller's memory: keep it resident. */
static long maximum_gpfn(uint16_t *domid)
{
	return hypercall(HYPERVISOR_memory_op, XENMEM_maximum_gpfn, (uint64_t)(uintptr_t)domid);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

struct burst {
	uint16_t domid;
	long count;
	long delivered;
	long mismatches; /* calls whose value differed from the thread's first */
	pid_t tid;
};

static void *burst_thread(void *p)
{
	struct burst *b = p;
	long i, r;

	b->tid = (pid_t)syscall(SYS_gettid);
	b->delivered = maximum_gpfn(&b->domid);
	for (i = 1; i < b->count; i++) {
		r = maximum_gpfn(&b->domid);
		if (r != b->delivered)
			b->mismatches++;
	}
	return NULL;
}

static int burst(int procs, int threads, long count, int ndom, char **doms)
{
	int p, k, status, failed = 0;

	for (p = 0; p < procs; p++) {
		pid_t child = fork();

		if (child < 0)
			return perror("fork"), 1;
		if (child)
			continue;
		struct burst *b = calloc(threads, sizeof(*b));
		pthread_t *t = calloc(threads, sizeof(*t));

		for (k = 0; k < threads; k++) {
			b[k].domid = (uint16_t)atoi(doms[(p * threads + k) % ndom]);
			b[k].count = count;
			pthread_create(&t[k], NULL, burst_thread, &b[k]);
		}
		for (k = 0; k < threads; k++) {
			pthread_join(t[k], NULL);
			printf("{\"what\": \"burst\", \"pid\": %d, \"tid\": %d, \"domid\": %u, "
			       "\"calls\": %ld, \"delivered\": %ld, \"mismatches\": %ld}\n",
			       getpid(), b[k].tid, b[k].domid, b[k].count, b[k].delivered,
			       b[k].mismatches);
		}
		fflush(stdout);
		_exit(0);
	}
	for (p = 0; p < procs; p++) {
		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			failed = 1;
	}
	return failed;
}

int main(int argc, char **argv)
{
	static uint16_t domid; /* static: one resident page, as the locked buffers are */
	int i;

	if (argc < 3) {
		fprintf(stderr, "usage: %s gpfn|debugreg|version|loop|burst ARGS...\n", argv[0]);
		return 2;
	}
	privcmd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
	if (privcmd < 0)
		return perror("/dev/xen/privcmd"), 1;
	mlockall(MCL_CURRENT | MCL_FUTURE);
	if (!strcmp(argv[1], "gpfn")) {
		for (i = 2; i < argc; i++) {
			domid = (uint16_t)atoi(argv[i]);
			long r = maximum_gpfn(&domid);

			printf("{\"what\": \"gpfn\", \"pid\": %d, \"op\": 12, \"subop\": 14, "
			       "\"domid\": %u, \"delivered\": %ld}\n", getpid(), domid, r);
		}
	} else if (!strcmp(argv[1], "debugreg")) {
		for (i = 2; i < argc; i++) {
			long reg = atol(argv[i]);
			long r = hypercall(HYPERVISOR_get_debugreg, (uint64_t)reg, 0);

			printf("{\"what\": \"debugreg\", \"pid\": %d, \"op\": 9, \"reg\": %ld, "
			       "\"delivered\": %ld}\n", getpid(), reg, r);
		}
	} else if (!strcmp(argv[1], "version") || !strcmp(argv[1], "loop")) {
		long n = atol(argv[2]), r = 0;
		double t0 = now_ns();

		for (i = 0; i < n; i++)
			r = hypercall(HYPERVISOR_xen_version, XENVER_version, 0);
		double ns = (now_ns() - t0) / (n ? n : 1);

		printf("{\"what\": \"%s\", \"pid\": %d, \"op\": 17, \"calls\": %ld, "
		       "\"delivered\": %ld, \"ns_per_call\": %.0f}\n", argv[1], getpid(), n, r, ns);
	} else if (!strcmp(argv[1], "burst") && argc >= 6) {
		fflush(stdout);
		return burst(atoi(argv[2]), atoi(argv[3]), atol(argv[4]), argc - 5, argv + 5);
	} else {
		fprintf(stderr, "%s: unknown mode %s\n", argv[0], argv[1]);
		return 2;
	}
	return 0;
}
