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
    /* A NIC's thread: the I/O set plus (re)connecting a Unix socket to the
     * switch: socket(AF_UNIX, ...) and connect. */
    SECCOMP_PROFILE_NET,
};

/* Installs `profile` on the calling thread; anything outside the list kills
 * the whole process (SECCOMP_RET_KILL_PROCESS).  0 or -errno. */
int seccomp_apply(enum seccomp_profile profile);

/* In child processes, runs a vCPU-profile thread that makes an allowed call
 * and then a forbidden one (execve, socket, a non-KVM ioctl).  Returns 0 if
 * the allowed call worked and each forbidden one killed its process. */
int seccomp_selftest(void);

#endif
