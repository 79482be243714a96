/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Linux privcmd driver (drivers/xen/privcmd.c), as far as xenprobe and
 * libxc reach it: HYPERCALL, DM_OP, RESTRICT; everything else is -ENOTTY.
 *
 * The point of emulating the driver separately from the hypervisor is the
 * return path: pvops privcmd_ioctl() keeps the handler's long in an
 * `int ret` (and SYSCALL_DEFINE3(ioctl) in an `int error`), so a 64-bit
 * hypercall result reaches user space sign-extended from 32 bits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "mock.h"

/* privcmd module parameters dm_op_max_nr_bufs / dm_op_buf_max_size. */
#define DM_OP_MAX_NUM      16
#define DM_OP_BUF_MAX_SIZE 4096

static long hypercall(struct mock_file *mf, uint64_t arg, int via,
                      struct jbuf *j)
{
    uint64_t hc[6];
    struct hv_req req;
    uint64_t seq = log_next_seq();
    int64_t r;

    jb_begin(j, "hypercall", seq);
    /* A restricted handle may not issue arbitrary hypercalls. */
    if (__atomic_load_n(&mf->restrict_domid, __ATOMIC_RELAXED) != DOMID_INVALID) {
        jb_null(j, "result");
        return -EPERM;
    }
    if (uread(hc, arg, sizeof(hc))) {
        jb_null(j, "result");
        return -EFAULT;
    }
    if ((r = faults_driver(hc, via, &req.subop)) != 0) {  /* an injected driver error */
        jb_u64(j, "op", hc[0]);
        jb_u64s(j, "args", hc + 1, 5);
        jb_i64(j, "subop", req.subop);
        jb_str(j, "injected", "ioctl_fault");
        jb_null(j, "result");
        return r;
    }
    memset(&req, 0, sizeof(req));
    req.op = hc[0];
    memcpy(req.args, hc + 1, 5 * sizeof(uint64_t));
    uaccess_begin();
    r = hv_hypercall(&req, seq, via);
    uaccess_end();
    /* The instruction after privcmd_call() returns: %rax is Xen's whole result, and
     * hc is privcmd's own copy of the request (privcmd_ioctl_hypercall()'s
     * copy_from_user into `hypercall`, drivers/xen/privcmd.c@v6.1). */
    tracing_result(0, r, hc, sizeof(hc));
    jb_req(j, &req, 5);
    jb_i64(j, "result", r);
    return r;
}

/* IOCTL_PRIVCMD_DM_OP: the checks privcmd_ioctl_dm_op() makes before it
 * issues the dm_op hypercall, which the mock hypervisor does not emulate. */
static long dm_op(struct mock_file *mf, uint64_t arg, struct jbuf *j)
{
    uint8_t k[16];
    uint16_t dom, num, restrict_domid;
    uint64_t ubufs, bufs[2 * DM_OP_MAX_NUM];
    struct hv_req req;
    uint64_t seq = log_next_seq();
    int64_t r;

    jb_begin(j, "ioctl", seq);
    jb_str(j, "name", "DM_OP");
    if (uread(k, arg, sizeof(k)))
        return -EFAULT;
    memcpy(&dom, k, 2);
    memcpy(&num, k + 2, 2);
    memcpy(&ubufs, k + 8, 8);
    jb_u64(j, "dom", dom);
    jb_u64(j, "num", num);

    restrict_domid = __atomic_load_n(&mf->restrict_domid, __ATOMIC_RELAXED);
    if (restrict_domid != DOMID_INVALID && restrict_domid != dom)
        return -EPERM;
    if (num == 0)
        return 0;
    if (num > DM_OP_MAX_NUM)
        return -E2BIG;
    if (uread(bufs, ubufs, (size_t)num * 16))
        return -EFAULT;
    for (unsigned i = 0; i < num; i++) {
        uint64_t uptr = bufs[2 * i], size = bufs[2 * i + 1];
        if (size > DM_OP_BUF_MAX_SIZE)
            return -E2BIG;
        if (!uaccess_ok(uptr, size))
            return -EFAULT;
    }
    /* pin_user_pages_fast() fails on unmapped buffers. */
    for (unsigned i = 0; i < num; i++) {
        uint8_t tmp[DM_OP_BUF_MAX_SIZE];
        if (uread(tmp, bufs[2 * i], bufs[2 * i + 1]))
            return -EFAULT;
    }
    memset(&req, 0, sizeof(req));
    req.op = HC_DM_OP;
    req.args[0] = dom;
    req.args[1] = num;
    r = hv_hypercall(&req, seq, VIA_IOCTL);
    tracing_result(1, r, k, sizeof(k));  /* after HYPERVISOR_dm_op()'s; k: `kdata` */
    jb_i64(j, "result", r);
    return r;
}

static long restrict_fd(struct mock_file *mf, uint64_t arg, struct jbuf *j)
{
    uint16_t dom, expected = DOMID_INVALID;

    jb_begin(j, "ioctl", log_next_seq());
    jb_str(j, "name", "RESTRICT");
    if (uread(&dom, arg, 2))
        return -EFAULT;
    jb_u64(j, "domain", dom);
    /* Set the restriction once; later calls must name the same domain. */
    if (!__atomic_compare_exchange_n(&mf->restrict_domid, &expected, dom, 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)
        && expected != dom)
        return -EINVAL;
    return 0;
}

long privcmd_ioctl(struct mock_file *mf, uint32_t cmd, uint64_t arg,
                   int via, struct jbuf *j)
{
    struct scenario *s = scenario_get();
    long ret;

    tracing_entry(cmd, arg);  /* a kprobe at privcmd_ioctl+0 sees every ioctl */
    switch (cmd) {
    case IOCTL_PRIVCMD_HYPERCALL:
        ret = hypercall(mf, arg, via, j);
        break;
    case IOCTL_PRIVCMD_DM_OP:
        ret = dm_op(mf, arg, j);
        break;
    case IOCTL_PRIVCMD_RESTRICT:
        ret = restrict_fd(mf, arg, j);
        break;
    default:
        /* Includes IOCTL_PRIVCMD_UNIMPLEMENTED, which libxenforeignmemory
         * requires to fail, and the mmap ioctls, which are not emulated. */
        jb_begin(j, "ioctl", log_next_seq());
        if (cmd == IOCTL_PRIVCMD_UNIMPLEMENTED)
            jb_str(j, "name", "UNIMPLEMENTED");
        ret = -ENOTTY;
        break;
    }
    /* pvops: `int ret` in privcmd_ioctl() and `int error` in the ioctl
     * syscall.  xenlinux: the full long, as the scenario asks. */
    if (!s || s->driver == DRIVER_PVOPS)
        ret = (long)(int)ret;
    return ret;
}
