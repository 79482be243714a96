/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The read-only allow-list on libxenctrl's own path to privcmd (guard.c).
 *
 * libxenctrl and the libraries under it issue their privcmd ioctls themselves,
 * not through transport.c. xp_guard_install() points their ioctl() relocations at
 * a guard that applies allowlist.c to every request and refuses the rest.
 */
#ifndef XENPROBE_GUARD_H
#define XENPROBE_GUARD_H

#include <stddef.h>

/*
 * Guards the loaded libraries with these SONAMEs and every libxen* library they
 * need, transitively. Each named library must be loaded. Returns the number of
 * relocation slots that now lead to the guard (slots guarded by an earlier call
 * count too), or -1 with a message in err. A failure found while reading the
 * libraries patches nothing; one while patching (mprotect) leaves the slots done so
 * far guarded, which is stricter, never looser. There is deliberately no way to
 * remove the guard.
 */
int xp_guard_install(const char *const *sonames, int n, char *err, size_t errlen);

/* Relocation slots of the loaded library with this SONAME that lead to the guard;
 * -1 if no loaded object has that SONAME. */
int xp_guard_slots(const char *soname);

/* Requests the guard refused (never passed on) since the process started. */
unsigned long xp_guard_refused(void);

#endif
