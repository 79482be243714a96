/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The request log: one JSON object per line in $XENPROBE_MOCK_LOG.
 *
 * Each line is written with a single write() on a file opened O_APPEND, so
 * several processes can share one log.  The file is opened per line rather
 * than kept open: a program that closes "all" its fds (daemons do) must not
 * leave us writing JSON into whatever reuses our descriptor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mock.h"

static uint64_t seq_counter;

int log_enabled(void)
{
    const char *p = getenv("XENPROBE_MOCK_LOG");
    return p && *p;
}

uint64_t log_next_seq(void)
{
    return __atomic_add_fetch(&seq_counter, 1, __ATOMIC_RELAXED);
}

const char *via_name(int via)
{
    return via == VIA_SYSCALL ? "syscall"
         : via == VIA_MULTICALL ? "multicall" : "ioctl";
}

static void jb_printf(struct jbuf *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void jb_printf(struct jbuf *j, const char *fmt, ...)
{
    va_list ap;
    int r;

    if (!j->on || j->n >= sizeof(j->b))
        return;
    va_start(ap, fmt);
    r = vsnprintf(j->b + j->n, sizeof(j->b) - j->n, fmt, ap);
    va_end(ap);
    if (r > 0)
        j->n += (size_t)r;
}

void jb_begin(struct jbuf *j, const char *kind, uint64_t seq)
{
    j->n = 0;
    j->on = log_enabled();
    jb_printf(j, "{\"seq\":%" PRIu64 ",\"pid\":%d,\"kind\":\"%s\"",
              seq, (int)getpid(), kind);
}

void jb_str(struct jbuf *j, const char *key, const char *val)
{
    jb_printf(j, ",\"%s\":\"", key);
    for (; *val; val++) {
        unsigned char c = (unsigned char)*val;
        if (c == '"' || c == '\\')
            jb_printf(j, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            jb_printf(j, "\\u%04x", c);
        else
            jb_printf(j, "%c", c);
    }
    jb_printf(j, "\"");
}

void jb_i64(struct jbuf *j, const char *key, int64_t v)
{
    jb_printf(j, ",\"%s\":%" PRId64, key, v);
}

void jb_u64(struct jbuf *j, const char *key, uint64_t v)
{
    jb_printf(j, ",\"%s\":%" PRIu64, key, v);
}

void jb_null(struct jbuf *j, const char *key)
{
    jb_printf(j, ",\"%s\":null", key);
}

void jb_bool(struct jbuf *j, const char *key, int v)
{
    jb_printf(j, ",\"%s\":%s", key, v ? "true" : "false");
}

void jb_u64s(struct jbuf *j, const char *key, const uint64_t *v, size_t n)
{
    jb_printf(j, ",\"%s\":[", key);
    for (size_t i = 0; i < n; i++)
        jb_printf(j, "%s%" PRIu64, i ? "," : "", v[i]);
    jb_printf(j, "]");
}

/* The decoded hypercall: op, arguments and whatever the hypervisor read. */
void jb_req(struct jbuf *j, const struct hv_req *req, size_t nargs)
{
    jb_u64(j, "op", req->op);
    jb_u64s(j, "args", req->args, nargs);
    if (req->subop >= 0 || req->op == HC_XEN_VERSION)
        jb_i64(j, "subop", req->subop);
    if (req->has_cmd_raw)
        jb_u64(j, "cmd_raw", req->cmd_raw);
    if (req->has_iv)
        jb_u64(j, "interface_version", req->interface_version);
    if (req->has_domain)
        jb_u64(j, "domain", req->domain);
    if (req->nres) {
        /* XENPF_resource_op: each entry's cmd (0 MSR_READ, 1 MSR_WRITE) and MSR. */
        uint64_t cmds[RESOURCE_MAX_ENTRIES], msrs[RESOURCE_MAX_ENTRIES];
        for (uint32_t i = 0; i < req->nres; i++) {
            uint32_t c;
            memcpy(&c, req->res + i * RESOURCE_ENTRY_SIZE, 4);
            memcpy(&msrs[i], req->res + i * RESOURCE_ENTRY_SIZE + 8, 8);
            cmds[i] = c;
        }
        jb_u64s(j, "resource_cmds", cmds, req->nres);
        jb_u64s(j, "resource_msrs", msrs, req->nres);
    }
    if (req->has_inner)
        jb_u64(j, "inner", req->inner);
}

void jb_finish(struct jbuf *j)
{
    const char *path = getenv("XENPROBE_MOCK_LOG");
    int saved = errno;
    int fd;

    if (!j->on || !path || !*path)
        return;
    jb_printf(j, "}\n");
    if (j->n >= sizeof(j->b))
        return;              /* cannot happen with our fields; never half a line */
    fd = real_open_file(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, j->b, j->n);
        (void)w;
        real_close_fd(fd);
    }
    errno = saved;
}
