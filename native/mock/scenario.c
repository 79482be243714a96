/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The compiled scenario: a line-oriented text file that xenprobe's Python
 * side produces from TOML.  Parsed once per process into static state.
 *
 * A broken scenario must not kill the program under test (it may be a
 * shell or a toolstack binary that merely inherited LD_PRELOAD), so errors
 * print one line and make the device unavailable instead.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mock.h"

pthread_mutex_t hv_lock = PTHREAD_MUTEX_INITIALIZER;

static struct scenario scen;
static struct scenario *scen_ok;
static pthread_once_t scen_once = PTHREAD_ONCE_INIT;

/* Defaults that depend on the Xen version, from xen-abi.md §4.1 and §5.1;
 * the Python side normally states them explicitly. */
static const struct { uint32_t minor, sysctl, domctl, gdi_size; } versions[] = {
    { 10, 0x10, 0x0e,  96 }, { 11, 0x11, 0x10, 104 }, { 12, 0x12, 0x11, 104 },
    { 13, 0x12, 0x12, 104 }, { 14, 0x13, 0x12, 104 }, { 15, 0x13, 0x13, 104 },
    { 16, 0x14, 0x14, 112 }, { 17, 0x15, 0x15, 112 }, { 18, 0x15, 0x16, 112 },
    { 19, 0x15, 0x17, 112 }, { 20, 0x15, 0x17, 112 }, { 21, 0x16, 0x17, 112 },
    { 22, 0x16, 0x18, 112 },
};

struct parser {
    struct scenario *s;
    int   line;
    char  err[256];
    int   set_sysctl, set_domctl, set_exact, set_size, set_physinfo;
    uint32_t *index;       /* DOMID_FIRST_RESERVED entries, see find_domain() */
    size_t   capdomains;   /* allocated length of s->domains */
};

static int fail(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    return -1;
}

/* Decimal or 0x hex, optionally negative when `sign` is allowed. */
static int parse_int(struct parser *p, const char *tok, int sign,
                     int64_t lo, uint64_t hi, uint64_t *out, const char *what)
{
    int neg = *tok == '-', hex;
    const char *t = tok + neg;
    char *end;
    unsigned long long v;

    hex = t[0] == '0' && (t[1] == 'x' || t[1] == 'X');
    t += hex ? 2 : 0;
    /* strtoull alone would accept spaces, signs and an empty "0x". */
    if (!(hex ? isxdigit((unsigned char)*t) : isdigit((unsigned char)*t)))
        return fail(p, "%s: '%s' is not an integer", what, tok);
    errno = 0;
    v = strtoull(t, &end, hex ? 16 : 10);
    if (*end || errno == ERANGE)
        return fail(p, "%s: '%s' is not an integer", what, tok);
    if (neg && !sign)
        return fail(p, "%s: '%s' must not be negative", what, tok);
    if (neg) {
        if (v > (unsigned long long)INT64_MAX || -(int64_t)v < lo)
            return fail(p, "%s: %s is out of range", what, tok);
        *out = (uint64_t)(-(int64_t)v);
    } else {
        if (v > hi)
            return fail(p, "%s: %s is out of range (max %#llx)", what, tok,
                        (unsigned long long)hi);
        *out = v;
    }
    return 0;
}

static int hexval(char c)
{
    return isdigit((unsigned char)c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

static int parse_hex(struct parser *p, const char *tok, uint8_t *out,
                     size_t max, size_t *len, const char *what)
{
    size_t n = strlen(tok);

    if (n % 2)
        return fail(p, "%s: odd number of hex digits", what);
    if (n / 2 > max)
        return fail(p, "%s: %zu bytes, at most %zu fit", what, n / 2, max);
    for (size_t i = 0; i < n; i += 2) {
        if (!isxdigit((unsigned char)tok[i]) || !isxdigit((unsigned char)tok[i + 1]))
            return fail(p, "%s: '%.2s' is not hex", what, tok + i);
        out[i / 2] = (uint8_t)(hexval(tok[i]) << 4 | hexval(tok[i + 1]));
    }
    *len = n / 2;
    return 0;
}

/* While parsing, domains are in file order: an id -> index + 1 table (0: none) keeps
 * the duplicate check and the balloon lookup O(1), so 10,000 domains parse in
 * milliseconds rather than in a quadratic scan. */
static struct mock_domain *find_domain(struct parser *p, uint64_t id)
{
    struct scenario *s = p->s;
    uint32_t at = id < DOMID_FIRST_RESERVED ? p->index[id] : 0;
    return at ? &s->domains[at - 1] : NULL;
}

static int add_rule(struct parser *p, struct mock_rule **v, size_t *n,
                    struct mock_rule r)
{
    struct mock_rule *nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (!nv)
        return fail(p, "out of memory");
    nv[(*n)++] = r;
    *v = nv;
    return 0;
}

#define MAXTOK 8

/* Directives whose value is the rest of the line (it may hold spaces). */
static int string_directive(struct parser *p, const char *name, const char *rest)
{
    struct scenario *s = p->s;
    char *dst = !strcmp(name, "extraversion") ? s->extraversion : s->capabilities;
    size_t cap = !strcmp(name, "extraversion") ? sizeof(s->extraversion)
                                               : sizeof(s->capabilities);
    size_t n = strlen(rest);

    /* Both are fixed-size NUL-terminated arrays in the Xen ABI. */
    if (n >= cap)
        return fail(p, "%s: %zu characters, at most %zu fit", name, n, cap - 1);
    memset(dst, 0, cap);
    memcpy(dst, rest, n);
    return 0;
}

static int directive(struct parser *p, char **tok, int ntok)
{
    struct scenario *s = p->s;
    const char *d = tok[0];
    uint64_t v[6];

#define NARGS(k) do { if (ntok != (k) + 1) \
        return fail(p, "%s takes %d argument%s, got %d", d, k, (k) == 1 ? "" : "s", ntok - 1); \
    } while (0)
#define U(i, hi, what) do { if (parse_int(p, tok[i], 0, 0, (hi), &v[i], (what))) return -1; } while (0)
#define S(i, lo, hi, what) do { if (parse_int(p, tok[i], 1, (lo), (hi), &v[i], (what))) return -1; } while (0)
#define ONE_OF(i, a, b) (!strcmp(tok[i], a) ? 0 : !strcmp(tok[i], b) ? 1 : \
        (fail(p, "%s: expected %s or %s, got '%s'", d, a, b, tok[i]), -1))

    if (!strcmp(d, "xen")) {
        NARGS(2);
        U(1, 0xFFFF, "xen MAJOR");
        U(2, 0xFFFF, "xen MINOR");
        s->major = (uint32_t)v[1];
        s->minor = (uint32_t)v[2];
    } else if (!strcmp(d, "sysctl_interface") || !strcmp(d, "domctl_interface")) {
        NARGS(1);
        U(1, UINT32_MAX, d);
        if (d[0] == 's') { s->sysctl_interface = (uint32_t)v[1]; p->set_sysctl = 1; }
        else             { s->domctl_interface = (uint32_t)v[1]; p->set_domctl = 1; }
    } else if (!strcmp(d, "getdomaininfo_exact")) {
        NARGS(1);
        if ((s->getdomaininfo_exact = ONE_OF(1, "0", "1")) < 0)
            return -1;
        p->set_exact = 1;
    } else if (!strcmp(d, "getdomaininfo_size")) {
        NARGS(1);
        U(1, MAX_GDI_SIZE, d);
        /* We overwrite tot/max pages at offsets 8 and 16. */
        if (v[1] < 24 || v[1] % 8)
            return fail(p, "%s: %llu is not a plausible record size (96/104/112)",
                        d, (unsigned long long)v[1]);
        s->getdomaininfo_size = v[1];
        p->set_size = 1;
    } else if (!strcmp(d, "capabilities_hex")) {
        /* capabilities with the trailing space real Xen's string has (x86/setup.c
         * appends "xen-3.0-x86_64 " and the like), which a plain line would lose. */
        size_t n;
        NARGS(1);
        memset(s->capabilities, 0, sizeof(s->capabilities));
        if (parse_hex(p, tok[1], (uint8_t *)s->capabilities, sizeof(s->capabilities) - 1,
                      &n, d))
            return -1;
    } else if (!strcmp(d, "physinfo")) {
        NARGS(1);
        if (parse_hex(p, tok[1], s->physinfo, UNION_SIZE, &s->physinfo_len, d))
            return -1;
        p->set_physinfo = 1;
    } else if (!strcmp(d, "max_page")) {
        NARGS(1);
        U(1, UINT64_MAX, d);
        s->max_page = v[1];
    } else if (!strcmp(d, "self_domid")) {
        NARGS(1);
        U(1, DOMID_FIRST_RESERVED - 1, d);
        s->self_domid = (uint16_t)v[1];
    } else if (!strcmp(d, "domain")) {
        struct mock_domain *nd, *dom;
        NARGS(5);
        U(1, DOMID_FIRST_RESERVED - 1, "domain ID (reserved ids start at 0x7FF0)");
        /* Xen 4.10-4.22 keep tot_pages and max_pages in an unsigned int
         * (xen/include/xen/sched.h), so larger values are not a real state. */
        U(2, UINT32_MAX, "domain TOT (Xen keeps tot_pages in an unsigned int)");
        U(3, UINT32_MAX, "domain MAX (Xen keeps max_pages in an unsigned int)");
        U(4, UINT64_MAX, "domain GPFN");
        if (find_domain(p, v[1]))
            return fail(p, "domain %llu is defined twice", (unsigned long long)v[1]);
        if (s->ndomains == p->capdomains) {
            size_t cap = p->capdomains ? 2 * p->capdomains : 16;
            nd = realloc(s->domains, cap * sizeof(*nd));
            if (!nd)
                return fail(p, "out of memory");
            s->domains = nd;
            p->capdomains = cap;
        }
        dom = &s->domains[s->ndomains];
        memset(dom, 0, sizeof(*dom));
        dom->id = (uint16_t)v[1];
        dom->tot_pages = v[2];
        dom->max_pages = v[3];
        dom->max_gpfn = v[4];
        dom->line = p->line;
        if (parse_hex(p, tok[5], dom->record, MAX_GDI_SIZE, &dom->record_len,
                      "domain HEX"))
            return -1;
        p->index[dom->id] = (uint32_t)++s->ndomains;
    } else if (!strcmp(d, "balloon")) {
        struct mock_domain *dom;
        NARGS(5);
        U(1, DOMID_FIRST_RESERVED - 1, "balloon ID");
        S(2, -(int64_t)UINT32_MAX, UINT32_MAX, "balloon STEP");
        U(3, UINT64_MAX, "balloon EVERY");
        U(4, UINT32_MAX, "balloon MIN");
        U(5, UINT32_MAX, "balloon MAX");
        if (!(dom = find_domain(p, v[1])))
            return fail(p, "balloon: domain %llu is not defined (define it first)",
                        (unsigned long long)v[1]);
        if (dom->balloon_every)
            return fail(p, "balloon: domain %llu already has a balloon",
                        (unsigned long long)v[1]);
        if (v[2] == 0 || v[3] == 0)
            return fail(p, "balloon: STEP and EVERY must be non-zero");
        if (v[4] > v[5])
            return fail(p, "balloon: MIN %llu > MAX %llu",
                        (unsigned long long)v[4], (unsigned long long)v[5]);
        if (dom->tot_pages < v[4] || dom->tot_pages > v[5])
            return fail(p, "balloon: domain %llu starts at %llu, outside [%llu, %llu]",
                        (unsigned long long)v[1], (unsigned long long)dom->tot_pages,
                        (unsigned long long)v[4], (unsigned long long)v[5]);
        dom->balloon_step = (int64_t)v[2];
        dom->balloon_every = v[3];
        dom->balloon_min = v[4];
        dom->balloon_max = v[5];
        dom->balloon_line = p->line;
    } else if (!strcmp(d, "hypervisor_bits")) {
        NARGS(1);
        int b = ONE_OF(1, "64", "32");
        if (b < 0)
            return -1;
        s->hypervisor_bits = b ? 32 : 64;
    } else if (!strcmp(d, "guest_type")) {
        NARGS(1);
        int b = ONE_OF(1, "PV", "PVH");
        if (b < 0)
            return -1;
        strcpy(s->guest_type, b ? "PVH" : "PV");
    } else if (!strcmp(d, "multicall")) {
        NARGS(1);
        if ((s->multicall = ONE_OF(1, "0", "1")) < 0)
            return -1;
    } else if (!strcmp(d, "compat_clamp")) {
        NARGS(1);
        if ((s->compat_clamp = ONE_OF(1, "0", "1")) < 0)
            return -1;
    } else if (!strcmp(d, "driver")) {
        NARGS(1);
        int b = ONE_OF(1, "pvops", "xenlinux");
        if (b < 0)
            return -1;
        s->driver = b ? DRIVER_XENLINUX : DRIVER_PVOPS;
    } else if (!strcmp(d, "role")) {
        NARGS(1);
        int b = ONE_OF(1, "dom0", "domU");
        if (b < 0)
            return -1;
        s->role = b ? ROLE_DOMU : ROLE_DOM0;
    } else if (!strcmp(d, "device")) {
        NARGS(1);
        if (!strcmp(tok[1], "present"))      s->device = DEVICE_PRESENT;
        else if (!strcmp(tok[1], "absent"))  s->device = DEVICE_ABSENT;
        else if (!strcmp(tok[1], "eacces"))  s->device = DEVICE_EACCES;
        else return fail(p, "device: expected present, absent or eacces, got '%s'", tok[1]);
    } else if (!strcmp(d, "sys_hypervisor")) {
        NARGS(1);
        if ((s->sys_hypervisor = ONE_OF(1, "0", "1")) < 0)
            return -1;
    } else if (!strcmp(d, "fault")) {
        struct mock_rule r;
        NARGS(4);
        U(1, UINT64_MAX, "fault OP");
        S(2, -1, UINT32_MAX, "fault SUBOP");
        U(3, 4095, "fault ERRNO");
        S(4, -1, INT64_MAX, "fault COUNT");
        if (v[3] == 0)
            return fail(p, "fault ERRNO must be 1..4095");
        if ((int64_t)v[4] == 0)
            return fail(p, "fault COUNT must be positive (or -1 for always)");
        r.op = v[1]; r.subop = (int64_t)v[2]; r.err = (int)v[3]; r.count = (int64_t)v[4];
        return add_rule(p, &s->faults, &s->nfaults, r);
    } else if (!strcmp(d, "hang")) {
        struct mock_rule r = { 0, 0, 0, 0 };
        NARGS(2);
        U(1, UINT64_MAX, "hang OP");
        S(2, -1, UINT32_MAX, "hang SUBOP");
        r.op = v[1]; r.subop = (int64_t)v[2];
        return add_rule(p, &s->hangs, &s->nhangs, r);
    } else {
        /* ioctl_fault, delay, garbage, short, vanish (faults.c); xenstore.c's */
        char msg[200];
        int known = census_directive(d, tok + 1, ntok - 1, msg, sizeof(msg));
        if (known > 0)
            known = faults_directive(d, tok + 1, ntok - 1, msg, sizeof(msg));
        if (known > 0)
            known = xenstore_directive(d, tok + 1, ntok - 1, msg, sizeof(msg));
        if (known > 0)
            return fail(p, "unknown directive '%s'", d);
        if (known < 0)
            return fail(p, "%s", msg);
    }
    return 0;
#undef NARGS
#undef U
#undef S
#undef ONE_OF
}

static int cmp_domain(const void *a, const void *b)
{
    const struct mock_domain *x = a, *y = b;
    return (int)x->id - (int)y->id;
}

/* Checks that need the whole file (directives may come in any order). */
static int finish(struct parser *p)
{
    struct scenario *s = p->s;

    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        if (s->major != 4 || s->minor != versions[i].minor)
            continue;
        if (!p->set_sysctl) s->sysctl_interface = versions[i].sysctl;
        if (!p->set_domctl) s->domctl_interface = versions[i].domctl;
        if (!p->set_size)   s->getdomaininfo_size = versions[i].gdi_size;
    }
    if (!p->set_exact)
        s->getdomaininfo_exact = s->major > 4 || (s->major == 4 && s->minor >= 18);
    if (!p->set_physinfo)   /* Xen zeroes the whole struct before filling it */
        s->physinfo_len = (s->major > 4 || (s->major == 4 && s->minor >= 17)) ? 112 : 104;

    for (size_t i = 0; i < s->ndomains; i++) {
        struct mock_domain *d = &s->domains[i];
        if (d->record_len != s->getdomaininfo_size) {
            p->line = d->line;
            return fail(p, "domain %u: record is %zu bytes, getdomaininfo_size is %zu",
                        d->id, d->record_len, s->getdomaininfo_size);
        }
    }
    qsort(s->domains, s->ndomains, sizeof(*s->domains), cmp_domain);
    return 0;
}

size_t scenario_lower_bound(const struct scenario *s, uint32_t id)
{
    size_t lo = 0, hi = s->ndomains;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->domains[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void defaults(struct scenario *s)
{
    s->major = 4;
    s->minor = 17;
    strcpy(s->capabilities, "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
    s->sysctl_interface = 0x15;
    s->domctl_interface = 0x15;
    s->getdomaininfo_size = 112;
    s->hypervisor_bits = 64;
    strcpy(s->guest_type, "PV");
    s->multicall = 1;
    s->driver = DRIVER_PVOPS;
    s->role = ROLE_DOM0;
    s->device = DEVICE_PRESENT;
}

static int parse_text(struct parser *p, char *text)
{
    char *line = text, *next;

    for (p->line = 1; line; p->line++, line = next) {
        char *tok[MAXTOK];
        int ntok = 0;
        char *c, *e;

        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        e = line + strlen(line);
        while (e > line && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line || *line == '#')
            continue;

        /* The directive name, then either the literal rest of the line
         * (strings) or whitespace-separated tokens up to a '#' comment. */
        c = line + strcspn(line, " \t");
        if (*c) {
            *c++ = 0;
            c += strspn(c, " \t");
        }
        if (!strcmp(line, "extraversion") || !strcmp(line, "capabilities")) {
            if (string_directive(p, line, c))
                return -1;
            continue;
        }
        tok[ntok++] = line;
        while (*c && *c != '#') {
            if (ntok == MAXTOK)
                return fail(p, "%s: too many arguments", tok[0]);
            tok[ntok++] = c;
            c += strcspn(c, " \t");
            if (*c) {
                *c++ = 0;
                c += strspn(c, " \t");
            }
        }
        if (directive(p, tok, ntok))
            return -1;
    }
    p->line = 0;
    return finish(p);
}

static void load(void)
{
    const char *path = getenv("XENPROBE_MOCK_SCENARIO");
    struct parser p = { .s = &scen };
    char *text = NULL;
    size_t len = 0, cap = 0;
    int fd = -1, rc = -1;

    defaults(&scen);
    snprintf(scen.path, sizeof(scen.path), "%s", path && *path ? path : "$XENPROBE_MOCK_SCENARIO");
    if (!path || !*path) {
        fail(&p, "not set; the mock device stays unavailable");
        goto out;
    }
    fd = real_open_file(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        fail(&p, "cannot open: %s", strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t r;
        if (cap - len < 4096) {
            char *nt = realloc(text, cap + 65536);
            if (!nt) {
                fail(&p, "out of memory");
                goto out;
            }
            text = nt;
            cap += 65536;
        }
        r = read(fd, text + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(&p, "cannot read: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    text[len] = 0;
    if (memchr(text, 0, len)) {
        fail(&p, "contains a NUL byte; expected a text file");
        goto out;
    }
    p.index = calloc(DOMID_FIRST_RESERVED, sizeof(*p.index));
    if (!p.index) {
        fail(&p, "out of memory");
        goto out;
    }
    rc = parse_text(&p, text);
out:
    free(p.index);
    if (fd >= 0)
        real_close_fd(fd);
    free(text);
    if (rc == 0) {
        scen_ok = &scen;
    } else {
        char msg[1024];
        int n = snprintf(msg, sizeof(msg), "xenprobe-mock: %s:%d: %s\n",
                         scen.path, p.line, p.err);
        if (n > 0) {
            ssize_t w = write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
            (void)w;
        }
    }
}

struct scenario *scenario_get(void)
{
    int saved = errno;
    pthread_once(&scen_once, load);
    errno = saved;
    return scen_ok;
}
