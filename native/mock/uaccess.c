/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest-memory access for the emulated hypervisor and driver.
 *
 * Xen and Linux copy from/to user memory and return -EFAULT for a bad
 * pointer instead of crashing.  process_vm_readv/writev on our own pid gives
 * the same behaviour without a SIGSEGV.  If the syscall is unavailable
 * (seccomp, old kernel) we fall back to memcpy, catching only NULL-page
 * pointers.
 *
 * process_vm_readv costs a few microseconds, far more than a real hypervisor's copy from
 * guest memory. Within one privcmd request (uaccess_begin/end), pages already copied
 * from or to are remembered and copied with memcpy: a 4096-entry multicall then costs
 * a few dozen system calls instead of three per entry, so the mock's batched path is
 * cheap, as the real one is. Page protections are page-granular, so a page that
 * answered once answers for the rest of the request; only another thread unmapping it
 * during the request could tell the difference (a SIGSEGV instead of -EFAULT).
 * Nothing is remembered between requests: a buffer freed between two calls still
 * gives -EFAULT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mock.h"

/* x86-64 user addresses end below 2^56 even with 5-level paging. */
#define USER_TOP 0x0100000000000000ull

static int use_memcpy;   /* set once process_vm_* turned out to be unusable */

#define PAGE_SHIFT 12
#define KNOWN 16         /* pages remembered per direction during one request */

struct known_pages {
    int      depth;      /* > 0 inside uaccess_begin/end */
    unsigned n[2], next[2];
    uint64_t page[2][KNOWN];  /* [0]: readable, [1]: writable */
};
static __thread struct known_pages known;

static void forget(void)
{
    memset(known.n, 0, sizeof(known.n));
    memset(known.next, 0, sizeof(known.next));
}

void uaccess_begin(void)
{
    if (known.depth++ == 0)
        forget();
}

void uaccess_end(void)
{
    if (--known.depth == 0)
        forget();
}

static int page_known(int write, uint64_t page)
{
    /* A writable page is readable too (x86 has no write-only mappings). */
    for (int w = write; w <= 1; w++)
        for (unsigned i = 0; i < known.n[w]; i++)
            if (known.page[w][i] == page)
                return 1;
    return 0;
}

static int range_known(int write, uint64_t addr, size_t n)
{
    if (known.depth == 0)
        return 0;
    for (uint64_t p = addr >> PAGE_SHIFT; p <= (addr + n - 1) >> PAGE_SHIFT; p++)
        if (!page_known(write, p))
            return 0;
    return 1;
}

static void remember(int write, uint64_t addr, size_t n)
{
    uint64_t first = addr >> PAGE_SHIFT, last = (addr + n - 1) >> PAGE_SHIFT;

    if (known.depth == 0 || last - first >= KNOWN)
        return;
    for (uint64_t p = first; p <= last; p++) {
        if (page_known(write, p))
            continue;
        if (known.n[write] < KNOWN)
            known.n[write]++;
        known.page[write][known.next[write]] = p;
        known.next[write] = (known.next[write] + 1) % KNOWN;
    }
}

int uaccess_ok(uint64_t addr, uint64_t n)
{
    return addr + n >= addr && addr + n <= USER_TOP;
}

static int vm_copy(int write, uint64_t remote, void *local, size_t n)
{
    if (n == 0)
        return 0;
    if (!uaccess_ok(remote, n))
        return -EFAULT;
    if (range_known(write, remote, n))
        goto copy;
    if (!__atomic_load_n(&use_memcpy, __ATOMIC_RELAXED)) {
        struct iovec l = { local, n };
        struct iovec r = { (void *)(uintptr_t)remote, n };
        int saved = errno;
        ssize_t got = write ? process_vm_writev(getpid(), &l, 1, &r, 1, 0)
                            : process_vm_readv(getpid(), &l, 1, &r, 1, 0);
        int e = errno;
        errno = saved;
        if (got == (ssize_t)n) {
            remember(write, remote, n);
            return 0;
        }
        if (got >= 0 || e == EFAULT)
            return -EFAULT;
        if (e != ENOSYS && e != EPERM)
            return -EFAULT;
        __atomic_store_n(&use_memcpy, 1, __ATOMIC_RELAXED);
    }
    if (remote < 4096)
        return -EFAULT;
copy:
    if (write)
        memcpy((void *)(uintptr_t)remote, local, n);
    else
        memcpy(local, (const void *)(uintptr_t)remote, n);
    return 0;
}

int uread(void *dst, uint64_t src, size_t n)
{
    return vm_copy(0, src, dst, n);
}

int uwrite(uint64_t dst, const void *src, size_t n)
{
    return vm_copy(1, dst, (void *)src, n);
}
