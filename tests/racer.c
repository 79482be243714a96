/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Racers for tests/test_race.py, built there with the system gcc.
 *
 * A racer is a native thread that rewrites one 64-bit word of the caller's memory
 * between two values as fast as it can, while the test calls into the transport
 * (without the GIL, as cffi releases it) with that memory as its request. It shows
 * whether what the allow-list checked is what reached the device.
 *
 * racer_ioctl() is an ioctl() call made from this library, through its own
 * relocation slot: guard.install() guards it as it guards libxencall's, so the
 * guard's path can be raced without libxenctrl. Built with -z now, so the slot is
 * bound before the guard reads it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define MAX_RACERS 8

struct racer {
    uint64_t *where;
    uint64_t a, b;
    int stop;
    unsigned long flips;
    pthread_t thread;
};

static struct racer racers[MAX_RACERS];

/* Each value stays a moment (a few pause instructions), so a reader can find either:
 * two back-to-back stores leave one of them all but invisible. */
static void hold(void)
{
    for (int i = 0; i < 4; i++)
        __builtin_ia32_pause();
}

static void *flip(void *arg)
{
    struct racer *r = arg;
    unsigned long n = 0;

    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
        __atomic_store_n(r->where, r->a, __ATOMIC_SEQ_CST);
        hold();
        __atomic_store_n(r->where, r->b, __ATOMIC_SEQ_CST);
        hold();
        n++;
    }
    r->flips = n;
    return NULL;
}

/* Starts rewriting the word at `where` between a and b; a handle, or -1. */
int racer_start(uintptr_t where, uint64_t a, uint64_t b)
{
    for (int i = 0; i < MAX_RACERS; i++) {
        struct racer *r = &racers[i];
        if (r->where)
            continue;
        r->where = (uint64_t *)where;
        r->a = a;
        r->b = b;
        r->stop = 0;
        r->flips = 0;
        if (pthread_create(&r->thread, NULL, flip, r)) {
            r->where = NULL;
            return -1;
        }
        return i;
    }
    return -1;
}

/* Stops a racer and leaves its word at `a`; how many times it flipped. */
unsigned long racer_stop(int h)
{
    struct racer *r = &racers[h];

    __atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
    pthread_join(r->thread, NULL);
    *r->where = r->a;
    r->where = NULL;
    return r->flips;
}

int racer_ioctl(int fd, unsigned long request, uintptr_t arg)
{
    return ioctl(fd, request, (void *)arg);
}
