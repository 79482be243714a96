/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * xenprobe's native transport: the only code that talks to the privcmd device.
 *
 * Every hypercall passes the read-only allow-list in allowlist.c before any
 * ioctl is issued; nothing above this file (Python, configuration) can widen it.
 */
#ifndef XENPROBE_TRANSPORT_H
#define XENPROBE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

/* Returned instead of issuing the hypercall: the request is not on the allow-list. */
#define XP_REFUSED (-1000)

/* struct multicall_entry (xen/include/public/xen.h): 64 bytes on x86-64. */
typedef struct xp_multicall_entry {
    uint64_t op;
    uint64_t result;
    uint64_t args[6];
} xp_multicall_entry;

/* Why a request was refused; 0 means allowed. */
enum xp_verdict {
    XP_ALLOWED = 0,
    XP_DENY_OP = 1,          /* hypercall number not on the list */
    XP_DENY_SUBOP = 2,       /* subop / cmd of an allowed hypercall not on the list */
    XP_DENY_NESTED = 3,      /* multicall entry that is not a by-value op */
    XP_DENY_COUNT = 4,       /* multicall with no entries or too many */
    XP_DENY_ARGS = 5,        /* arguments the read-only op never takes */
    XP_DENY_PRIVATE = 6,     /* a word of the request points into the private span */
};

int xp_open(int *err);
int xp_close(int fd);

void *xp_alloc(size_t bytes, int *err);
void xp_free(void *p, size_t bytes);

/* Checks one hypercall without issuing it (for diagnostics and tests). */
int xp_check(uint64_t op, const uint64_t args[5]);

/* What the last refusal in this thread was about: out[0] the op and out[1] the subop
 * the allow-list read (for a sysctl or domctl the cmd in the struct, not the pointer to
 * it; for a multicall the entry's op and arg0), out[2] which multicall entry or batch
 * call it was (UINT64_MAX: the request itself). */
void xp_refusal(uint64_t out[3]);

/* Where the private copies live: out[0] the first byte of the span's lower guard, out[1]
 * one past its upper guard (both 0: no span could be reserved, and nothing is issued
 * that needs a copy). No request whose word points in between is issued (transport.c).
 * Fixed for the life of the process; for tests and diagnostics. */
void xp_private_span(uint64_t out[2]);

/* Every entry point below copies the caller's request once, out of the caller's reach,
 * checks the copy and issues the copy (issue.h). A request it cannot read gives what the
 * kernel would: -1 and EFAULT, with nothing issued. */

/* What glibc's ioctl() gives: int return, errno when it is -1. */
int xp_hypercall_ioctl(int fd, uint64_t op, const uint64_t args[5], int *ret, int *err);

/* What the ioctl system call itself returns as a long (syscall(2) keeps 64 bits). */
int xp_hypercall_syscall(int fd, uint64_t op, const uint64_t args[5], long *ret, int *err);

/* Multicall: each entry's 64-bit result is written back into entries[i].result. */
int xp_multicall(int fd, xp_multicall_entry *entries, unsigned count, int *ret, int *err);

/* Many by-value hypercalls (memory_op queries, xen_version), one ioctl each. Returns
 * 0, XP_REFUSED (nothing issued), or -1 with *err (EFAULT: an array could not be read
 * or written; ENOMEM). */
int xp_hypercall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int use_syscall, int64_t *rets, int *errs, int *err);

/* The same calls as multicalls of at most XP_MULTICALL_MAX entries: each entry's 64-bit
 * result in results[i]. Stops at a multicall that fails as a whole (*ret != 0). */
int xp_multicall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                      int64_t *results, int *ret, int *err);

#define XP_MULTICALL_MAX 4096u

#endif
