/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Fault kinds beyond the hypervisor's `fault` and `hang` rules (hypervisor.c): a Linux
 * driver that fails a request before it reaches Xen, latency, garbage and short
 * results, and domains that vanish.  Each kind is one scenario directive:
 *
 *   ioctl_fault OP SUBOP ERRNO COUNT VIA   the privcmd driver fails the HYPERCALL ioctl
 *                                          with -ERRNO (VIA: any, ioctl, syscall); the
 *                                          hypervisor never sees the request
 *   delay OP SUBOP USEC COUNT              the hypervisor takes USEC microseconds longer
 *   garbage OP SUBOP COUNT                 a successful result is replaced by
 *                                          pseudo-random bits: the return value of a
 *                                          by-value op, the union of a sysctl/domctl
 *   short OP SUBOP COUNT                   a sysctl/domctl answers short: one record
 *                                          fewer from getdomaininfolist, only the first
 *                                          half of any other struct's union written
 *   vanish DOMID AFTER                     the domain disappears once it has been looked
 *                                          up AFTER times (listed, getdomaininfo, memory_op)
 *
 * OP is a hypercall number, SUBOP its subop (cmd for sysctl/domctl), -1 meaning any
 * (OP -1 only for ioctl_fault).  COUNT is how many matching requests the rule affects,
 * -1 meaning all.  Rules are tried in file order; the first with COUNT left applies.
 *
 * The state lives here, not in struct scenario: the rules are parsed once per process
 * like the rest of the scenario (scenario.c hands over the directives it does not know).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock.h"

enum { KIND_IOCTL, KIND_DELAY, KIND_GARBAGE, KIND_SHORT, NKINDS };
enum { VIA_ANY = -1 };

struct frule {
    int64_t  op, subop;        /* -1: any */
    int      err;              /* ioctl_fault */
    int      via;              /* ioctl_fault: VIA_ANY, VIA_IOCTL or VIA_SYSCALL */
    uint64_t usec;             /* delay */
    int64_t  count;            /* remaining; -1: unlimited */
};

struct vanish {
    uint16_t domid;
    uint64_t after;
    uint64_t lookups;          /* atomic */
};

#define MAX_RULES 256
static struct frule rules[NKINDS][MAX_RULES];
static size_t nrules[NKINDS];
static struct vanish vanishing[MAX_RULES];
static size_t nvanish;
static pthread_mutex_t rules_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t noise = 0x9E3779B97F4A7C15ull;  /* xorshift64 state: deterministic */

/* ---- parsing ---------------------------------------------------------------------- */

static int number(const char *tok, int64_t lo, int64_t hi, int64_t *out, const char *what,
                  char *msg, size_t len)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(tok, &end, 0);
    if (!*tok || *end || errno == ERANGE || v < lo || v > hi) {
        snprintf(msg, len, "%s: '%s' is not an integer in %lld..%lld", what, tok,
                 (long long)lo, (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}

#define NUM(i, lo, hi, what) do { if (number(arg[i], (lo), (hi), &v[i], (what), msg, len)) \
                                      return -1; } while (0)

static int add(int kind, struct frule r, char *msg, size_t len)
{
    if (nrules[kind] == MAX_RULES) {
        snprintf(msg, len, "more than %d rules of one kind", MAX_RULES);
        return -1;
    }
    if (r.count == 0) {
        snprintf(msg, len, "COUNT must be positive (or -1 for always)");
        return -1;
    }
    rules[kind][nrules[kind]++] = r;
    return 0;
}

int faults_directive(const char *name, char **arg, int narg, char *msg, size_t len)
{
    int64_t v[8] = { 0 };
    struct frule r = { .op = -1, .subop = -1, .via = VIA_ANY, .count = -1 };

    if (!strcmp(name, "ioctl_fault")) {
        if (narg != 5)
            goto nargs;
        NUM(0, -1, UINT32_MAX, "ioctl_fault OP");
        NUM(1, -1, UINT32_MAX, "ioctl_fault SUBOP");
        NUM(2, 1, 4095, "ioctl_fault ERRNO");
        NUM(3, -1, INT64_MAX, "ioctl_fault COUNT");
        if (!strcmp(arg[4], "any"))          r.via = VIA_ANY;
        else if (!strcmp(arg[4], "ioctl"))   r.via = VIA_IOCTL;
        else if (!strcmp(arg[4], "syscall")) r.via = VIA_SYSCALL;
        else {
            snprintf(msg, len, "ioctl_fault VIA: expected any, ioctl or syscall, got '%s'",
                     arg[4]);
            return -1;
        }
        r.op = v[0]; r.subop = v[1]; r.err = (int)v[2]; r.count = v[3];
        return add(KIND_IOCTL, r, msg, len);
    }
    if (!strcmp(name, "delay")) {
        if (narg != 4)
            goto nargs;
        NUM(0, 0, UINT32_MAX, "delay OP");
        NUM(1, -1, UINT32_MAX, "delay SUBOP");
        NUM(2, 0, 60000000, "delay USEC");
        NUM(3, -1, INT64_MAX, "delay COUNT");
        r.op = v[0]; r.subop = v[1]; r.usec = (uint64_t)v[2]; r.count = v[3];
        return add(KIND_DELAY, r, msg, len);
    }
    if (!strcmp(name, "garbage") || !strcmp(name, "short")) {
        if (narg != 3)
            goto nargs;
        NUM(0, 0, UINT32_MAX, "OP");
        NUM(1, -1, UINT32_MAX, "SUBOP");
        NUM(2, -1, INT64_MAX, "COUNT");
        r.op = v[0]; r.subop = v[1]; r.count = v[2];
        return add(name[0] == 'g' ? KIND_GARBAGE : KIND_SHORT, r, msg, len);
    }
    if (!strcmp(name, "vanish")) {
        if (narg != 2)
            goto nargs;
        NUM(0, 0, DOMID_FIRST_RESERVED - 1, "vanish DOMID");
        NUM(1, 0, INT64_MAX, "vanish AFTER");
        if (nvanish == MAX_RULES) {
            snprintf(msg, len, "more than %d vanish directives", MAX_RULES);
            return -1;
        }
        vanishing[nvanish].domid = (uint16_t)v[0];
        vanishing[nvanish].after = (uint64_t)v[1];
        nvanish++;
        return 0;
    }
    return 1;   /* not a fault directive */
nargs:
    snprintf(msg, len, "%s: wrong number of arguments", name);
    return -1;
}

#undef NUM

/* ---- matching ----------------------------------------------------------------------- */

/* The first rule of `kind` that matches and has count left, its count taken. */
static int take(int kind, int64_t op, int64_t subop, int via, struct frule *out)
{
    int found = 0;

    if (!nrules[kind])
        return 0;
    pthread_mutex_lock(&rules_lock);
    for (size_t i = 0; i < nrules[kind] && !found; i++) {
        struct frule *r = &rules[kind][i];
        if (r->count == 0 || (r->op != -1 && r->op != op)
            || (r->subop != -1 && r->subop != subop)
            || (r->via != VIA_ANY && r->via != via))
            continue;
        if (r->count > 0)
            r->count--;
        *out = *r;
        found = 1;
    }
    pthread_mutex_unlock(&rules_lock);
    return found;
}

static uint64_t random64(void)
{
    uint64_t x;

    pthread_mutex_lock(&rules_lock);
    x = noise;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    noise = x;
    pthread_mutex_unlock(&rules_lock);
    return x;
}

/* ---- the driver (privcmd.c) ----------------------------------------------------------- */

int faults_driver(const uint64_t hc[6], int via, int64_t *subop)
{
    struct frule r;
    uint32_t cmd;

    /* The subop as the hypervisor would decode it (hypervisor.c decode()). */
    switch (hc[0]) {
    case HC_MEMORY_OP:   *subop = (int64_t)(hc[1] & 0x3f); break;
    case HC_XEN_VERSION: *subop = (int)hc[1]; break;
    case HC_SYSCTL:
    case HC_DOMCTL:      *subop = uread(&cmd, hc[1], 4) ? -1 : (int64_t)cmd; break;
    default:             *subop = -1; break;
    }
    if (!take(KIND_IOCTL, (int64_t)hc[0], *subop, via, &r))
        return 0;
    return -r.err;
}

/* ---- the hypervisor (hypervisor.c) -------------------------------------------------- */

void faults_delay(const struct hv_req *req)
{
    struct frule r;

    if (take(KIND_DELAY, (int64_t)req->op, req->subop, VIA_ANY, &r) && r.usec) {
        struct timespec ts = { (time_t)(r.usec / 1000000), (long)(r.usec % 1000000) * 1000 };
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
    }
}

static void scramble(uint64_t addr, size_t from, size_t to)
{
    uint8_t b[DOMCTL_SIZE];

    if (to > sizeof(b) || uread(b, addr, to))
        return;
    for (size_t i = from; i < to; i += 8) {
        uint64_t x = random64();
        memcpy(b + i, &x, to - i < 8 ? to - i : 8);
    }
    uwrite(addr, b, to);
}

int64_t faults_mangle(struct hv_req *req, int64_t rc)
{
    struct frule r;
    int by_struct = req->op == HC_SYSCTL || req->op == HC_DOMCTL;
    /* The union starts after cmd and interface_version (sysctl), and domain too (domctl). */
    size_t size = req->op == HC_SYSCTL ? SYSCTL_SIZE : DOMCTL_SIZE;
    size_t start = size - UNION_SIZE;

    if (req->op == HC_MULTICALL || rc < 0)
        return rc;      /* only a successful answer is mangled, each multicall entry alone */
    if (take(KIND_GARBAGE, (int64_t)req->op, req->subop, VIA_ANY, &r)) {
        if (!by_struct)
            return (int64_t)random64();
        scramble(req->args[0], start, size);
        return rc;
    }
    if (by_struct && take(KIND_SHORT, (int64_t)req->op, req->subop, VIA_ANY, &r)) {
        uint8_t b[DOMCTL_SIZE];
        if (uread(b, req->args[0], size))
            return rc;
        if (req->op == HC_SYSCTL && req->subop == 6) {
            uint32_t n;                 /* getdomaininfolist: one record fewer */
            memcpy(&n, b + 24, 4);
            n -= n > 0;
            memcpy(b + 24, &n, 4);
        } else {                        /* the second half of the union never written */
            memset(b + start + UNION_SIZE / 2, 0, UNION_SIZE / 2);
        }
        uwrite(req->args[0], b, size);
    }
    return rc;
}

int faults_domain_gone(uint16_t domid)
{
    for (size_t i = 0; i < nvanish; i++) {
        struct vanish *v = &vanishing[i];
        if (v->domid != domid)
            continue;
        if (__atomic_load_n(&v->lookups, __ATOMIC_RELAXED) >= v->after)
            return 1;
        __atomic_add_fetch(&v->lookups, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return 0;
}
