/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel's tracing side of the privcmd driver, for `xenprobe watch`'s tests:
 * kprobe events on privcmd_ioctl, defined in a mock tracefs directory
 * (XENPROBE_MOCK_TRACEFS) and enabled in one of its instances, print the lines the
 * kernel would print into that instance's trace_pipe.
 *
 * What is modelled, and where Linux decides it:
 * - A kprobe event fires when its address is executed: offset 0 of privcmd_ioctl at
 *   every entry (all ioctl cmds), and the offsets after the hypercall returns
 *   (XENPROBE_MOCK_PRIVCMD_TEXT names them, as the finder finds them in the module
 *   the test hands the watch) when the HYPERCALL or DM_OP hypercall returns.
 * - `kprobe_events` is read as the log of what was written to it: `p:GROUP/EVENT
 *   TARGET ARGS` defines, `-:GROUP/EVENT` removes (trace_kprobe.c create_or_delete
 *   _trace_kprobe); a truncating open empties it (probes_open).
 * - An event prints into each instance whose `set_event` enables it
 *   (`GROUP:EVENT`, `!GROUP:EVENT` disables: trace_events.c ftrace_set_clr_event).
 * - The line: trace_print_context() (kernel/trace/trace_output.c@v5.10:
 *   "%16s-%-7d ", "[%03d] ", the irq-info flags, " %5lu.%06lu: ") and
 *   print_kprobe_event() (kernel/trace/trace_kprobe.c: "%s: (", %pS of the probed
 *   address "privcmd_ioctl+0x24e/0xbe0 [xen_privcmd]", ")", then " %s=" and each
 *   argument's type format, trace_probe.c DEFINE_BASIC_PRINT_TYPE_FUNC: x* "0x%x" /
 *   "0x%Lx", u* "%u" / "%Lu", s* "%d" / "%Ld"; the string `$comm` fetches,
 *   "\"%s\"": trace_probe.c@v5.10 PRINT_TYPE_FUNC_NAME(string), and parse_probe_vars's
 *   FETCH_OP_COMM, the task's comm when the event fires). The flags column is printed as
 *   "d...." (irqs off in the int3 handler); the watch does not read it.
 * - Fetch arguments: %si, %dx (entry), %ax (after the hypercall), +uOFF(...)
 *   user-memory dereferences, nested, and at the result probes %sp and +OFF(...)
 *   kernel-memory ones (kprobetrace.rst "FETCHARGS"). Of the kernel's memory the mock
 *   models only privcmd_ioctl's own copy of the caller's struct in its stack frame:
 *   struct privcmd_hypercall at request(%rsp), struct privcmd_dm_op at
 *   dm_domain(%rsp), the offsets `request=` and `dm_domain=` of
 *   XENPROBE_MOCK_PRIVCMD_TEXT (where the modelled module's code loads the
 *   hypercall's registers from: xenprobe/watch/probe_point.py request_slot,
 *   dm_domain_slot); a kernel read elsewhere is taken as a fault. A dereference
 *   that faults makes the kernel skip storing the field (trace_probe_tmpl.h
 *   process_fetch_insn_bottom returns early), leaving whatever the ring buffer held;
 *   the mock prints 0 there.
 * - The buffer is bounded: the instance's trace_pipe is a FIFO (its capacity is the
 *   mock's buffer); an event that finds it full, or no reader, is lost and counted
 *   in per_cpu/cpuN/stats "overrun:" (tracing_stats_read's format), as the kernel
 *   counts events a full ring buffer overwrote.
 * - mkdir instances/NAME creates the instance's files; rmdir removes them
 *   (trace.c instance_mkdir/instance_rmdir).
 * - An instance whose `tracing_on` holds 0 records nothing, and counts nothing lost
 *   (kernel/trace/trace.c@v6.12 rb_simple_write -> tracer_tracing_off ->
 *   ring_buffer_record_off; ring_buffer.c ring_buffer_lock_reserve returns NULL
 *   while record_disabled is set).
 * - A probe on a function's first instruction, when that instruction is ENDBR64
 *   (`endbr=1` in XENPROBE_MOCK_PRIVCMD_TEXT: the modelled module's privcmd_ioctl
 *   opens with f3 0f 1e fa), is put 4 bytes in, and its lines name +0x4: the kernel
 *   moves it past the ENDBR (arch/x86/kernel/kprobes/core.c@v6.12
 *   arch_adjust_kprobe_addr: when the function's first 4 bytes are ENDBR, a probe
 *   asked for at offset 0 or 4 is a function-entry probe and goes to offset 4; in
 *   kernels built with CONFIG_X86_KERNEL_IBT; %pS then prints the probe's address).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mock.h"

#define MAX_PROBES 64
#define EVENTS_MAX (64 * 1024)

struct probe {
    char group[64], name[64];
    uint64_t offset;
    char args[512];
};

/* The registers a probe reads, and at a result probe the part of privcmd_ioctl's
 * stack frame the mock models: privcmd's own copy of the caller's struct, at
 * sp + frame_at. */
struct regs {
    uint64_t si, dx, ax, sp;
    int has_entry, has_ax;
    const uint8_t *frame;
    uint64_t frame_at;
    size_t frame_len;
};

/* A kernel-memory read at a probe: within the modelled copy, else a fault (the
 * mock knows no other byte of the kernel). */
static int kread(const struct regs *r, uint64_t *v, uint64_t addr, size_t size)
{
    uint64_t lo = r->sp + r->frame_at;

    if (!r->frame || addr < lo || addr - lo > r->frame_len || size > r->frame_len - (addr - lo))
        return -1;
    memcpy(v, r->frame + (addr - lo), size);
    return 0;
}

static const char *tracefs_root(void)
{
    const char *r = getenv("XENPROBE_MOCK_TRACEFS");
    return r && *r ? r : NULL;
}

/* "hypercall=0x24e dm_op=0xb0d size=0xbe0": the modelled module's code layout. */
static uint64_t text_value(const char *key)
{
    const char *t = getenv("XENPROBE_MOCK_PRIVCMD_TEXT");
    size_t n = strlen(key);

    while (t && *t) {
        while (*t == ' ')
            t++;
        if (!strncmp(t, key, n) && t[n] == '=')
            return strtoull(t + n + 1, NULL, 0);
        t = strchr(t, ' ');
    }
    return (uint64_t)-1;
}

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = real_open_file(path, O_RDONLY | O_CLOEXEC, 0);
    ssize_t n, total = 0;

    if (fd < 0)
        return -1;
    while ((size_t)total < cap - 1 && (n = read(fd, buf + total, cap - 1 - total)) > 0)
        total += n;
    real_close_fd(fd);
    buf[total] = 0;
    return total;
}

/* The current definitions on privcmd_ioctl, applying the log of writes in order. */
static int load_probes(const char *root, struct probe *out)
{
    static __thread char buf[EVENTS_MAX];
    char path[4096];
    int n = 0;

    snprintf(path, sizeof(path), "%s/kprobe_events", root);
    if (read_file(path, buf, sizeof(buf)) < 0)
        return 0;
    char *save = NULL;

    for (char *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char kind = line[0], group[64], name[64], target[256];
        const char *rest;
        int used = 0;

        if ((kind != 'p' && kind != '-') || line[1] != ':')
            continue;
        if (sscanf(line + 2, "%63[^/ ]/%63s%n", group, name, &used) != 2)
            continue;
        if (kind == '-') {
            for (int i = 0; i < n; i++)
                if (!strcmp(out[i].group, group) && !strcmp(out[i].name, name)) {
                    memmove(&out[i], &out[i + 1], (size_t)(n - i - 1) * sizeof(*out));
                    n--;
                    break;
                }
            continue;
        }
        rest = line + 2 + used;
        if (sscanf(rest, " %255s%n", target, &used) != 1 || n == MAX_PROBES)
            continue;
        {
            const char *fn = strchr(target, ':') ? strchr(target, ':') + 1 : target;
            const char *plus = strchr(fn, '+');
            if (strncmp(fn, "privcmd_ioctl", 13) || (fn[13] && fn[13] != '+'))
                continue;
            snprintf(out[n].group, sizeof(out[n].group), "%s", group);
            snprintf(out[n].name, sizeof(out[n].name), "%s", name);
            out[n].offset = plus ? strtoull(plus + 1, NULL, 0) : 0;
            snprintf(out[n].args, sizeof(out[n].args), "%s", rest + used);
            n++;
        }
    }
    return n;
}

static int enabled_in(const char *dir, const struct probe *p)
{
    char path[4096], buf[8192], want[160];
    int on = 0;

    snprintf(path, sizeof(path), "%s/set_event", dir);
    if (read_file(path, buf, sizeof(buf)) < 0)
        return 0;
    char *save = NULL;

    snprintf(want, sizeof(want), "%s:%s", p->group, p->name);
    for (char *line = strtok_r(buf, "\n \t", &save); line;
         line = strtok_r(NULL, "\n \t", &save)) {
        if (line[0] == '!' && !strcmp(line + 1, want))
            on = 0;
        else if (!strcmp(line, want))
            on = 1;
    }
    return on;
}

/* One fetch argument's value: a register, or +[u]OFF(FETCHARG) read from memory. */
static int fetch(const char **s, const struct regs *r, size_t size, uint64_t *v)
{
    const char *p = *s;

    if (*p == '%') {
        if (!strncmp(p, "%si", 3) && r->has_entry)
            *v = r->si;
        else if (!strncmp(p, "%dx", 3) && r->has_entry)
            *v = r->dx;
        else if (!strncmp(p, "%ax", 3) && r->has_ax)
            *v = r->ax;
        else if (!strncmp(p, "%sp", 3) && r->frame)
            *v = r->sp;
        else
            *v = 0;
        *s = p + 3;
        if (size < 8)
            *v &= (1ull << (size * 8)) - 1;
        return 0;
    }
    if (*p == '+' || *p == '-') {
        int neg = *p == '-', user = 0;
        char *end;
        uint64_t off, addr, base = 0;
        int bad;

        p++;
        if (*p == 'u') {
            user = 1;
            p++;
        }
        off = strtoull(p, &end, 0);
        if (*end != '(')
            return -1;
        p = end + 1;
        bad = fetch(&p, r, 8, &base);
        if (bad < 0 || *p != ')')
            return -1;
        *s = p + 1;
        *v = 0;
        addr = neg ? base - off : base + off;
        if (bad || (user ? uread(v, addr, size) : kread(r, v, addr, size)))
            return 1;  /* faulted: the field keeps what the buffer held */
        return 0;
    }
    return -1;
}

static int format_args(const char *args, const struct regs *r, const char *comm,
                       char *out, size_t cap)
{
    size_t len = 0;
    const char *p = args;

    while (*p) {
        char name[64], type[8] = "x64";
        const char *eq, *colon;
        uint64_t v = 0;
        size_t size;
        int bits, n;

        while (*p == ' ')
            p++;
        if (!*p)
            break;
        eq = strchr(p, '=');
        if (!eq || eq - p >= (long)sizeof(name))
            return -1;
        memcpy(name, p, (size_t)(eq - p));
        name[eq - p] = 0;
        p = eq + 1;
        if (!strncmp(p, "$comm", 5) && (p[5] == ' ' || !p[5])) {
            p += 5;
            n = snprintf(out + len, cap - len, " %s=\"%s\"", name, comm);
            if (n < 0 || (size_t)n >= cap - len)
                return -1;
            len += (size_t)n;
            continue;
        }
        colon = strpbrk(p, ": ");
        if (colon && *colon == ':')
            sscanf(colon + 1, "%7[a-z0-9]", type);
        bits = atoi(type + 1);
        if (bits != 8 && bits != 16 && bits != 32 && bits != 64)
            return -1;
        size = (size_t)bits / 8;
        if (fetch(&p, r, size, &v) < 0)
            return -1;
        p = strchr(p, ' ') ? strchr(p, ' ') : p + strlen(p);
        if (type[0] == 'x')
            n = snprintf(out + len, cap - len, " %s=0x%llx", name, (unsigned long long)v);
        else if (type[0] == 's') {
            int64_t sv = bits == 64 ? (int64_t)v
                       : (int64_t)(v << (64 - bits)) >> (64 - bits);
            n = snprintf(out + len, cap - len, " %s=%lld", name, (long long)sv);
        } else
            n = snprintf(out + len, cap - len, " %s=%llu", name, (unsigned long long)v);
        if (n < 0 || (size_t)n >= cap - len)
            return -1;
        len += (size_t)n;
    }
    return 0;
}

static const char STATS[] =
    "entries: 0\noverrun: %lu\ncommit overrun: 0\nbytes: 0\n"
    "oldest event ts: %5lu.%06lu\nnow ts: %5lu.%06lu\ndropped events: 0\n"
    "read events: 0\n";

/* The kernel formats stats at each read (trace.c tracing_stats_read), so no reader
 * ever finds it empty or half-written: the mock writes a new file beside it and renames
 * it into place, under a lock on the CPU's directory that counting and removal share. */
static void write_stats(const char *cpudir, unsigned long overrun)
{
    char buf[512], tmp[4096 + 32], path[4096 + 16];
    struct timespec ts;
    int fd, n;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    n = snprintf(buf, sizeof(buf), STATS, overrun, (unsigned long)ts.tv_sec,
                 (unsigned long)(ts.tv_nsec / 1000), (unsigned long)ts.tv_sec,
                 (unsigned long)(ts.tv_nsec / 1000));
    snprintf(tmp, sizeof(tmp), "%s/.stats.%d", cpudir, (int)getpid());
    snprintf(path, sizeof(path), "%s/stats", cpudir);
    fd = real_open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, buf, (size_t)n) == n) {
        real_close_fd(fd);
        if (rename(tmp, path) == 0)
            return;
    } else {
        real_close_fd(fd);
    }
    unlink(tmp);
}

static int lock_dir(const char *dir)
{
    int fd = real_open_file(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);

    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        real_close_fd(fd);
        return -1;
    }
    return fd;
}

static void count_overrun(const char *dir, int cpu)
{
    char cpudir[4096], path[4096 + 16], buf[512];
    unsigned long overrun;
    const char *at;
    ssize_t n;
    int lock;

    snprintf(cpudir, sizeof(cpudir), "%s/per_cpu/cpu%d", dir, cpu);
    if ((lock = lock_dir(cpudir)) < 0)
        return;
    snprintf(path, sizeof(path), "%s/stats", cpudir);
    /* Gone (the instance removed while this waited for the lock): nothing to count. */
    n = read_file(path, buf, sizeof(buf));
    if (n > 0 && (at = strstr(buf, "\noverrun: "))) {
        overrun = strtoul(at + 10, NULL, 10);
        write_stats(cpudir, overrun + 1);
    }
    real_close_fd(lock);
}

static int recording(const char *dir)
{
    char path[4096 + 16], buf[8];

    snprintf(path, sizeof(path), "%s/tracing_on", dir);
    return read_file(path, buf, sizeof(buf)) <= 0 || buf[0] != '0';
}

static void print_into(const char *dir, const char *line, size_t len, int cpu)
{
    char path[4096];
    int fd;

    if (!recording(dir))
        return;

    snprintf(path, sizeof(path), "%s/trace_pipe", dir);
    fd = real_open_file(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
    /* One write of at most PIPE_BUF bytes: whole or not at all, never interleaved. */
    if (fd < 0 || write(fd, line, len) != (ssize_t)len)
        count_overrun(dir, cpu);
    if (fd >= 0)
        real_close_fd(fd);
}

static void fire(uint64_t offset, const struct regs *r)
{
    const char *root = tracefs_root();
    struct probe probes[MAX_PROBES];
    char comm[17] = "", head[128], args[1024], line[1280], path[4096];
    struct timespec ts;
    uint64_t size = text_value("size");
    int endbr = text_value("endbr") == 1;
    int n, cpu, len;
    DIR *d;
    struct dirent *e;

    if (!root || (n = load_probes(root, probes)) == 0)
        return;
    prctl(PR_GET_NAME, comm, 0, 0, 0);
    cpu = sched_getcpu();
    if (cpu < 0)
        cpu = 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(head, sizeof(head), "%16s-%-7ld [%03d] d.... %5lu.%06lu: ", comm,
             (long)syscall(SYS_gettid), cpu, (unsigned long)ts.tv_sec,
             (unsigned long)(ts.tv_nsec / 1000));
    for (int i = 0; i < n; i++) {
        /* Where the kernel put the probe: past ENDBR64 for one on the entry. */
        uint64_t at = probes[i].offset;

        if (endbr && (at == 0 || at == 4))
            at = 4;
        if (at != (offset == 0 && endbr ? 4 : offset))
            continue;
        if (format_args(probes[i].args, r, comm, args, sizeof(args)) < 0)
            continue;  /* a definition the mock does not model */
        len = snprintf(line, sizeof(line),
                       "%s%s: (privcmd_ioctl+0x%llx/0x%llx [xen_privcmd])%s\n", head,
                       probes[i].name, (unsigned long long)at,
                       (unsigned long long)size, args);
        if (len < 0 || (size_t)len >= sizeof(line))
            continue;
        if (enabled_in(root, &probes[i]))
            print_into(root, line, (size_t)len, cpu);
        snprintf(path, sizeof(path), "%s/instances", root);
        if (!(d = opendir(path)))
            continue;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/instances/%s", root, e->d_name);
            if (enabled_in(path, &probes[i]))
                print_into(path, line, (size_t)len, cpu);
        }
        closedir(d);
    }
}

void tracing_entry(uint32_t cmd, uint64_t arg)
{
    struct regs r = { .si = cmd, .dx = arg, .has_entry = 1 };

    fire(0, &r);
}

/* %rsp at the result probes: an address in the kernel's vmalloc'ed stacks
 * (Documentation/arch/x86/x86_64/mm.rst: vmalloc space from ffffc90000000000). */
#define MODELLED_SP 0xffffc90000a07d28ull

void tracing_result(int dm, int64_t rax, const void *copy, size_t len)
{
    struct regs r = { .ax = (uint64_t)rax, .has_ax = 1, .sp = MODELLED_SP };
    uint64_t at = text_value(dm ? "dm_op" : "hypercall");
    uint64_t frame_at = text_value(dm ? "dm_domain" : "request");

    if (frame_at != (uint64_t)-1) {
        r.frame = copy;
        r.frame_at = frame_at;
        r.frame_len = len;
    }

    if (at != (uint64_t)-1)
        fire(at, &r);
}

/* ---- instances: mkdir/rmdir under <tracefs>/instances/ ---- */

static int (*r_mkdir)(const char *, mode_t);
static int (*r_rmdir)(const char *);

/* Whether path is <root>/instances/NAME. */
static int is_instance(const char *path)
{
    const char *root = tracefs_root();
    size_t n;

    if (!root)
        return 0;
    n = strlen(root);
    return !strncmp(path, root, n) && !strncmp(path + n, "/instances/", 11)
           && path[n + 11] && !strchr(path + n + 11, '/');
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = real_open_file(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, text, strlen(text)) < 0)
            errno = 0;
        real_close_fd(fd);
    }
}

/* The FIFO stays open for writing in the process that made the instance, so its
 * reader sees EAGAIN when it is empty (as trace_pipe gives), never end-of-file. */
static int keep_fd[16] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};

static void populate(const char *dir)
{
    char path[4096];
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);

    put(dir, "trace_clock", "[local] global counter uptime perf mono mono_raw boot\n");
    put(dir, "buffer_size_kb", "1408\n");
    put(dir, "set_event", "");
    put(dir, "tracing_on", "1\n");
    snprintf(path, sizeof(path), "%s/trace_pipe", dir);
    mkfifo(path, 0600);
    for (int i = 0; i < 16; i++)
        if (keep_fd[i] < 0) {
            keep_fd[i] = real_open_file(path, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
            break;
        }
    snprintf(path, sizeof(path), "%s/per_cpu", dir);
    r_mkdir(path, 0755);
    for (long c = 0; c < (ncpu > 0 ? ncpu : 1); c++) {
        snprintf(path, sizeof(path), "%s/per_cpu/cpu%ld", dir, c);
        r_mkdir(path, 0755);
        write_stats(path, 0);
    }
}

static void depopulate(const char *dir)
{
    static const char *files[] = {"trace_clock", "buffer_size_kb", "set_event",
                                  "tracing_on", "trace_pipe"};
    char path[4096];
    struct stat st, kept;

    snprintf(path, sizeof(path), "%s/trace_pipe", dir);
    if (stat(path, &st) == 0)
        for (int i = 0; i < 16; i++)
            if (keep_fd[i] >= 0 && fstat(keep_fd[i], &kept) == 0
                && kept.st_ino == st.st_ino && kept.st_dev == st.st_dev) {
                real_close_fd(keep_fd[i]);
                keep_fd[i] = -1;
            }
    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    for (long c = 0; c < 4096; c++) {
        char stats[4096 + 16];
        int lock, gone;

        snprintf(path, sizeof(path), "%s/per_cpu/cpu%ld", dir, c);
        lock = lock_dir(path);
        snprintf(stats, sizeof(stats), "%s/stats", path);
        gone = unlink(stats) < 0;
        if (!gone)
            r_rmdir(path);
        if (lock >= 0)
            real_close_fd(lock);
        if (gone)
            break;
    }
    snprintf(path, sizeof(path), "%s/per_cpu", dir);
    r_rmdir(path);
}

int mkdir(const char *path, mode_t mode)
{
    int r;

    if (!r_mkdir)
        r_mkdir = (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
    if (!r_rmdir)
        r_rmdir = (int (*)(const char *))dlsym(RTLD_NEXT, "rmdir");
    r = r_mkdir(path, mode);
    if (r == 0 && is_instance(path))
        populate(path);
    return r;
}

int rmdir(const char *path)
{
    if (!r_mkdir)
        r_mkdir = (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
    if (!r_rmdir)
        r_rmdir = (int (*)(const char *))dlsym(RTLD_NEXT, "rmdir");
    if (is_instance(path))
        depopulate(path);
    return r_rmdir(path);
}
