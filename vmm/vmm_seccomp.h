/* Per-thread seccomp allow-lists (libseccomp).  The guest is untrusted, so
 * every thread vdfs-vm runs after setup may only make the system calls its
 * job needs; anything else kills the process (SECCOMP_RET_KILL_PROCESS).
 *
 * How a VM is confined (see docs/vmm.md, SECURITY):
 *   1. seccomp_prepare() compiles every profile to BPF while the process
 *      may still do anything (threads later install it with one call);
 *   2. threads started during setup call seccomp_thread_confine(), which
 *      waits until setup is over;
 *   3. seccomp_confine_process() puts SECCOMP_PROFILE_PROCESS, the union
 *      of all profiles, on every thread at once (TSYNC), including threads
 *      libraries started (the libvdfs committer), then lets the waiting
 *      threads narrow themselves to their own profile. */
#ifndef VDFS_VMM_SECCOMP_H
#define VDFS_VMM_SECCOMP_H

#include <stdbool.h>

enum seccomp_profile {
    /* vCPU threads: KVM_RUN and friends, device emulation on exits
     * (read/write/eventfd, io_uring submission, socket send/recv). */
    SECCOMP_PROFILE_VCPU,
    /* A disk's I/O thread: epoll, eventfds, io_uring_enter, file I/O and
     * syncing, byte-range locks (libvdfs), MSI routes and irqfds. */
    SECCOMP_PROFILE_IO,
    /* A NIC's thread: epoll, eventfds, a timerfd, send/recv on the switch
     * socket and (re)connecting: socket(AF_UNIX, ...) and connect. */
    SECCOMP_PROFILE_NET,
    /* The console input thread: read stdin, raise the UART interrupt. */
    SECCOMP_PROFILE_CONSOLE,
    /* The signal thread: sigwait, a message, asking the VM to stop. */
    SECCOMP_PROFILE_SIGNALS,
    /* The main thread once the vCPUs run: wait for the VM to stop, then
     * tear down (join, close, unmount the datastore, unlink the registry
     * entry). */
    SECCOMP_PROFILE_SUPERVISOR,
    /* Every thread of a confined VM: the union of the profiles above, plus
     * installing a narrower filter and starting threads. */
    SECCOMP_PROFILE_PROCESS,
    SECCOMP_PROFILE_COUNT,
};

/* Installs `profile` on the calling thread now (libseccomp builds and
 * loads it).  0 or -errno. */
int seccomp_apply(enum seccomp_profile profile);

/* Compiles every profile.  Call once, before any thread starts; until it
 * is called, seccomp_thread_confine() does nothing.  0 or -errno. */
int seccomp_prepare(void);
/* Ends setup.  With `enable`, installs SECCOMP_PROFILE_PROCESS on all
 * threads (SECCOMP_FILTER_FLAG_TSYNC) and then lets threads waiting in
 * seccomp_thread_confine() install their own profile; without it they go
 * on unconfined.  0 or -errno (the process is then not confined). */
int seccomp_confine_process(bool enable);
/* For a thread's first action: waits for seccomp_confine_process(), then
 * installs `profile` on the calling thread if confinement is on.  Returns
 * 0 at once if seccomp_prepare() was never called.  0 or -errno. */
int seccomp_thread_confine(enum seccomp_profile profile);

/* In child processes, runs threads under each profile that make an allowed
 * call and then a forbidden one, and a thread started before
 * seccomp_confine_process() that makes a forbidden call afterwards.
 * Returns 0 if every allowed call worked and every forbidden one killed
 * its process with SIGSYS. */
int seccomp_selftest(void);

#endif
