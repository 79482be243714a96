/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The read-only allow-list on libxenctrl's own path to privcmd.
 *
 * The libxc layer calls Debian's real libxenctrl, which does not go through
 * transport.c: its hypercalls leave libxencall (and its mapping and device-model
 * requests leave libxenforeignmemory and libxendevicemodel) as plain glibc ioctl()
 * calls. Each of those libraries reaches ioctl() through a relocation slot of its
 * own, a GOT entry the dynamic loader filled in with ioctl's address. After the
 * libraries are loaded, xp_guard_install() writes guard_ioctl()'s address into
 * those slots, so every hypercall they make goes through the transport's own
 * copy-check-issue routine (xp_issue, issue.h) and its allow-list (allowlist.c), and
 * anything else is refused with -1/EPERM before it reaches the device.
 *
 * What passes:
 *   IOCTL_PRIVCMD_HYPERCALL      if allowlist.c allows it (multicall: every entry;
 *                                sysctl/domctl: the cmd in the struct);
 *   IOCTL_PRIVCMD_UNIMPLEMENTED  libxenforeignmemory's probe at open, which the
 *                                kernel always fails;
 *   IOCTL_PRIVCMD_DM_OP, num 0   libxendevicemodel's probe at open, a no-op.
 * Every other request (the mmap ioctls, RESTRICT, DM_OP with buffers, anything
 * for evtchn or gntdev) is refused: libxenctrl's query functions need none.
 *
 * Only x86-64 (RELA relocations) with glibc's loader is supported; anything the
 * installer cannot read makes it fail, and the caller then does without libxc.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guard.h"
#include "issue.h"
#include "privcmd_abi.h"
#include "transport.h"

#if !defined(__x86_64__)
#error "guard.c reads x86-64 relocations (R_X86_64_*, RELA)"
#endif

#define IOCTL_PRIVCMD_DM_OP         0x00105005u
#define IOCTL_PRIVCMD_UNIMPLEMENTED 0x000050FFu


/* struct privcmd_dm_op: {domid_t dom; u16 num; const privcmd_dm_op_buf *ubufs;} */
struct dm_op {
    uint16_t dom;
    uint16_t num;
    uint32_t pad;
    uint64_t ubufs;
};
_Static_assert(sizeof(struct dm_op) == 16, "privcmd_dm_op is 16 bytes");

#define MAX_GUARDED 32 /* libraries in the closure; libxenctrl 4.17 has 8 */
#define MAX_SLOTS   64 /* ioctl slots over all of them; libxenctrl 4.17 has 5 */

/* Where the guarded libraries' ioctl() calls went before: set once, before the
 * first slot is pointed at the guard, and never changed afterwards. */
typedef int (*ioctl_fn)(int, unsigned long, ...);
static ioctl_fn real_ioctl;
static unsigned long refused_count;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

unsigned long xp_guard_refused(void)
{
    return __atomic_load_n(&refused_count, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ the guard */

static int refuse(void)
{
    __atomic_add_fetch(&refused_count, 1, __ATOMIC_RELAXED);
    errno = EPERM;
    return -1;
}

static int pass(int fd, unsigned int cmd, void *arg)
{
    ioctl_fn f = __atomic_load_n(&real_ioctl, __ATOMIC_ACQUIRE);
    return f(fd, cmd, arg);
}

static long send_real(int fd, struct privcmd_hypercall *hc)
{
    return pass(fd, IOCTL_PRIVCMD_HYPERCALL, hc);
}

/* The request is copied out of the library's memory once and goes through the
 * transport's own xp_issue (issue.h): the struct a multicall, sysctl or domctl points
 * to is copied into locked memory of its own, checked there, and the hypervisor is
 * handed the copy. Another thread cannot change what was checked.
 *
 * The copies are plain memcpy (xp_known_memory), not process_vm_readv: the request
 * is libxencall's own (on its stack) and its struct is in libxencall's hypercall
 * buffers, into which libxenctrl has already copied whatever its caller passed, so
 * any bad pointer has crashed in libxenctrl before it gets here. Three system calls
 * per request would buy nothing but time: a sweep makes two libxc requests a domain. */
static int guard_hypercall(int fd, const void *arg)
{
    struct privcmd_hypercall hc;
    long ret;
    int err, rc;

    if (xp_known_memory.in(&hc, (uint64_t)(uintptr_t)arg, sizeof(hc))) {
        errno = EFAULT;
        return -1;
    }
    rc = xp_issue(fd, &hc, send_real, &xp_known_memory,
                  (uintptr_t)__builtin_frame_address(0), &ret, &err);
    if (rc == XP_REFUSED)
        return refuse();
    if (rc) {
        errno = err;
        return -1;
    }
    if (ret == -1)
        errno = err;
    return (int)ret; /* the real ioctl() returned an int */
}

static int guard_ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    void *arg;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);
    /* The kernel's ioctl takes an unsigned int cmd: decide on what it will see. */
    switch ((unsigned int)request) {
    case IOCTL_PRIVCMD_HYPERCALL:
        return guard_hypercall(fd, arg);
    case IOCTL_PRIVCMD_UNIMPLEMENTED:
        /* libxenforeignmemory needs this to fail; it takes no argument. */
        return pass(fd, IOCTL_PRIVCMD_UNIMPLEMENTED, NULL);
    case IOCTL_PRIVCMD_DM_OP: {
        /* libxendevicemodel's open probe: no buffers, so no hypercall. */
        struct dm_op op;
        if (xp_known_memory.in(&op, (uint64_t)(uintptr_t)arg, sizeof(op))) {
            errno = EFAULT;
            return -1;
        }
        if (op.num != 0)
            return refuse();
        return pass(fd, IOCTL_PRIVCMD_DM_OP, &op);
    }
    default:
        return refuse();
    }
}

/* ------------------------------------------------------------------ loaded objects */

/* One loaded ELF object as dl_iterate_phdr shows it, with the parts of its dynamic
 * section the installer reads. Pointers stay valid while the object stays loaded:
 * the libraries we guard are held open by the caller's dlopen handle. */
struct object {
    const char *path;
    uintptr_t base;
    const ElfW(Phdr) *phdr;
    size_t phnum;
    const ElfW(Dyn) *dynamic;
    const char *soname;
    const char *strtab;
    const ElfW(Sym) *symtab;
    const ElfW(Rela) *rela[2]; /* DT_RELA and DT_JMPREL */
    size_t nrela[2];
    const char *unreadable;    /* why the installer cannot read its relocations */
};

struct objects {
    struct object *v;
    size_t n, cap;
    int nomem;
};

/* glibc rewrites the address-valued entries of a loaded object's dynamic section to
 * run-time addresses; a loader that does not leaves file addresses, which are below
 * the load base of any shared object. Accept both. */
static uintptr_t runtime(const struct object *o, ElfW(Addr) v)
{
    return v >= o->base ? v : o->base + v;
}

static void read_dynamic(struct object *o)
{
    ElfW(Addr) strtab = 0, symtab = 0, rela = 0, jmprel = 0;
    size_t relasz = 0, pltrelsz = 0, relaent = sizeof(ElfW(Rela)), soname = SIZE_MAX;
    ElfW(Sxword) pltrel = DT_RELA;

    for (const ElfW(Dyn) *d = o->dynamic; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_STRTAB:   strtab = d->d_un.d_ptr; break;
        case DT_SYMTAB:   symtab = d->d_un.d_ptr; break;
        case DT_RELA:     rela = d->d_un.d_ptr; break;
        case DT_RELASZ:   relasz = d->d_un.d_val; break;
        case DT_RELAENT:  relaent = d->d_un.d_val; break;
        case DT_JMPREL:   jmprel = d->d_un.d_ptr; break;
        case DT_PLTRELSZ: pltrelsz = d->d_un.d_val; break;
        case DT_PLTREL:   pltrel = (ElfW(Sxword))d->d_un.d_val; break;
        case DT_SONAME:   soname = d->d_un.d_val; break;
        case DT_REL:
            o->unreadable = "it has REL relocations, which x86-64 objects do not use";
            break;
        default:
            break;
        }
    }
    if (!strtab || !symtab) {
        o->unreadable = "its dynamic section has no symbol or string table";
        return;
    }
    if (relaent != sizeof(ElfW(Rela)) || pltrel != DT_RELA) {
        o->unreadable = "its relocation entries are not x86-64 RELA entries";
        return;
    }
    o->strtab = (const char *)runtime(o, strtab);
    o->symtab = (const ElfW(Sym) *)runtime(o, symtab);
    if (soname != SIZE_MAX)
        o->soname = o->strtab + soname;
    if (rela) {
        o->rela[0] = (const ElfW(Rela) *)runtime(o, rela);
        o->nrela[0] = relasz / sizeof(ElfW(Rela));
    }
    if (jmprel) {
        o->rela[1] = (const ElfW(Rela) *)runtime(o, jmprel);
        o->nrela[1] = pltrelsz / sizeof(ElfW(Rela));
    }
}

static int collect(struct dl_phdr_info *info, size_t size, void *data)
{
    struct objects *all = data;
    struct object o = {0};

    (void)size;
    o.path = info->dlpi_name;
    o.base = info->dlpi_addr;
    o.phdr = info->dlpi_phdr;
    o.phnum = info->dlpi_phnum;
    for (size_t i = 0; i < o.phnum; i++)
        if (o.phdr[i].p_type == PT_DYNAMIC)
            o.dynamic = (const ElfW(Dyn) *)(o.base + o.phdr[i].p_vaddr);
    if (!o.dynamic)
        return 0; /* nothing to resolve, nothing to guard (a static object) */
    read_dynamic(&o);
    if (all->n == all->cap) {
        size_t cap = all->cap ? 2 * all->cap : 256;
        struct object *v = realloc(all->v, cap * sizeof(*v));
        if (!v) {
            all->nomem = 1;
            return 1;
        }
        all->v = v;
        all->cap = cap;
    }
    all->v[all->n++] = o;
    return 0;
}

static int load_objects(struct objects *all, char *err, size_t errlen)
{
    memset(all, 0, sizeof(*all));
    dl_iterate_phdr(collect, all);
    if (all->nomem) {
        free(all->v);
        snprintf(err, errlen, "out of memory listing the loaded objects");
        return -1;
    }
    return 0;
}

static int same_name(const struct object *o, const char *soname)
{
    return o->soname && strcmp(o->soname, soname) == 0;
}

/* A run-time address inside one of the object's own segments. A lazily bound
 * JUMP_SLOT points there (at its PLT stub) until its first call. */
static int inside(const struct object *o, uintptr_t v)
{
    for (size_t i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *p = &o->phdr[i];
        if (p->p_type == PT_LOAD && v >= o->base + p->p_vaddr &&
            v < o->base + p->p_vaddr + p->p_memsz)
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ relocations */

struct slot {
    uintptr_t *where;
    const struct object *o;
};

/* Imports that would reach the device behind a GOT hook's back: another entry point
 * to the ioctl system call, a run-time lookup that could find ioctl() itself, code
 * loaded later (whose slots nobody patched), or another program (which has no guard).
 * None of the Debian 4.17 libraries imports any; if one ever does, the guard does not
 * install and the layer does without libxenctrl. */
static const char *const bypasses[] = {
    "syscall", "__ioctl", "__ioctl_time64",
    "dlsym", "dlvsym", "dlopen", "dlmopen",
    "execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve",
    "posix_spawn", "posix_spawnp", "system", "popen",
};

/* The object's relocations that bind the symbol ioctl: JUMP_SLOT (calls through the
 * PLT), GLOB_DAT (ioctl's address taken) and 64 (ioctl's address in data). */
static int find_slots(const struct object *o, struct slot *slots, size_t *n,
                      char *err, size_t errlen)
{
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < o->nrela[t]; i++) {
            const ElfW(Rela) *r = &o->rela[t][i];
            uint32_t type = ELF64_R_TYPE(r->r_info);
            uint32_t sym = ELF64_R_SYM(r->r_info);
            if (sym == 0)
                continue;
            const char *name = o->strtab + o->symtab[sym].st_name;
            for (size_t b = 0; b < sizeof(bypasses) / sizeof(bypasses[0]); b++) {
                if (strcmp(name, bypasses[b]) == 0) {
                    snprintf(err, errlen, "%s imports %s, which the guard cannot see "
                             "through", o->soname, name);
                    return -1;
                }
            }
            if (strcmp(name, "ioctl") != 0)
                continue;
            if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT &&
                !(type == R_X86_64_64 && r->r_addend == 0)) {
                snprintf(err, errlen, "%s binds ioctl with relocation type %u, which the "
                         "guard does not handle", o->soname, type);
                return -1;
            }
            uintptr_t *where = (uintptr_t *)(o->base + r->r_offset);
            if ((uintptr_t)where % sizeof(uintptr_t) != 0) {
                snprintf(err, errlen, "%s has a misaligned ioctl slot", o->soname);
                return -1;
            }
            if (*n == MAX_SLOTS) {
                snprintf(err, errlen, "more than %d ioctl slots", MAX_SLOTS);
                return -1;
            }
            slots[(*n)++] = (struct slot){where, o};
        }
    }
    return 0;
}

/* The current protection of the page holding addr, from /proc/self/maps: a GOT
 * slot sits in RELRO (read-only after relocation, with full RELRO: -z now) or in
 * ordinary writable data, and must get its own protection back afterwards. */
static int page_prot(uintptr_t addr, int *prot)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char *line = NULL;
    size_t cap = 0;
    int found = -1;

    if (!f)
        return -1;
    while (found < 0 && getline(&line, &cap, f) > 0) {
        unsigned long lo, hi;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3)
            continue;
        if (addr >= lo && addr < hi) {
            *prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                    (perms[2] == 'x' ? PROT_EXEC : 0);
            found = 0;
        }
    }
    free(line);
    fclose(f);
    if (found < 0)
        errno = ENOENT;
    return found;
}

static int patch(const struct slot *s, uintptr_t value, char *err, size_t errlen)
{
    uintptr_t pagesz = (uintptr_t)sysconf(_SC_PAGESIZE);
    void *page = (void *)((uintptr_t)s->where & ~(pagesz - 1));
    int prot;

    if (page_prot((uintptr_t)s->where, &prot)) {
        snprintf(err, errlen, "cannot find the protection of %s's ioctl slot: %s",
                 s->o->soname, strerror(errno));
        return -1;
    }
    if (!(prot & PROT_WRITE) && mprotect(page, pagesz, prot | PROT_WRITE)) {
        snprintf(err, errlen, "cannot make %s's ioctl slot writable: mprotect: %s",
                 s->o->soname, strerror(errno));
        return -1;
    }
    /* One aligned 8-byte store: a concurrent caller sees the old or the new target. */
    __atomic_store_n(s->where, value, __ATOMIC_RELEASE);
    if (!(prot & PROT_WRITE) && mprotect(page, pagesz, prot)) {
        snprintf(err, errlen, "cannot make %s's ioctl slot read-only again: mprotect: %s",
                 s->o->soname, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ install */

static int add_name(const char **names, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(names[i], name) == 0)
            return 0;
    if (*n == MAX_GUARDED)
        return -1;
    names[(*n)++] = name;
    return 0;
}

/* The objects to guard: those named, and every libxen* library they need,
 * transitively. A library missing from the process, or one the installer cannot
 * read, fails the whole install. */
static int closure(const struct objects *all, const char *const *roots, int nroots,
                   const struct object **out, size_t *nout, char *err, size_t errlen)
{
    const char *names[MAX_GUARDED];
    const char *needed_by[MAX_GUARDED];
    size_t nn = 0;

    *nout = 0;
    for (int i = 0; i < nroots; i++) {
        size_t before = nn;
        if (add_name(names, &nn, roots[i])) {
            snprintf(err, errlen, "more than %d libraries to guard", MAX_GUARDED);
            return -1;
        }
        if (nn > before)
            needed_by[nn - 1] = NULL;
    }
    for (size_t i = 0; i < nn; i++) {
        int found = 0;
        for (size_t k = 0; k < all->n; k++) {
            const struct object *o = &all->v[k];
            if (!same_name(o, names[i]))
                continue;
            found = 1;
            if (o->unreadable) {
                snprintf(err, errlen, "%s (%s): %s", names[i], o->path, o->unreadable);
                return -1;
            }
            if (*nout == MAX_GUARDED) {
                snprintf(err, errlen, "more than %d libraries to guard", MAX_GUARDED);
                return -1;
            }
            out[(*nout)++] = o;
            for (const ElfW(Dyn) *d = o->dynamic; d->d_tag != DT_NULL; d++) {
                if (d->d_tag != DT_NEEDED)
                    continue;
                const char *dep = o->strtab + d->d_un.d_val;
                size_t before = nn;
                if (strncmp(dep, "libxen", 6) != 0)
                    continue;
                if (add_name(names, &nn, dep)) {
                    snprintf(err, errlen, "more than %d libraries to guard", MAX_GUARDED);
                    return -1;
                }
                if (nn > before)
                    needed_by[nn - 1] = o->soname;
            }
        }
        if (!found) {
            if (needed_by[i])
                snprintf(err, errlen, "%s (needed by %s) is not loaded", names[i],
                         needed_by[i]);
            else
                snprintf(err, errlen, "%s is not loaded", names[i]);
            return -1;
        }
    }
    return 0;
}

static int install_locked(const char *const *sonames, int n, char *err, size_t errlen)
{
    const uintptr_t guard = (uintptr_t)&guard_ioctl;
    const struct object *guarded[MAX_GUARDED];
    struct slot slots[MAX_SLOTS];
    size_t nguarded, nslots = 0;
    struct objects all;
    uintptr_t target = 0;
    int rc = -1;

    if (n <= 0) {
        snprintf(err, errlen, "no library named");
        return -1;
    }
    if (load_objects(&all, err, errlen))
        return -1;
    if (closure(&all, sonames, n, guarded, &nguarded, err, errlen))
        goto out;
    for (size_t i = 0; i < nguarded; i++)
        if (find_slots(guarded[i], slots, &nslots, err, errlen))
            goto out;

    /* Every slot the loader resolved must name the same ioctl (normally glibc's, or
     * an LD_PRELOAD interposer's): that is where allowed requests go on. */
    for (size_t i = 0; i < nslots; i++) {
        uintptr_t v = __atomic_load_n(slots[i].where, __ATOMIC_RELAXED);
        if (v == guard || inside(slots[i].o, v))
            continue; /* guarded by an earlier call, or lazily bound and not yet resolved */
        if (target && v != target) {
            snprintf(err, errlen, "ioctl resolves to two different functions (%s)",
                     slots[i].o->soname);
            goto out;
        }
        target = v;
    }
    uintptr_t real = (uintptr_t)__atomic_load_n(&real_ioctl, __ATOMIC_ACQUIRE);
    if (real && target && target != real) {
        snprintf(err, errlen, "ioctl in %s is not the function an earlier install guarded",
                 guarded[0]->soname);
        goto out;
    }
    if (!real) {
        int unbound = 0;
        for (size_t i = 0; i < nslots; i++)
            unbound |= __atomic_load_n(slots[i].where, __ATOMIC_RELAXED) != guard;
        if (unbound && !target) {
            snprintf(err, errlen, "ioctl is not bound yet in any guarded library (lazy "
                     "binding): nothing to pass allowed requests on to");
            goto out;
        }
        __atomic_store_n(&real_ioctl, (ioctl_fn)target, __ATOMIC_RELEASE);
    }
    for (size_t i = 0; i < nslots; i++) {
        if (__atomic_load_n(slots[i].where, __ATOMIC_RELAXED) == guard)
            continue;
        if (patch(&slots[i], guard, err, errlen))
            goto out; /* the slots patched so far stay guarded: stricter, never looser */
    }
    rc = (int)nslots;
out:
    free(all.v);
    return rc;
}

int xp_guard_install(const char *const *sonames, int n, char *err, size_t errlen)
{
    pthread_mutex_lock(&install_lock);
    int rc = install_locked(sonames, n, err, errlen);
    pthread_mutex_unlock(&install_lock);
    return rc;
}

int xp_guard_slots(const char *soname)
{
    struct slot slots[MAX_SLOTS];
    struct objects all;
    char err[256];
    int found = 0, guarded = 0;

    pthread_mutex_lock(&install_lock);
    if (load_objects(&all, err, sizeof(err))) {
        pthread_mutex_unlock(&install_lock);
        return -1;
    }
    for (size_t k = 0; k < all.n; k++) {
        size_t n = 0;
        if (!same_name(&all.v[k], soname))
            continue;
        found = 1;
        if (all.v[k].unreadable || find_slots(&all.v[k], slots, &n, err, sizeof(err)))
            continue;
        for (size_t i = 0; i < n; i++)
            guarded += *slots[i].where == (uintptr_t)&guard_ioctl;
    }
    free(all.v);
    pthread_mutex_unlock(&install_lock);
    return found ? guarded : -1;
}
