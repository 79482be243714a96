/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libc interposition: the mock sits *below* libc's public entry points so
 * that xenprobe's native code and an unmodified libxenctrl reach it.
 *
 * Device paths become memfds tracked in an fd table; ioctl/syscall on those
 * fds go to the emulated privcmd driver, then through glibc's convention
 * (kernel results in [-4095,-1] become -1/errno).  Everything else is
 * forwarded to the next definition (glibc) untouched.
 *
 * Callers using dlsym on a libc handle (ctypes.CDLL("libc.so.6")) bypass
 * LD_PRELOAD; they must resolve through the global scope (CDLL(None)).
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mock.h"

/* ---- the next definitions (glibc), resolved lazily ---- */
static int   (*r_open)(const char *, int, ...);
static int   (*r_open64)(const char *, int, ...);
static int   (*r_openat)(int, const char *, int, ...);
static int   (*r_openat64)(int, const char *, int, ...);
static int   (*r___open_2)(const char *, int);
static int   (*r___open64_2)(const char *, int);
static int   (*r___openat_2)(int, const char *, int);
static int   (*r___openat64_2)(int, const char *, int);
static FILE *(*r_fopen)(const char *, const char *);
static FILE *(*r_fopen64)(const char *, const char *);
static int   (*r_ioctl)(int, unsigned long, ...);
static int   (*r_close)(int);
static long  (*r_syscall)(long, ...);
static int   (*r_dup)(int);
static int   (*r_dup2)(int, int);
static int   (*r_dup3)(int, int, int);
static int   (*r_fcntl)(int, int, ...);
static int   (*r_fcntl64)(int, int, ...);

#define REAL(name) ((__typeof__(r_##name))real_sym((void **)&r_##name, #name))

/* ---- the fd table ---- */
struct fdent {
    int fd;
    struct mock_file *mf;
};

static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fdent *tab;
static size_t ntab, captab;

static void mf_unref(struct mock_file *mf)   /* tab_lock held */
{
    if (--mf->refs == 0)
        free(mf);
}

static void tab_remove_at(size_t i)          /* tab_lock held */
{
    mf_unref(tab[i].mf);
    tab[i] = tab[--ntab];
    __atomic_store_n(&ntab, ntab, __ATOMIC_RELEASE);
}

static ssize_t tab_find(int fd)              /* tab_lock held */
{
    for (size_t i = 0; i < ntab; i++)
        if (tab[i].fd == fd)
            return (ssize_t)i;
    return -1;
}

static int tab_add(int fd, struct mock_file *mf)
{
    int rc = 0;
    ssize_t i;

    pthread_mutex_lock(&tab_lock);
    if ((i = tab_find(fd)) >= 0)             /* stale: closed behind our back */
        tab_remove_at((size_t)i);
    if (ntab == captab) {
        size_t nc = captab ? captab * 2 : 16;
        struct fdent *nt = realloc(tab, nc * sizeof(*nt));
        if (!nt) {
            rc = -1;
            goto out;
        }
        tab = nt;
        captab = nc;
    }
    mf->refs++;
    tab[ntab].fd = fd;
    tab[ntab].mf = mf;
    __atomic_store_n(&ntab, ntab + 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&tab_lock);
    return rc;
}

/* The mock file behind fd with a reference held, or NULL.  An entry whose
 * fd no longer refers to our memfd (closed via close_range, a raw syscall...)
 * is dropped here, so a reused fd number is never mistaken for privcmd. */
static struct mock_file *mf_get(int fd)
{
    struct mock_file *mf = NULL;
    ssize_t i;

    if (__atomic_load_n(&ntab, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    pthread_mutex_lock(&tab_lock);
    if ((i = tab_find(fd)) >= 0) {
        struct stat st;
        int saved = errno;
        mf = tab[i].mf;
        if (fstat(fd, &st) || (uint64_t)st.st_dev != mf->dev
            || (uint64_t)st.st_ino != mf->ino) {
            tab_remove_at((size_t)i);
            mf = NULL;
        } else {
            mf->refs++;
        }
        errno = saved;
    }
    pthread_mutex_unlock(&tab_lock);
    return mf;
}

static void mf_put(struct mock_file *mf)
{
    pthread_mutex_lock(&tab_lock);
    mf_unref(mf);
    pthread_mutex_unlock(&tab_lock);
}

/* Removes fd from the table, returning its file with a reference held. */
static struct mock_file *mf_take(int fd)
{
    struct mock_file *mf = NULL;
    ssize_t i;

    if (__atomic_load_n(&ntab, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    pthread_mutex_lock(&tab_lock);
    if ((i = tab_find(fd)) >= 0) {
        mf = tab[i].mf;
        mf->refs++;
        tab_remove_at((size_t)i);
    }
    pthread_mutex_unlock(&tab_lock);
    return mf;
}

/* After a successful dup of `oldfd` to `newfd`: a dup shares the open file
 * description, hence the restriction state, as with the real driver. */
static void track_dup(int oldfd, int newfd)
{
    struct mock_file *gone = mf_take(newfd);  /* dup2 closed what was there */
    struct mock_file *mf;

    if (gone)
        mf_put(gone);
    if ((mf = mf_get(oldfd))) {
        tab_add(newfd, mf);
        mf_put(mf);
    }
}

/* ---- emulated paths ---- */
enum { P_NONE, P_PRIVCMD, P_HYPERCALL, P_SERVED, P_XENBUS };

static int classify(const char *path)
{
    static const char *const served[] = {
        "/proc/xen/capabilities",
        "/sys/hypervisor/type",
        "/sys/hypervisor/version/major",
        "/sys/hypervisor/version/minor",
        "/sys/hypervisor/version/extra",
        "/sys/hypervisor/properties/capabilities",
        "/sys/hypervisor/guest_type",             /* torvalds/linux@4a4c29c96dde */
        "/sys/hypervisor/properties/changeset",
        "/sys/devices/system/cpu/possible",       /* census.c's dom0 vCPUs */
        "/sys/devices/system/cpu/online",
    };

    if (!path || path[0] != '/')
        return P_NONE;
    if (!strcmp(path, "/dev/xen/privcmd") || !strcmp(path, "/proc/xen/privcmd"))
        return P_PRIVCMD;
    if (!strcmp(path, "/dev/xen/hypercall"))
        return P_HYPERCALL;
    if (!strcmp(path, "/dev/xen/xenbus"))
        return P_XENBUS;
    for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++)
        if (!strcmp(path, served[i]))
            return P_SERVED;
    return P_NONE;
}

/* Contents of a served file, or -ENOENT when the scenario's host has none.
 * The sysfs texts follow drivers/xen/sys-hypervisor.c (minor is
 * `version & 0xff` there); /proc/xen/capabilities follows xenfs. */
static int served_content(const struct scenario *s, const char *path,
                          char *buf, size_t cap)
{
    int version = (int)((s->major << 16) | s->minor);

    if (!strncmp(path, "/proc/xen/", 10)) {
        if (s->device == DEVICE_ABSENT)
            return -ENOENT;
        return snprintf(buf, cap, "%s", s->role == ROLE_DOM0 ? "control_d\n" : "");
    }
    if (!strncmp(path, "/sys/devices/system/cpu/", 24))
        return census_sysfs(path, buf, cap);
    if (!s->sys_hypervisor)
        return -ENOENT;
    if (!strcmp(path, "/sys/hypervisor/properties/changeset"))
        return census_sysfs(path, buf, cap);
    if (!strcmp(path, "/sys/hypervisor/guest_type")) {
        /* A census scenario's dom0 type; else the scenario's (guest_type directive). */
        int n = census_sysfs(path, buf, cap);
        return n != -ENOENT ? n : snprintf(buf, cap, "%s\n", s->guest_type);
    }
    if (!strcmp(path, "/sys/hypervisor/type"))
        return snprintf(buf, cap, "xen\n");
    if (!strcmp(path, "/sys/hypervisor/version/major"))
        return snprintf(buf, cap, "%d\n", version >> 16);
    if (!strcmp(path, "/sys/hypervisor/version/minor"))
        return snprintf(buf, cap, "%d\n", version & 0xff);
    if (!strcmp(path, "/sys/hypervisor/version/extra"))
        return snprintf(buf, cap, "%s\n", s->extraversion);
    return snprintf(buf, cap, "%s\n", s->capabilities);
}

/* The privcmd memfd is named after the mock host (XENPROBE_MOCK_HOST, set by
 * xenprobe/mock/launcher.py), so that a consumer scan on one mock host can tell its own
 * processes from those of another mock host on the same machine. Only [0-9A-Za-z-]
 * of the id are kept. */
static int new_privcmd_memfd(int flags)
{
    char name[64] = "xenprobe-mock-privcmd";
    const char *id = getenv("XENPROBE_MOCK_HOST");
    size_t n = strlen(name);

    if (id && *id) {
        name[n++] = ':';
        for (; *id && n < sizeof(name) - 1; id++)
            if ((*id >= '0' && *id <= '9') || (*id >= 'a' && *id <= 'z') ||
                (*id >= 'A' && *id <= 'Z') || *id == '-')
                name[n++] = *id;
        name[n] = '\0';
    }
    return memfd_create(name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
}

static int new_memfd(const char *name, int flags)
{
    return memfd_create(name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
}

static int open_privcmd(const char *path, int flags)
{
    struct mock_file *mf = calloc(1, sizeof(*mf));
    struct stat st;
    int fd;

    if (!mf)
        return -ENOMEM;
    fd = new_privcmd_memfd(flags);
    if (fd < 0 || fstat(fd, &st)) {
        int e = errno;
        if (fd >= 0)
            REAL(close)(fd);
        free(mf);
        return -e;
    }
    mf->path = !strcmp(path, "/dev/xen/privcmd") ? "/dev/xen/privcmd" : "/proc/xen/privcmd";
    mf->restrict_domid = DOMID_INVALID;      /* privcmd_open(): unrestricted */
    mf->dev = (uint64_t)st.st_dev;
    mf->ino = (uint64_t)st.st_ino;
    if (tab_add(fd, mf)) {
        REAL(close)(fd);
        free(mf);
        return -ENOMEM;
    }
    return fd;
}

static int open_served(const struct scenario *s, const char *path, int flags)
{
    char buf[1100];
    int n = served_content(s, path, buf, sizeof(buf)), fd;

    if (n < 0)
        return n;
    if ((flags & O_ACCMODE) != O_RDONLY)     /* read-only files */
        return -EACCES;
    fd = new_memfd("xenprobe-mock-file", flags);
    if (fd < 0)
        return -errno;
    if (write(fd, buf, (size_t)n) != n || lseek(fd, 0, SEEK_SET) != 0) {
        int e = errno;
        REAL(close)(fd);
        return -e;
    }
    return fd;
}

/* Returns 0 if `path` is not ours; otherwise 1 with *ret/errno set. */
static int mock_open(const char *path, int flags, int *ret)
{
    int kind = classify(path);
    struct scenario *s;
    struct jbuf j;
    int fd;

    if (kind == P_NONE)
        return 0;
    if (kind == P_HYPERCALL) {
        /* No buffer device: libxencall then uses anonymous MAP_LOCKED
         * memory, which the mock reads directly. */
        fd = -ENOENT;
    } else if (!(s = scenario_get())) {
        fd = -EIO;
    } else if (kind == P_SERVED) {
        fd = open_served(s, path, flags);
    } else if (kind == P_XENBUS) {
        fd = xenstore_open(flags);           /* xenstore.c */
    } else if (s->device == DEVICE_ABSENT) {
        fd = -ENOENT;
    } else if (s->device == DEVICE_EACCES) {
        fd = -EACCES;
    } else {
        fd = open_privcmd(path, flags);
    }

    jb_begin(&j, "open", log_next_seq());
    jb_str(&j, "path", path);
    jb_i64(&j, "flags", flags);
    jb_i64(&j, "returned", fd < 0 ? -1 : fd);
    jb_i64(&j, "errno", fd < 0 ? -fd : 0);
    jb_finish(&j);

    if (fd < 0) {
        errno = -fd;
        *ret = -1;
    } else {
        *ret = fd;
    }
    return 1;
}

/* open(2) reads its mode argument only when one is required. */
#define NEEDS_MODE(f) (((f) & O_CREAT) || ((f) & O_TMPFILE) == O_TMPFILE)
#define GET_MODE(flags, last) ({ mode_t m_ = 0; if (NEEDS_MODE(flags)) { \
        va_list ap_; va_start(ap_, last); m_ = va_arg(ap_, mode_t); va_end(ap_); } m_; })

int open(const char *path, int flags, ...)
{
    mode_t mode = GET_MODE(flags, flags);
    int r;
    if (mock_open(path, flags, &r))
        return r;
    return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = GET_MODE(flags, flags);
    int r;
    if (mock_open(path, flags, &r))
        return r;
    return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = GET_MODE(flags, flags);
    int r;
    if (mock_open(path, flags, &r))          /* only absolute paths match */
        return r;
    return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = GET_MODE(flags, flags);
    int r;
    if (mock_open(path, flags, &r))
        return r;
    return REAL(openat64)(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE entry points (open without a mode argument). */
int __open_2(const char *path, int flags)
{
    int r;
    if (mock_open(path, flags, &r))
        return r;
    return REAL(__open_2)(path, flags);
}

int __open64_2(const char *path, int flags)
{
    int r;
    if (mock_open(path, flags, &r))
        return r;
    return REAL(__open64_2)(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    int r;
    if (mock_open(path, flags, &r))
        return r;
    return REAL(__openat_2)(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
    int r;
    if (mock_open(path, flags, &r))
        return r;
    return REAL(__openat64_2)(dirfd, path, flags);
}

/* glibc's fopen opens through an internal, non-interposable symbol. */
static FILE *mock_fopen(const char *path, const char *mode, int *handled)
{
    int flags = strchr(mode, '+') ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY;
    int fd;
    FILE *f;

    if (mode[0] != 'r')
        flags |= O_CREAT | (mode[0] == 'w' ? O_TRUNC : O_APPEND);
    if (strchr(mode, 'e'))
        flags |= O_CLOEXEC;
    if (!(*handled = mock_open(path, flags, &fd)) || fd < 0)
        return NULL;
    if (!(f = fdopen(fd, mode))) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

FILE *fopen(const char *path, const char *mode)
{
    int handled;
    FILE *f = mock_fopen(path, mode, &handled);
    return handled ? f : REAL(fopen)(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    int handled;
    FILE *f = mock_fopen(path, mode, &handled);
    return handled ? f : REAL(fopen64)(path, mode);
}

/* ---- ioctl ---- */

/* Runs the driver and applies the libc convention: ioctl() returns an int,
 * syscall() a long; both turn [-4095,-1] into -1 with errno. */
static long mock_ioctl(struct mock_file *mf, int fd, unsigned long request,
                       uint64_t arg, int via)
{
    struct jbuf j;
    /* The kernel's ioctl takes `unsigned int cmd`. */
    long k = privcmd_ioctl(mf, (uint32_t)request, arg, via, &j);
    int err = (unsigned long)k > -4096UL ? (int)-k : 0;
    long ret = err ? -1 : via == VIA_IOCTL ? (long)(int)k : k;

    jb_i64(&j, "fd", fd);
    jb_str(&j, "path", mf->path);
    jb_u64(&j, "cmd", (uint32_t)request);
    jb_str(&j, "via", via_name(via));
    jb_i64(&j, "kernel_returned", k);
    jb_i64(&j, "returned", ret);
    jb_i64(&j, "errno", err);
    jb_finish(&j);
    mf_put(mf);
    if (err)
        errno = err;
    return ret;
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    void *arg;
    struct mock_file *mf;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);
    if ((mf = mf_get(fd)))
        return (int)mock_ioctl(mf, fd, request, (uint64_t)(uintptr_t)arg, VIA_IOCTL);
    return REAL(ioctl)(fd, request, arg);
}

/* ---- close and dup ---- */
int close(int fd)
{
    struct mock_file *mf = mf_take(fd);
    int r = REAL(close)(fd);

    if (mf) {
        int e = errno;
        struct jbuf j;
        jb_begin(&j, "close", log_next_seq());
        jb_str(&j, "path", mf->path);
        jb_i64(&j, "fd", fd);
        jb_i64(&j, "returned", r);
        jb_i64(&j, "errno", r < 0 ? e : 0);
        jb_finish(&j);
        mf_put(mf);
        errno = e;
    }
    return r;
}

int dup(int oldfd)
{
    int r = REAL(dup)(oldfd);
    if (r >= 0) {
        int e = errno;
        track_dup(oldfd, r);
        errno = e;
    }
    return r;
}

int dup2(int oldfd, int newfd)
{
    int r = REAL(dup2)(oldfd, newfd);
    if (r >= 0 && oldfd != newfd) {
        int e = errno;
        track_dup(oldfd, r);
        errno = e;
    }
    return r;
}

int dup3(int oldfd, int newfd, int flags)
{
    int r = REAL(dup3)(oldfd, newfd, flags);
    if (r >= 0) {
        int e = errno;
        track_dup(oldfd, r);
        errno = e;
    }
    return r;
}

static int after_fcntl(int fd, int cmd, int r)
{
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
        int e = errno;
        track_dup(fd, r);
        errno = e;
    }
    return r;
}

/* glibc forwards fcntl's third argument as a pointer-sized value too. */
int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    void *arg;
    va_start(ap, cmd);
    arg = va_arg(ap, void *);
    va_end(ap);
    return after_fcntl(fd, cmd, REAL(fcntl)(fd, cmd, arg));
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    void *arg;
    va_start(ap, cmd);
    arg = va_arg(ap, void *);
    va_end(ap);
    return after_fcntl(fd, cmd, REAL(fcntl64)(fd, cmd, arg));
}

/* ---- syscall(2) ---- */
long syscall(long nr, ...)
{
    va_list ap;
    long a[6];
    struct mock_file *mf;
    int r;

    va_start(ap, nr);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);

    switch (nr) {
    case SYS_ioctl:
        if ((mf = mf_get((int)a[0])))
            return mock_ioctl(mf, (int)a[0], (unsigned long)a[1], (uint64_t)a[2],
                              VIA_SYSCALL);
        break;
    case SYS_close:
        return close((int)a[0]);     /* keeps the fd table right */
    case SYS_open:
        if (mock_open((const char *)a[0], (int)a[1], &r))
            return r;
        break;
    case SYS_openat:
        if (mock_open((const char *)a[1], (int)a[2], &r))
            return r;
        break;
    }
    return REAL(syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* ---- fork safety: no lock may be held by a thread that fork() drops ---- */
static void before_fork(void)
{
    pthread_mutex_lock(&hv_lock);
    pthread_mutex_lock(&tab_lock);
}

static void after_fork(void)
{
    pthread_mutex_unlock(&tab_lock);
    pthread_mutex_unlock(&hv_lock);
}

__attribute__((constructor)) static void mock_init(void)
{
    pthread_atfork(before_fork, after_fork, after_fork);
}
