/*
 * Guest-memory access for the emulated hypervisor and driver.
 *
 * Xen and Linux copy from/to user memory and return -EFAULT for a bad
 * pointer instead of crashing.  process_vm_readv/writev on our own pid gives
 * the same behaviour without a SIGSEGV.  If the syscall is unavailable
 * (seccomp, old kernel) we fall back to memcpy, catching only NULL-page
 * pointers.
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
    if (!__atomic_load_n(&use_memcpy, __ATOMIC_RELAXED)) {
        struct iovec l = { local, n };
        struct iovec r = { (void *)(uintptr_t)remote, n };
        int saved = errno;
        ssize_t got = write ? process_vm_writev(getpid(), &l, 1, &r, 1, 0)
                            : process_vm_readv(getpid(), &l, 1, &r, 1, 0);
        int e = errno;
        errno = saved;
        if (got == (ssize_t)n)
            return 0;
        if (got >= 0 || e == EFAULT)
            return -EFAULT;
        if (e != ENOSYS && e != EPERM)
            return -EFAULT;
        __atomic_store_n(&use_memcpy, 1, __ATOMIC_RELAXED);
    }
    if (remote < 4096)
        return -EFAULT;
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
