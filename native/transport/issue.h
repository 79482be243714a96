/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one way a hypercall leaves xenprobe (transport.c), shared by every entry point
 * of the transport and by the guard on libxenctrl's path (guard.c).
 *
 * Copy, check, issue: the request is copied out of the caller's memory once, into
 * pages of the transport's private span that belong to this call; the allow-list
 * (allowlist.c) judges the copy, and no word of it may point into the span; the copy
 * is what the device gets. Nothing the caller's other threads do to their own memory
 * afterwards, and nothing Xen writes for an allowed call, can change what was judged
 * (docs/readonly.md).
 */
#ifndef XENPROBE_ISSUE_H
#define XENPROBE_ISSUE_H

#include <stddef.h>
#include <stdint.h>

#include "privcmd_abi.h"

/* Copies n bytes from/to the caller's memory: 0, or EFAULT where the kernel would
 * answer EFAULT (an unmapped or unreadable address) instead of a SIGSEGV. */
int xp_copy_in(void *dst, uint64_t src, size_t n);
int xp_copy_out(uint64_t dst, const void *src, size_t n);

/* How xp_issue reads and writes the struct a request points to. Either way it is
 * read exactly once; they differ only in what a bad pointer does. */
struct xp_access {
    int (*in)(void *dst, uint64_t src, size_t n);
    int (*out)(uint64_t dst, const void *src, size_t n);
};

/* Any caller's memory: xp_copy_in/out, a bad pointer is EFAULT (a system call each). */
extern const struct xp_access xp_caller_memory;

/* Memory known to be mapped: our own, or (in the guard) libxencall's hypercall buffers,
 * into which libxenctrl has already copied everything its caller passed. memcpy; only
 * the NULL page is EFAULT. */
extern const struct xp_access xp_known_memory;

/* Hands a checked request to the device: glibc's ioctl(), the raw system call, or
 * (in the guard) the ioctl the guarded libraries would have called. Returns what
 * that returns; errno is read right after. */
typedef long (*xp_send_fn)(int fd, struct privcmd_hypercall *hc);

/*
 * Issues the hypercall in *hc, which the caller has already copied out of its
 * caller's reach (a value on its own stack). A sysctl, domctl, platform_op or
 * multicall's struct is copied here (through `mem`), once, into locked pages of the
 * private span; checked; issued with arg0 pointing at the copy; copied back afterwards.
 * A request with a word pointing into the span is refused (XP_DENY_PRIVATE). So are
 * a XENPF_resource_op's entries and a multicall's platform_op structs, through `mem`
 * too: on the guard's path they are libxencall's buffers as well.
 *   0           issued, or answered as the kernel would without issuing (the struct
 *               could not be read: *ret -1, *err EFAULT); *ret is what send returned,
 *               *err its errno when *ret is -1, else 0;
 *   XP_REFUSED  not on the allow-list: *err is the verdict, xp_refusal() the detail;
 *   -1          cannot (no locked memory): *err is the errno.
 */
int xp_issue(int fd, struct privcmd_hypercall *hc, xp_send_fn send,
             const struct xp_access *mem, long *ret, int *err);

#endif
