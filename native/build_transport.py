# SPDX-License-Identifier: GPL-2.0-only
"""cffi build script for xenprobe._transport (out-of-line API mode)."""

import os

from cffi import FFI

# Relative to the project root, where setuptools runs cffi_modules.
HERE = "native/transport"



def compile_args() -> list[str]:
    """Warnings are errors only where CI asks (tools/run-all sets XENPROBE_WERROR=1): a
    newer compiler's new warning must not break a user's or a distribution's build."""
    werror = ["-Werror"] if os.environ.get("XENPROBE_WERROR") == "1" else []
    return ["-std=gnu11", "-Wall", "-Wextra", *werror, "-O2"]


ffi = FFI()
ffi.cdef(
    """
    #define XP_REFUSED ...
    #define XP_MULTICALL_MAX ...
    typedef struct xp_multicall_entry {
        uint64_t op;
        uint64_t result;
        uint64_t args[6];
    } xp_multicall_entry;
    int xp_open(int *err);
    int xp_close(int fd);
    void *xp_alloc(size_t bytes, int *err);
    void xp_free(void *p, size_t bytes);
    int xp_check(uint64_t op, const uint64_t args[5]);
    int xp_check_entry(const xp_multicall_entry *e);
    int xp_check_sysctl_cmd(uint32_t cmd);
    int xp_check_domctl_cmd(uint32_t cmd);
    int xp_check_platform_cmd(uint32_t cmd);
    int xp_check_resource_count(uint32_t nr_entries);
    typedef struct xp_resource_entry {
        uint32_t cmd;
        uint32_t rsvd;
        uint64_t idx;
        uint64_t val;
    } xp_resource_entry;
    int xp_check_resource_entries(const xp_resource_entry *entries, uint32_t n);
    int xp_check_sysctl(const void *copy, size_t size);
    void xp_refusal(uint64_t out[3]);
    void xp_private_span(uint64_t out[2]);
    int xp_hypercall_ioctl(int fd, uint64_t op, const uint64_t args[5], int *ret, int *err);
    int xp_hypercall_syscall(int fd, uint64_t op, const uint64_t args[5], long *ret, int *err);
    int xp_multicall(int fd, xp_multicall_entry *entries, unsigned count, int *ret, int *err);
    int xp_hypercall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                          int use_syscall, int64_t *rets, int *errs, int *err);
    int xp_multicall_many(int fd, unsigned count, const uint64_t *ops, const uint64_t *args,
                          int64_t *results, int *ret, int *err);
    int xp_guard_install(const char *const *sonames, int n, char *err, size_t errlen);
    int xp_guard_slots(const char *soname);
    unsigned long xp_guard_refused(void);
    """
)
ffi.set_source(
    "xenprobe._transport",
    '#include "transport.h"\n#include "guard.h"\n#include "platform_abi.h"\n'
    "int xp_check_sysctl_cmd(uint32_t cmd);\n"
    "int xp_check_domctl_cmd(uint32_t cmd);\n"
    "int xp_check_platform_cmd(uint32_t cmd);\n"
    "int xp_check_sysctl(const void *copy, size_t size);\n"
    "int xp_check_entry(const xp_multicall_entry *e);\n",
    sources=[f"{HERE}/transport.c", f"{HERE}/allowlist.c", f"{HERE}/guard.c"],
    include_dirs=[HERE],
    extra_compile_args=compile_args(),
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
