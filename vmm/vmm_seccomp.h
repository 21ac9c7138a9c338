/* Per-thread seccomp allow-lists (libseccomp).  A thread applies its own
 * profile; threads it creates afterwards inherit it. */
#ifndef VDFS_VMM_SECCOMP_H
#define VDFS_VMM_SECCOMP_H

enum seccomp_profile {
    /* vCPU threads: KVM_RUN and friends, device emulation on exits
     * (read/write/eventfd, io_uring submission, socket send/recv). */
    SECCOMP_PROFILE_VCPU,
    /* Device I/O threads: the vCPU set plus polling and file syncing. */
    SECCOMP_PROFILE_IO,
};

/* Installs `profile` on the calling thread; anything outside the list kills
 * the whole process (SECCOMP_RET_KILL_PROCESS).  0 or -errno. */
int seccomp_apply(enum seccomp_profile profile);

/* Runs a thread under the vCPU profile that tries execve(2) in a child
 * process... see seccomp.c.  Returns 0 if the forbidden call was blocked. */
int seccomp_selftest(void);

#endif
