/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * glibc's own definitions of what the mock interposes, resolved lazily with
 * RTLD_NEXT.  A leaf: device.c interposes on top of these, and the scenario
 * loader (scenario.c) and the log (log.c) open their files through them
 * without calling back into the interposition layer.
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include "mock.h"

/* A benign race: every thread stores the same pointer. */
void *real_sym(void **slot, const char *name)
{
    void *p = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (!p) {
        p = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, p, __ATOMIC_RELAXED);
    }
    return p;
}

static int (*r_open)(const char *, int, ...);
static int (*r_close)(int);

int real_open_file(const char *path, int flags, int mode)
{
    return ((__typeof__(r_open))real_sym((void **)&r_open, "open"))(path, flags, mode);
}

int real_close_fd(int fd)
{
    return ((__typeof__(r_close))real_sym((void **)&r_close, "close"))(fd);
}
