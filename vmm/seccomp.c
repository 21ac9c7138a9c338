/* libseccomp allow-lists for VMM threads.  The guest is untrusted, so a
 * thread that emulates devices on its behalf may only do what emulation
 * needs: no exec, no new files or sockets, ioctl only for KVM requests. */
#include "vmm_seccomp.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const int common_syscalls[] = {
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
    SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
    SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(lseek), SCMP_SYS(close),
    SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(fcntl),
    SCMP_SYS(fallocate), SCMP_SYS(fdatasync), SCMP_SYS(fsync),
    SCMP_SYS(futex), SCMP_SYS(sched_yield), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep),
    SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(getpid), SCMP_SYS(gettid),
    SCMP_SYS(getrandom), SCMP_SYS(restart_syscall), SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigprocmask), SCMP_SYS(sigaltstack), SCMP_SYS(tgkill), SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap), SCMP_SYS(madvise),
    SCMP_SYS(brk), SCMP_SYS(set_robust_list), SCMP_SYS(rseq),
    SCMP_SYS(eventfd2), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
    SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
    SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_register),
};

static const int io_only_syscalls[] = {
    SCMP_SYS(epoll_create1), SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime),
    SCMP_SYS(sched_getaffinity), SCMP_SYS(sched_setaffinity),
};

static const unsigned long allowed_ioctls[] = {
    KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_TRANSLATE,
    KVM_IRQ_LINE, KVM_SET_GSI_ROUTING, KVM_IRQFD, KVM_IOEVENTFD, KVM_SIGNAL_MSI,
    FIONBIO, FIONREAD, TCGETS,
};

/* A syscall this libseccomp does not know on this architecture cannot be
 * made, so it need not be allowed either. */
static int allow(scmp_filter_ctx ctx, int nr)
{
    if (nr < 0)
        return 0;
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
}

int seccomp_apply(enum seccomp_profile profile)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < sizeof(common_syscalls) / sizeof(common_syscalls[0]) && rc == 0; i++)
        rc = allow(ctx, common_syscalls[i]);
    if (profile == SECCOMP_PROFILE_NET) {
        if (rc == 0)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                                  SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
        if (rc == 0)
            rc = allow(ctx, SCMP_SYS(connect));
    }
    if (profile == SECCOMP_PROFILE_IO || profile == SECCOMP_PROFILE_NET) {
        for (size_t i = 0; i < sizeof(io_only_syscalls) / sizeof(io_only_syscalls[0]) && rc == 0;
             i++)
            rc = allow(ctx, io_only_syscalls[i]);
    }
    for (size_t i = 0; i < sizeof(allowed_ioctls) / sizeof(allowed_ioctls[0]) && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, allowed_ioctls[i]));
    /* Threads only (device workers); never a new process. */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    /* clone3 takes its flags in memory seccomp cannot see: make glibc fall
     * back to clone. */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc;
}

enum selftest_action { TRY_NOTHING, TRY_EXECVE, TRY_SOCKET, TRY_UNIX_SOCKET, TRY_FOREIGN_IOCTL };

struct selftest_arg {
    enum seccomp_profile profile;
    enum selftest_action action;
    int pipe_fd;
};

static void *selftest_thread(void *p)
{
    struct selftest_arg *arg = p;
    if (seccomp_apply(arg->profile) < 0)
        _exit(100);
    /* Allowed calls still work under the filter. */
    if (write(arg->pipe_fd, "ok", 2) != 2)
        _exit(101);
    switch (arg->action) {
    case TRY_EXECVE: {
        char *argv[] = { "/bin/true", NULL };
        syscall(SYS_execve, "/bin/true", argv, NULL);
        _exit(102); /* not reached if blocked */
    }
    case TRY_SOCKET:
        syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
        _exit(103);
    case TRY_UNIX_SOCKET:
        if (syscall(SYS_socket, AF_UNIX, SOCK_SEQPACKET, 0) < 0)
            _exit(105);
        break;
    case TRY_FOREIGN_IOCTL: {
        int pgrp;
        syscall(SYS_ioctl, 0, TIOCGPGRP, &pgrp);
        _exit(104);
    }
    case TRY_NOTHING:
        break;
    }
    return NULL;
}

/* Runs `action` on a vCPU-profile thread in a child process; returns the
 * child's wait status, or -1. */
static int run_selftest_child(enum seccomp_profile profile, enum selftest_action action,
                              char *said, size_t saidlen)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        struct selftest_arg arg = { profile, action, fds[1] };
        pthread_t t;
        if (pthread_create(&t, NULL, selftest_thread, &arg) != 0)
            _exit(99);
        pthread_join(t, NULL);
        _exit(0);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], said, saidlen - 1);
    said[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return status;
}

int seccomp_selftest(void)
{
    static const char *const profile_names[] = { "vCPU", "I/O", "NIC" };
    static const struct {
        enum seccomp_profile profile;
        enum selftest_action action;
        const char *what;
        bool must_block;
    } cases[] = {
        { SECCOMP_PROFILE_VCPU, TRY_NOTHING, "allowed calls only (write)", false },
        { SECCOMP_PROFILE_VCPU, TRY_EXECVE, "execve", true },
        { SECCOMP_PROFILE_VCPU, TRY_SOCKET, "socket", true },
        { SECCOMP_PROFILE_VCPU, TRY_FOREIGN_IOCTL, "ioctl(TIOCGPGRP), not a KVM request", true },
        { SECCOMP_PROFILE_IO, TRY_EXECVE, "execve", true },
        { SECCOMP_PROFILE_IO, TRY_UNIX_SOCKET, "socket(AF_UNIX)", true },
        { SECCOMP_PROFILE_NET, TRY_UNIX_SOCKET, "socket(AF_UNIX)", false },
        { SECCOMP_PROFILE_NET, TRY_SOCKET, "socket(AF_INET)", true },
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char said[16];
        int status = run_selftest_child(cases[i].profile, cases[i].action, said, sizeof(said));
        bool killed = status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
        bool clean = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        bool allowed_ok = strcmp(said, "ok") == 0;
        bool pass = allowed_ok && (cases[i].must_block ? killed : clean);
        printf("seccomp selftest: %s profile, %s: %s (%s)\n", profile_names[cases[i].profile],
               cases[i].what,
               pass ? "PASS" : "FAIL",
               killed ? "blocked: process killed by SIGSYS"
               : clean ? "allowed"
               : status >= 0 && WIFEXITED(status) ? "call went through"
                                                  : "unexpected status");
        failures += !pass;
    }
    return failures ? -1 : 0;
}
