/* libseccomp allow-lists for VMM threads.  The guest is untrusted, so a
 * thread that emulates devices on its behalf may only do what emulation
 * needs: no exec, no new files or sockets, ioctl only for KVM requests. */
#include "vmm_seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define ONLY(p) (1u << SECCOMP_PROFILE_##p)
#define ALL_THREADS ((1u << SECCOMP_PROFILE_PROCESS) - 1)
#define DEVICES (ONLY(IO) | ONLY(NET))
/* The I/O-thread-like work the main thread does at teardown (draining and
 * closing disks, unmounting a datastore). */
#define FILE_IO (ONLY(VCPU) | ONLY(IO) | ONLY(SUPERVISOR))

/* Which profiles allow each call unconditionally.  SECCOMP_PROFILE_PROCESS
 * allows everything listed here (it is the union), whatever the mask. */
static const struct {
    int nr;
    unsigned profiles;
} plain_rules[] = {
    /* Every thread: memory (malloc), locks, time, exiting, aborting. */
    { SCMP_SYS(read), ALL_THREADS }, { SCMP_SYS(write), ALL_THREADS },
    { SCMP_SYS(close), ALL_THREADS }, { SCMP_SYS(futex), ALL_THREADS },
    { SCMP_SYS(mmap), ALL_THREADS }, { SCMP_SYS(munmap), ALL_THREADS },
    { SCMP_SYS(mprotect), ALL_THREADS }, { SCMP_SYS(mremap), ALL_THREADS },
    { SCMP_SYS(madvise), ALL_THREADS }, { SCMP_SYS(brk), ALL_THREADS },
    { SCMP_SYS(clock_gettime), ALL_THREADS }, { SCMP_SYS(gettimeofday), ALL_THREADS },
    { SCMP_SYS(nanosleep), ALL_THREADS }, { SCMP_SYS(clock_nanosleep), ALL_THREADS },
    { SCMP_SYS(sched_yield), ALL_THREADS }, { SCMP_SYS(getpid), ALL_THREADS },
    { SCMP_SYS(gettid), ALL_THREADS }, { SCMP_SYS(tgkill), ALL_THREADS },
    { SCMP_SYS(rt_sigprocmask), ALL_THREADS }, { SCMP_SYS(rt_sigreturn), ALL_THREADS },
    { SCMP_SYS(restart_syscall), ALL_THREADS }, { SCMP_SYS(getrandom), ALL_THREADS },
    { SCMP_SYS(exit), ALL_THREADS }, { SCMP_SYS(exit_group), ALL_THREADS },
    { SCMP_SYS(fstat), ALL_THREADS }, { SCMP_SYS(newfstatat), ALL_THREADS },
    /* Files: disk I/O, syncing, holes, OFD byte-range locks (libvdfs). */
    { SCMP_SYS(readv), FILE_IO }, { SCMP_SYS(writev), FILE_IO },
    { SCMP_SYS(pread64), FILE_IO }, { SCMP_SYS(pwrite64), FILE_IO },
    { SCMP_SYS(preadv), FILE_IO }, { SCMP_SYS(pwritev), FILE_IO },
    { SCMP_SYS(preadv2), FILE_IO }, { SCMP_SYS(pwritev2), FILE_IO },
    { SCMP_SYS(lseek), FILE_IO }, { SCMP_SYS(fallocate), FILE_IO },
    { SCMP_SYS(fdatasync), FILE_IO }, { SCMP_SYS(fsync), FILE_IO },
    { SCMP_SYS(fcntl), FILE_IO | ONLY(NET) },
    { SCMP_SYS(io_uring_enter), FILE_IO },
    { SCMP_SYS(io_uring_register), ONLY(VCPU) | ONLY(SUPERVISOR) },
    /* New rings: only libvdfs's committer (the process profile), when its
     * pool grows. */
    { SCMP_SYS(io_uring_setup), 0 },
    /* Waiting on eventfds, sockets and timers. */
    { SCMP_SYS(eventfd2), ONLY(VCPU) },
    { SCMP_SYS(poll), ONLY(VCPU) | ONLY(CONSOLE) }, { SCMP_SYS(ppoll), ONLY(VCPU) | ONLY(CONSOLE) },
    { SCMP_SYS(epoll_wait), ONLY(VCPU) | DEVICES | ONLY(SUPERVISOR) },
    { SCMP_SYS(epoll_pwait), ONLY(VCPU) | DEVICES | ONLY(SUPERVISOR) },
    { SCMP_SYS(epoll_ctl), ONLY(VCPU) | DEVICES | ONLY(SUPERVISOR) },
    { SCMP_SYS(timerfd_settime), DEVICES }, { SCMP_SYS(timerfd_gettime), ONLY(NET) },
    /* Frames to and from the switch on an existing socket. */
    { SCMP_SYS(sendmsg), ONLY(VCPU) | ONLY(NET) }, { SCMP_SYS(recvmsg), ONLY(VCPU) | ONLY(NET) },
    { SCMP_SYS(sendto), ONLY(VCPU) | ONLY(NET) }, { SCMP_SYS(recvfrom), ONLY(VCPU) | ONLY(NET) },
    { SCMP_SYS(sendmmsg), ONLY(NET) }, { SCMP_SYS(recvmmsg), ONLY(NET) },
    { SCMP_SYS(getsockopt), ONLY(NET) },
    { SCMP_SYS(connect), ONLY(NET) },
    /* A thread's own signal stack (sanitizers set one up and take it
     * down in every thread). */
    { SCMP_SYS(sigaltstack), ALL_THREADS },
    { SCMP_SYS(rt_sigtimedwait), ONLY(SIGNALS) },
    /* The registry entry goes when the VM ends (admission_release). */
    { SCMP_SYS(unlink), ONLY(SUPERVISOR) }, { SCMP_SYS(unlinkat), ONLY(SUPERVISOR) },
    /* Starting threads after setup: the vCPUs (rt_sigaction: their kick
     * signal), and anything a library starts while they run. */
    { SCMP_SYS(rt_sigaction), 0 }, { SCMP_SYS(set_robust_list), ONLY(VCPU) },
    { SCMP_SYS(rseq), ONLY(VCPU) },
    /* glibc's malloc sizes its arenas by the CPU count the first time a
     * thread allocates, which a datastore disk's workers do only once
     * confined. */
    { SCMP_SYS(sched_getaffinity), ALL_THREADS },
#if defined(__SANITIZE_ADDRESS__)
    /* LeakSanitizer's check at exit runs in the main thread: it stops the
     * world from a ptrace-ing helper process (clone without CLONE_THREAD)
     * and reads /proc/self.  Sanitizer builds only. */
    { SCMP_SYS(ptrace), ONLY(SUPERVISOR) }, { SCMP_SYS(wait4), ONLY(SUPERVISOR) },
    { SCMP_SYS(open), ONLY(SUPERVISOR) }, { SCMP_SYS(openat), ONLY(SUPERVISOR) },
    { SCMP_SYS(getdents), ONLY(SUPERVISOR) }, { SCMP_SYS(getdents64), ONLY(SUPERVISOR) },
    { SCMP_SYS(prctl), ONLY(SUPERVISOR) }, { SCMP_SYS(getppid), ONLY(SUPERVISOR) },
    { SCMP_SYS(rt_sigaction), ONLY(SUPERVISOR) },
    { SCMP_SYS(readlink), ONLY(SUPERVISOR) }, { SCMP_SYS(kill), ONLY(SUPERVISOR) },
    { SCMP_SYS(clone), ONLY(SUPERVISOR) },
#endif
};

/* Refused with an error instead of killing, where libc probes and copes:
 * malloc reads /proc/sys/vm/overcommit_memory the first time it trims a
 * thread's heap, and does without when the open fails. */
static const struct {
    int nr;
    int error;
} errno_rules[] = {
    { SCMP_SYS(open), EACCES }, { SCMP_SYS(openat), EACCES }, { SCMP_SYS(openat2), EACCES },
    { SCMP_SYS(creat), EACCES },
};

/* ioctl requests, compared on the low 32 bits of the request argument. */
static const struct {
    unsigned long request;
    unsigned profiles;
} ioctl_rules[] = {
    { KVM_RUN, ONLY(VCPU) }, { KVM_GET_REGS, ONLY(VCPU) }, { KVM_SET_REGS, ONLY(VCPU) },
    { KVM_GET_SREGS, ONLY(VCPU) }, { KVM_SET_SREGS, ONLY(VCPU) }, { KVM_TRANSLATE, ONLY(VCPU) },
    /* The UART's interrupt line, and the SCI (the power button). */
    { KVM_IRQ_LINE, ONLY(VCPU) | ONLY(CONSOLE) | ONLY(SIGNALS) },
    /* MSI-X: routes are programmed when a vector first fires. */
    { KVM_SET_GSI_ROUTING, ONLY(VCPU) | DEVICES | ONLY(SUPERVISOR) },
    { KVM_IRQFD, ONLY(VCPU) | DEVICES | ONLY(SUPERVISOR) },
    { KVM_SIGNAL_MSI, ONLY(VCPU) | DEVICES },
    /* BAR moves (vCPU) and device removal (teardown). */
    { KVM_IOEVENTFD, ONLY(VCPU) | ONLY(SUPERVISOR) },
    { FIONBIO, ONLY(VCPU) }, { FIONREAD, ONLY(VCPU) },
    /* stdio asks whether stdout/stderr is a terminal. */
    { TCGETS, ALL_THREADS },
};

/* A syscall this libseccomp does not know on this architecture cannot be
 * made, so it need not be allowed either. */
static int allow(scmp_filter_ctx ctx, int nr)
{
    if (nr < 0)
        return 0;
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
}

static bool in_profile(unsigned mask, enum seccomp_profile profile)
{
    return profile == SECCOMP_PROFILE_PROCESS || (mask & (1u << profile));
}

/* libseccomp refuses a second, different rule for a call already allowed
 * outright. */
static bool allowed_outright(int nr, enum seccomp_profile profile)
{
    for (size_t i = 0; i < sizeof(plain_rules) / sizeof(plain_rules[0]); i++) {
        if (plain_rules[i].nr == nr && in_profile(plain_rules[i].profiles, profile))
            return true;
    }
    return false;
}

/* Builds `profile` into a new filter context (default: kill the process). */
static scmp_filter_ctx build_profile(enum seccomp_profile profile, int *rc_out)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    int rc = ctx ? 0 : -ENOMEM;
    for (size_t i = 0; i < sizeof(plain_rules) / sizeof(plain_rules[0]) && rc == 0; i++) {
        if (in_profile(plain_rules[i].profiles, profile))
            rc = allow(ctx, plain_rules[i].nr);
    }
    for (size_t i = 0; i < sizeof(errno_rules) / sizeof(errno_rules[0]) && rc == 0; i++) {
        if (errno_rules[i].nr >= 0 && !allowed_outright(errno_rules[i].nr, profile))
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)errno_rules[i].error),
                                  errno_rules[i].nr, 0);
    }
    for (size_t i = 0; i < sizeof(ioctl_rules) / sizeof(ioctl_rules[0]) && rc == 0; i++) {
        if (in_profile(ioctl_rules[i].profiles, profile))
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
                                          ioctl_rules[i].request));
    }
    /* Only Unix sockets, only for the NIC: a new connection to the switch. */
    if (rc == 0 && in_profile(ONLY(NET), profile))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0));
    /* Threads only, never a new process. */
    if (rc == 0 && in_profile(ONLY(VCPU), profile) && !allowed_outright(SCMP_SYS(clone), profile))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    /* clone3 takes its flags in memory seccomp cannot see: make glibc fall
     * back to clone. */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* A disk thread uses the rings made at setup; libvdfs, refused a new
     * one, waits for a free ring or falls back to pread/pwrite. */
    if (rc == 0 && profile == SECCOMP_PROFILE_IO)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0);
    /* Threads started after setup (the vCPUs) name themselves first. */
    if (rc == 0 && profile == SECCOMP_PROFILE_PROCESS && !allowed_outright(SCMP_SYS(prctl), profile))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                              SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME, 0));
    /* Under the process filter, threads narrow themselves further. */
    if (rc == 0 && profile == SECCOMP_PROFILE_PROCESS)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 1,
                              SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER, 0));
    if (rc < 0 && ctx) {
        seccomp_release(ctx);
        ctx = NULL;
    }
    *rc_out = rc;
    return ctx;
}

int seccomp_apply(enum seccomp_profile profile)
{
    int rc;
    scmp_filter_ctx ctx = build_profile(profile, &rc);
    if (!ctx)
        return rc;
    rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc;
}

/* ---- compiled profiles and the end-of-setup gate ---- */

static struct sock_fprog programs[SECCOMP_PROFILE_COUNT];
static bool prepared;
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
/* GATE_FAILED: confining the process failed; no thread may go on. */
enum gate_state { GATE_SETUP, GATE_CONFINED, GATE_OFF, GATE_FAILED };
static enum gate_state gate = GATE_SETUP;

/* libseccomp 2.5 exports BPF only to a file descriptor. */
static int compile_profile(enum seccomp_profile profile, struct sock_fprog *prog)
{
    int rc;
    scmp_filter_ctx ctx = build_profile(profile, &rc);
    if (!ctx)
        return rc;
    int fd = memfd_create("vdfs-vm-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        seccomp_release(ctx);
        return rc;
    }
    rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    off_t size = rc == 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (rc == 0 && (size <= 0 || size % (off_t)sizeof(struct sock_filter) ||
                    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS))
        rc = -EINVAL;
    struct sock_filter *insns = rc == 0 ? malloc((size_t)size) : NULL;
    if (rc == 0 && !insns)
        rc = -ENOMEM;
    if (rc == 0 && pread(fd, insns, (size_t)size, 0) != size)
        rc = -EIO;
    close(fd);
    if (rc < 0) {
        free(insns);
        return rc;
    }
    prog->filter = insns;
    prog->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    return 0;
}

int seccomp_prepare(void)
{
    if (prepared)
        return 0;
    for (int p = 0; p < SECCOMP_PROFILE_COUNT; p++) {
        int rc = compile_profile((enum seccomp_profile)p, &programs[p]);
        if (rc < 0)
            return rc;
    }
    prepared = true;
    return 0;
}

static int install(enum seccomp_profile profile, unsigned flags)
{
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &programs[profile]);
    if (rc < 0)
        return -errno;
    /* TSYNC names a thread it could not synchronise with a positive id. */
    return rc > 0 ? -EBUSY : 0;
}

static void open_gate(enum gate_state state)
{
    pthread_mutex_lock(&gate_lock);
    gate = state;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

int seccomp_confine_process(bool enable)
{
    if (!enable) {
        open_gate(GATE_OFF);
        return 0;
    }
    if (!prepared) {
        open_gate(GATE_FAILED);
        return -EINVAL;
    }
    /* Needed to filter without CAP_SYS_ADMIN; TSYNC passes it on. */
    int rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
    if (rc == 0)
        rc = install(SECCOMP_PROFILE_PROCESS, SECCOMP_FILTER_FLAG_TSYNC);
    open_gate(rc == 0 ? GATE_CONFINED : GATE_FAILED);
    return rc;
}

int seccomp_thread_confine(enum seccomp_profile profile)
{
    if (!prepared)
        return 0;
    pthread_mutex_lock(&gate_lock);
    while (gate == GATE_SETUP)
        pthread_cond_wait(&gate_cond, &gate_lock);
    enum gate_state state = gate;
    pthread_mutex_unlock(&gate_lock);
    if (state == GATE_FAILED)
        return -ECANCELED;
    return state == GATE_CONFINED ? install(profile, 0) : 0;
}

/* ---- self-test ---- */

enum selftest_action {
    TRY_NOTHING, TRY_EXECVE, TRY_OPEN, TRY_SOCKET, TRY_UNIX_SOCKET, TRY_FOREIGN_IOCTL, TRY_CONNECT,
};

/* What a forbidden call must do. */
enum selftest_expect { EXPECT_ALLOWED, EXPECT_KILLED, EXPECT_EACCES };

/* Child exit statuses. */
#define SELFTEST_EXIT_WENT_THROUGH 0
#define SELFTEST_EXIT_EACCES 3

struct selftest_arg {
    enum seccomp_profile profile;
    enum selftest_action action;
    int pipe_fd;
    int go_fd; /* SECCOMP_PROFILE_PROCESS: readable once the process is confined */
};

/* Makes the call; returns (its result) only if the filter let it run or
 * refused it with an error. */
static long try_action(enum selftest_action action)
{
    switch (action) {
    case TRY_EXECVE: {
        char *argv[] = { "/bin/true", NULL };
        return syscall(SYS_execve, "/bin/true", argv, NULL);
    }
    case TRY_OPEN:
        return syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
    case TRY_SOCKET:
        return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    case TRY_UNIX_SOCKET:
        return syscall(SYS_socket, AF_UNIX, SOCK_SEQPACKET, 0);
    case TRY_FOREIGN_IOCTL: {
        int pgrp;
        return syscall(SYS_ioctl, 0, TIOCGPGRP, &pgrp);
    }
    case TRY_CONNECT: {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        return syscall(SYS_connect, -1, &sa, sizeof(sa));
    }
    case TRY_NOTHING:
        break;
    }
    return 0;
}

static void *selftest_thread(void *p)
{
    struct selftest_arg *arg = p;
    if (arg->profile == SECCOMP_PROFILE_PROCESS) {
        /* Started before the end of setup and never confining itself, as
         * a library's thread: the process filter alone must hold it. */
        char c;
        if (read(arg->go_fd, &c, 1) != 1)
            _exit(100);
    } else if (seccomp_thread_confine(arg->profile) < 0) {
        _exit(100);
    }
    /* Allowed calls still work under the filter. */
    if (write(arg->pipe_fd, "ok", 2) != 2)
        _exit(101);
    long rc = try_action(arg->action);
    _exit(rc < 0 && errno == EACCES ? SELFTEST_EXIT_EACCES : SELFTEST_EXIT_WENT_THROUGH);
}

/* In a child process: compiles the profiles, starts a thread that waits to
 * confine itself (as device threads do), ends setup the way vdfs-vm does,
 * and lets the thread act.  Returns the child's wait status, or -1. */
static int run_selftest_child(enum seccomp_profile profile, enum selftest_action action,
                              char *said, size_t saidlen)
{
    int fds[2], go[2];
    if (pipe(fds) < 0)
        return -1;
    if (pipe(go) < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        struct selftest_arg arg = { profile, action, fds[1], go[0] };
        pthread_t t;
        if (seccomp_prepare() < 0)
            _exit(98);
        if (pthread_create(&t, NULL, selftest_thread, &arg) != 0)
            _exit(99);
        if (seccomp_confine_process(true) < 0)
            _exit(97);
        if (write(go[1], "g", 1) != 1)
            _exit(96);
        pthread_join(t, NULL);
        _exit(95); /* the thread ends the process itself */
    }
    close(fds[1]);
    close(go[0]);
    close(go[1]);
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
    static const char *const profile_names[] = {
        [SECCOMP_PROFILE_VCPU] = "vCPU", [SECCOMP_PROFILE_IO] = "disk I/O",
        [SECCOMP_PROFILE_NET] = "NIC", [SECCOMP_PROFILE_CONSOLE] = "console input",
        [SECCOMP_PROFILE_SIGNALS] = "signal", [SECCOMP_PROFILE_SUPERVISOR] = "supervisor",
        [SECCOMP_PROFILE_PROCESS] = "process (unconfined thread)",
    };
    static const struct {
        enum seccomp_profile profile;
        enum selftest_action action;
        const char *what;
        enum selftest_expect expect;
    } cases[] = {
        { SECCOMP_PROFILE_VCPU, TRY_NOTHING, "allowed calls only (write)", EXPECT_ALLOWED },
        { SECCOMP_PROFILE_VCPU, TRY_EXECVE, "execve", EXPECT_KILLED },
        { SECCOMP_PROFILE_VCPU, TRY_SOCKET, "socket", EXPECT_KILLED },
        { SECCOMP_PROFILE_VCPU, TRY_FOREIGN_IOCTL, "ioctl(TIOCGPGRP), not a KVM request",
          EXPECT_KILLED },
        { SECCOMP_PROFILE_VCPU, TRY_OPEN, "openat", EXPECT_EACCES },
        { SECCOMP_PROFILE_IO, TRY_NOTHING, "allowed calls only (write)", EXPECT_ALLOWED },
        { SECCOMP_PROFILE_IO, TRY_EXECVE, "execve", EXPECT_KILLED },
        { SECCOMP_PROFILE_IO, TRY_OPEN, "openat", EXPECT_EACCES },
        { SECCOMP_PROFILE_IO, TRY_UNIX_SOCKET, "socket(AF_UNIX)", EXPECT_KILLED },
        { SECCOMP_PROFILE_IO, TRY_CONNECT, "connect", EXPECT_KILLED },
        { SECCOMP_PROFILE_IO, TRY_FOREIGN_IOCTL, "ioctl(TIOCGPGRP)", EXPECT_KILLED },
        { SECCOMP_PROFILE_NET, TRY_UNIX_SOCKET, "socket(AF_UNIX)", EXPECT_ALLOWED },
        { SECCOMP_PROFILE_NET, TRY_SOCKET, "socket(AF_INET)", EXPECT_KILLED },
        { SECCOMP_PROFILE_NET, TRY_OPEN, "openat", EXPECT_EACCES },
        { SECCOMP_PROFILE_NET, TRY_EXECVE, "execve", EXPECT_KILLED },
        { SECCOMP_PROFILE_CONSOLE, TRY_NOTHING, "allowed calls only (write)", EXPECT_ALLOWED },
        { SECCOMP_PROFILE_CONSOLE, TRY_UNIX_SOCKET, "socket(AF_UNIX)", EXPECT_KILLED },
        { SECCOMP_PROFILE_CONSOLE, TRY_FOREIGN_IOCTL, "ioctl(TIOCGPGRP)", EXPECT_KILLED },
        { SECCOMP_PROFILE_SIGNALS, TRY_NOTHING, "allowed calls only (write)", EXPECT_ALLOWED },
        { SECCOMP_PROFILE_SIGNALS, TRY_CONNECT, "connect", EXPECT_KILLED },
        { SECCOMP_PROFILE_SUPERVISOR, TRY_NOTHING, "allowed calls only (write)", EXPECT_ALLOWED },
        { SECCOMP_PROFILE_SUPERVISOR, TRY_EXECVE, "execve", EXPECT_KILLED },
        { SECCOMP_PROFILE_SUPERVISOR, TRY_SOCKET, "socket(AF_INET)", EXPECT_KILLED },
        { SECCOMP_PROFILE_PROCESS, TRY_NOTHING, "allowed calls only (write)", EXPECT_ALLOWED },
        { SECCOMP_PROFILE_PROCESS, TRY_EXECVE, "execve", EXPECT_KILLED },
        { SECCOMP_PROFILE_PROCESS, TRY_SOCKET, "socket(AF_INET)", EXPECT_KILLED },
        { SECCOMP_PROFILE_PROCESS, TRY_FOREIGN_IOCTL, "ioctl(TIOCGPGRP)", EXPECT_KILLED },
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char said[16];
        int status = run_selftest_child(cases[i].profile, cases[i].action, said, sizeof(said));
        bool killed = status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
        int code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        bool pass = strcmp(said, "ok") == 0; /* allowed calls worked */
        switch (cases[i].expect) {
        case EXPECT_ALLOWED: pass = pass && code == SELFTEST_EXIT_WENT_THROUGH; break;
        case EXPECT_KILLED: pass = pass && killed; break;
        case EXPECT_EACCES: pass = pass && code == SELFTEST_EXIT_EACCES; break;
        }
        char other[48];
        snprintf(other, sizeof(other), "unexpected wait status 0x%x", (unsigned)status);
        printf("seccomp selftest: %s profile, %s: %s (%s)\n", profile_names[cases[i].profile],
               cases[i].what, pass ? "PASS" : "FAIL",
               killed ? "blocked: process killed by SIGSYS"
               : code == SELFTEST_EXIT_EACCES ? "refused with EACCES"
               : code == SELFTEST_EXIT_WENT_THROUGH
                   ? (cases[i].expect == EXPECT_ALLOWED ? "allowed" : "call went through")
                   : other);
        failures += !pass;
    }
    return failures ? -1 : 0;
}
