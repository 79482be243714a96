/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * xenstored, as much of it as reading a domain's name needs: a connect() to
 * xenstored's socket or an open() of /dev/xen/xenbus gets one end of a
 * socketpair, and a thread answers on the other end as C xenstored does.
 *
 * Modelled (tools/xenstore/xenstored_core.c@RELEASE-4.17.0):
 *   XS_READ of a node that holds a value: a reply of type XS_READ carrying the
 *   node's bytes, no NUL added (do_read, :1329-1342);
 *   XS_READ of any other path: XS_ERROR with "ENOENT" and its NUL (send_error,
 *   :1031-1044), which is what get_node_canonicalized leaves for a missing node.
 * Not modelled: every other message type. The mock logs it and drops the
 * connection rather than invent an answer (xenprobe must never send one; a test
 * reads this log to show it does not).
 * Wire format: struct xsd_sockmsg, xen/include/public/io/xs_wire.h@RELEASE-4.17.0:82-90.
 *
 * Scenario directives (xenprobe/mock/scenario.py compiles them):
 *   xenstored 0|1          whether xenstored runs (0: connect/open fail with ENOENT,
 *                          as for a socket path or device node that does not exist)
 *   xenstore_name ID HEX   /local/domain/ID/name holds these bytes
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mock.h"

#define XS_READ  2
#define XS_ERROR 16
#define XENSTORE_PAYLOAD_MAX 4096

struct xsd_sockmsg {
    uint32_t type, req_id, tx_id, len;
};

struct name {
    uint16_t domid;
    size_t   len;
    char    *bytes;
};

static int running = 1;                 /* xenstored runs unless the scenario says not */
static struct name *names;
static size_t nnames;

static int hexdigit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int xenstore_directive(const char *name, char **arg, int narg, char *msg, size_t len)
{
    if (!strcmp(name, "xenstored")) {
        if (narg != 1 || (strcmp(arg[0], "0") && strcmp(arg[0], "1"))) {
            snprintf(msg, len, "xenstored: expected 0 or 1");
            return -1;
        }
        running = arg[0][0] == '1';
        return 0;
    }
    if (!strcmp(name, "xenstore_name")) {
        unsigned long id;
        char *end;
        size_t n = narg == 2 ? strlen(arg[1]) : 1;
        struct name *nv;

        if (narg != 2 || (id = strtoul(arg[0], &end, 10), *end) ||
            id >= DOMID_FIRST_RESERVED || n % 2 || n == 0 || n / 2 > XENSTORE_PAYLOAD_MAX) {
            snprintf(msg, len, "xenstore_name: expected DOMID HEX (1..%d bytes)",
                     XENSTORE_PAYLOAD_MAX);
            return -1;
        }
        nv = realloc(names, (nnames + 1) * sizeof(*names));
        if (!nv || !(nv[nnames].bytes = malloc(n / 2))) {
            if (nv)
                names = nv;
            snprintf(msg, len, "out of memory");
            return -1;
        }
        names = nv;
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexdigit(arg[1][2 * i]), lo = hexdigit(arg[1][2 * i + 1]);
            if (hi < 0 || lo < 0) {
                free(names[nnames].bytes);
                snprintf(msg, len, "xenstore_name: HEX is not lowercase hex");
                return -1;
            }
            names[nnames].bytes[i] = (char)(hi << 4 | lo);
        }
        names[nnames].domid = (uint16_t)id;
        names[nnames++].len = n / 2;
        return 0;
    }
    return 1;
}

static int full_read(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int full_write(int fd, const void *buf, size_t n)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = write(fd, (const char *)buf + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

static int reply(int fd, const struct xsd_sockmsg *req, uint32_t type,
                 const void *body, size_t len)
{
    struct xsd_sockmsg h = { type, req->req_id, req->tx_id, (uint32_t)len };
    return full_write(fd, &h, sizeof(h)) || full_write(fd, body, len);
}

/* The node's value for an XS_READ of `path`, or NULL: only /local/domain/N/name,
 * with N as the toolstack writes it (decimal, no leading zero): a path is a string
 * to xenstored, "/local/domain/07/name" is another node. */
static const struct name *lookup(const char *path)
{
    const char *c = path + 14;
    unsigned long id = 0;

    if (strncmp(path, "/local/domain/", 14) || *c < '0' || *c > '9' ||
        (*c == '0' && c[1] != '/'))
        return NULL;
    for (; *c >= '0' && *c <= '9' && id < DOMID_FIRST_RESERVED; c++)
        id = id * 10 + (unsigned long)(*c - '0');
    if (strcmp(c, "/name"))
        return NULL;
    for (size_t i = 0; i < nnames; i++)
        if (names[i].domid == id)
            return &names[i];
    return NULL;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char body[XENSTORE_PAYLOAD_MAX + 1];
    struct xsd_sockmsg h;

    while (!full_read(fd, &h, sizeof(h))) {
        const struct name *n = NULL;
        struct jbuf j;
        int ok;

        if (h.len > XENSTORE_PAYLOAD_MAX || full_read(fd, body, h.len))
            break;
        body[h.len] = 0;
        /* onearg(): a request's argument is a NUL-terminated string. */
        ok = h.type == XS_READ && h.len && !body[h.len - 1];
        if (ok)
            n = lookup(body);
        jb_begin(&j, "xenstore", log_next_seq());
        jb_u64(&j, "type", h.type);
        jb_u64(&j, "req_id", h.req_id);
        jb_u64(&j, "tx_id", h.tx_id);
        jb_str(&j, "path", h.type == XS_READ ? body : "");
        jb_str(&j, "answer", !ok ? "unmodelled" : n ? "value" : "ENOENT");
        jb_finish(&j);
        if (!ok)
            break;
        if (n ? reply(fd, &h, XS_READ, n->bytes, n->len)
              : reply(fd, &h, XS_ERROR, "ENOENT", sizeof("ENOENT")))
            break;
    }
    close(fd);
    return NULL;
}

/* A connection: the caller's end as a new fd (or -errno), the other served. */
static int connection(int flags)
{
    int sv[2];
    pthread_t t;
    pthread_attr_t a;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return -errno;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, serve, (void *)(intptr_t)sv[1])) {
        pthread_attr_destroy(&a);
        close(sv[0]);
        close(sv[1]);
        return -EAGAIN;
    }
    pthread_attr_destroy(&a);
    if (!(flags & O_CLOEXEC))
        fcntl(sv[0], F_SETFD, 0);
    if (flags & O_NONBLOCK)
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
    return sv[0];
}

int xenstore_open(int flags)
{
    return running ? connection(flags) : -ENOENT;
}

static int (*r_connect)(int, const struct sockaddr *, socklen_t);

static int is_xenstored(const struct sockaddr *addr, socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
    size_t n;

    if (!addr || len <= offsetof(struct sockaddr_un, sun_path) || addr->sa_family != AF_UNIX)
        return 0;
    n = strnlen(un->sun_path, len - offsetof(struct sockaddr_un, sun_path));
    return (n == 21 && !memcmp(un->sun_path, "/run/xenstored/socket", 21)) ||
           (n == 25 && !memcmp(un->sun_path, "/var/run/xenstored/socket", 25));
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    int fdflags, flflags, end;

    if (!r_connect)
        r_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (!is_xenstored(addr, len) || !scenario_get())
        return r_connect(fd, addr, len);
    /* The caller's socket becomes the connection, keeping its descriptor flags. */
    fdflags = fcntl(fd, F_GETFD);
    flflags = fcntl(fd, F_GETFL);
    if (fdflags < 0 || flflags < 0)
        return -1;
    end = xenstore_open(((fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) | (flflags & O_NONBLOCK));
    if (end < 0) {
        errno = -end;
        return -1;
    }
    if (dup3(end, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
        int e = errno;
        close(end);
        errno = e;
        return -1;
    }
    close(end);
    return 0;
}
