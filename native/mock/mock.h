/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * xenprobe mock Xen host: shared declarations.
 *
 * The mock is an LD_PRELOAD library in four layers, one per file:
 *   device.c     - libc interposition (open/ioctl/close/syscall/dup), fd table,
 *                  and glibc's return-value convention
 *   privcmd.c    - the Linux privcmd driver (ioctl decoding, int truncation)
 *   hypervisor.c - the emulated hypervisor (hypercalls 12, 13, 17, 35, 36)
 *   scenario.c   - the compiled scenario file and the mutable host state
 * plus log.c (JSON request log) and uaccess.c (guest-memory copies).
 */
#ifndef XENPROBE_MOCK_H
#define XENPROBE_MOCK_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

/* ---- ABI constants (see shared/reference/xen-abi.md) ---- */
#define HC_PLATFORM_OP 7
#define HC_MEMORY_OP   12
#define HC_MULTICALL   13
#define HC_XEN_VERSION 17
#define HC_SYSCTL      35
#define HC_DOMCTL      36
#define HC_DM_OP       41

#define DOMID_FIRST_RESERVED 0x7FF0
#define DOMID_SELF           0x7FF0

#define PLATFORM_OP_SIZE     136   /* struct xen_platform_op */
#define RESOURCE_ENTRY_SIZE  24    /* struct xenpf_resource_entry */
#define RESOURCE_MAX_ENTRIES 3     /* RESOURCE_ACCESS_MAX_ENTRIES */
#define SYSCTL_SIZE          136
#define DOMCTL_SIZE          144
#define UNION_SIZE           128   /* both wrappers pad their union to 128 */
#define MULTICALL_ENTRY_SIZE 64

#define IOCTL_PRIVCMD_HYPERCALL     0x00305000u
#define IOCTL_PRIVCMD_DM_OP         0x00105005u
#define IOCTL_PRIVCMD_RESTRICT      0x00025006u
#define IOCTL_PRIVCMD_UNIMPLEMENTED 0x000050FFu

#define MAX_GDI_SIZE UNION_SIZE

/* ---- scenario (scenario.c) ---- */
enum { DRIVER_PVOPS, DRIVER_XENLINUX };
enum { ROLE_DOM0, ROLE_DOMU };
enum { DEVICE_PRESENT, DEVICE_ABSENT, DEVICE_EACCES };

struct mock_domain {
    uint16_t id;
    uint64_t tot_pages;        /* current value; moved by the balloon */
    uint64_t max_pages;
    uint64_t max_gpfn;
    uint8_t  record[MAX_GDI_SIZE];
    size_t   record_len;
    int      line;             /* scenario line, for validation messages */
    /* balloon (active when balloon_every != 0) */
    int64_t  balloon_step;     /* signed: sign is the current direction */
    uint64_t balloon_every, balloon_min, balloon_max, balloon_reads;
    int      balloon_line;
};

struct mock_rule {             /* fault and hang directives */
    uint64_t op;
    int64_t  subop;            /* -1 = any */
    int      err;              /* fault only */
    int64_t  count;            /* fault only: remaining, -1 = unlimited */
};

struct scenario {
    char     path[512];
    uint32_t major, minor;
    char     extraversion[16];
    char     capabilities[1024];
    uint32_t sysctl_interface, domctl_interface;
    int      getdomaininfo_exact;
    size_t   getdomaininfo_size;
    uint8_t  physinfo[UNION_SIZE];
    size_t   physinfo_len;
    uint64_t max_page;
    uint16_t self_domid;
    struct mock_domain *domains;   /* sorted by id, like Xen's domain list */
    size_t   ndomains;
    int      hypervisor_bits;
    int      compat_clamp;
    char     guest_type[8];        /* /sys/hypervisor/guest_type: "PV" or "PVH" */
    int      multicall;            /* 0: a PVH dom0 before 4.15.1 (hypervisor.c) */
    int      driver, role, device, sys_hypervisor;
    struct mock_rule *faults, *hangs;
    size_t   nfaults, nhangs;
};

/* Loads the file named by XENPROBE_MOCK_SCENARIO once per process.  Returns
 * NULL (after printing one diagnostic line) when it is missing or invalid. */
struct scenario *scenario_get(void);

/* The first domain whose id is >= id (domains are sorted by id): an index into
 * s->domains, s->ndomains when there is none.  Binary search: a host with
 * thousands of domains answers each lookup in O(log n). */
size_t scenario_lower_bound(const struct scenario *s, uint32_t id);

/* Mutable hypervisor state (balloons, fault counters) is guarded by this. */
extern pthread_mutex_t hv_lock;

/* ---- guest memory (uaccess.c) ---- */
int  uread(void *dst, uint64_t src, size_t n);        /* 0 or -EFAULT */
int  uwrite(uint64_t dst, const void *src, size_t n); /* 0 or -EFAULT */
int  uaccess_ok(uint64_t addr, uint64_t n);          /* like access_ok() */
/* Brackets one privcmd request: pages copied within it are remembered (uaccess.c). */
void uaccess_begin(void);
void uaccess_end(void);

/* ---- hypervisor (hypervisor.c) ---- */
/* What the hypervisor decoded from one call; also what the log shows. */
struct hv_req {
    uint64_t op;
    uint64_t args[6];
    int64_t  subop;            /* -1 when the op has none */
    int      has_cmd_raw;  uint64_t cmd_raw;
    int      has_iv;       uint32_t interface_version;
    int      has_domain;   uint32_t domain;
    int      has_inner;    uint32_t inner;  /* sysctl livepatch_op: its own cmd */
    int      copied;           /* 0, or -EFAULT if the copy-in failed */
    union {
        uint8_t  raw[DOMCTL_SIZE];  /* sysctl (136), domctl (144) or platform_op (136) copy */
        uint16_t domid;             /* memory_op 3/4/14 */
    } in;
    /* XENPF_resource_op: its entries, copied in as Xen does before acting on them
     * (nres 0 when there were none, too many, or they could not be read). */
    uint32_t nres;
    uint8_t  res[RESOURCE_MAX_ENTRIES * RESOURCE_ENTRY_SIZE];
};

enum { VIA_IOCTL, VIA_SYSCALL, VIA_MULTICALL };

/* Runs one hypercall; returns the hypervisor's 64-bit result (negative
 * errno on failure).  `seq` is the log sequence number of the request that
 * carried it (the multicall entries and a hang refer to it). */
int64_t hv_hypercall(struct hv_req *req, uint64_t seq, int via);

/* ---- log (log.c) ---- */
struct jbuf {
    char   b[4096];
    size_t n;
    int    on;                 /* logging enabled */
};
int      log_enabled(void);
uint64_t log_next_seq(void);
void     jb_begin(struct jbuf *j, const char *kind, uint64_t seq);
void     jb_str(struct jbuf *j, const char *key, const char *val);
void     jb_i64(struct jbuf *j, const char *key, int64_t v);
void     jb_u64(struct jbuf *j, const char *key, uint64_t v);
void     jb_null(struct jbuf *j, const char *key);
void     jb_bool(struct jbuf *j, const char *key, int v);
void     jb_u64s(struct jbuf *j, const char *key, const uint64_t *v, size_t n);
void     jb_req(struct jbuf *j, const struct hv_req *req, size_t nargs);
void     jb_finish(struct jbuf *j);  /* closes the object and appends it */
const char *via_name(int via);

/* ---- privcmd driver (privcmd.c) ---- */
struct mock_file {             /* one open file description of privcmd */
    const char *path;
    uint16_t restrict_domid;   /* DOMID_INVALID when unrestricted */
    int      refs;             /* fds (dups) that refer to it */
    uint64_t dev, ino;         /* identity of the backing memfd */
};
#define DOMID_INVALID 0x7FF4

/* The privcmd ioctl handler: returns what the kernel's ioctl() returns
 * (already truncated the way the scenario's driver does).  Fills `j` with
 * the decoded request; the caller appends what libc returned. */
long privcmd_ioctl(struct mock_file *mf, uint32_t cmd, uint64_t arg,
                   int via, struct jbuf *j);

/* ---- the kernel's tracing of privcmd_ioctl (tracing.c) ---- */
/* The kprobe at privcmd_ioctl's entry (every ioctl), and the one after the hypercall
 * returns (dm: the DM_OP one), as defined and enabled in XENPROBE_MOCK_TRACEFS. */
void tracing_entry(uint32_t cmd, uint64_t arg);
void tracing_result(int dm, int64_t rax, const void *copy, size_t len);

/* ---- fault kinds beyond fault/hang (faults.c) ---- */
/* A scenario directive scenario.c does not know: 1 = not a fault directive, 0 = parsed,
 * -1 = invalid (the problem in msg). */
int     faults_directive(const char *name, char **arg, int narg, char *msg, size_t len);
/* privcmd.c, before the hypervisor: 0 or the driver's -errno; *subop as decoded. */
int     faults_driver(const uint64_t hc[6], int via, int64_t *subop);
/* hypervisor.c: latency before a call, garbage/short answers after it, and whether a
 * domain has vanished (each call is one lookup of it). */
void    faults_delay(const struct hv_req *req);
int64_t faults_mangle(struct hv_req *req, int64_t rc);
int     faults_domain_gone(uint16_t domid);

/* ---- the census's other read-only paths (census.c) ---- */
/* The `census` directive: 1 = not it, 0 = parsed, -1 = invalid (the problem in msg). */
int census_directive(const char *name, char **arg, int narg, char *msg, size_t len);
/* 1 and *rc set when the scenario models this call, else 0. */
int census_model(struct scenario *s, const struct hv_req *r, int64_t *rc);
/* /sys/hypervisor/guest_type and properties/changeset as the census model's Linux
 * prints them, or -ENOENT without the model. */
int census_sysfs(const char *path, char *buf, size_t cap);
/* XEN_SYSCTL_livepatch_op on the request's sysctl union; its rc (sysctl copies the
 * struct back unless it is -ENOSYS or -EOPNOTSUPP). */
int64_t census_livepatch_op(struct scenario *s, uint8_t *op);
/* XENVER_changeset's and XENVER_commandline's texts ("xenprobe-mock" and "" unless a
 * census scenario names them). */
const char *census_changeset(void);
const char *census_commandline(void);

/* ---- xenstored (xenstore.c) ---- */
/* The `xenstored` and `xenstore_name` directives: 1 = not one, 0 = parsed, -1 = invalid. */
int xenstore_directive(const char *name, char **arg, int narg, char *msg, size_t len);
/* /dev/xen/xenbus opened: a connection to the modelled xenstored, or -ENOENT. */
int xenstore_open(int flags);

/* ---- real libc entry points (libc.c: a leaf, so no file calls back into device.c) ---- */
/* The next definition of `name` (glibc's), cached in *slot. */
void *real_sym(void **slot, const char *name);
int real_open_file(const char *path, int flags, int mode);
int real_close_fd(int fd);

#endif
