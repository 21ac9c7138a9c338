/* KVM VM and vCPU lifecycle, the per-vCPU exit loop, and clear reports of
 * exits the VMM cannot continue from. */
#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bus_core.h"
#include "layout.h"
#include "memory.h"
#include "vmm_seccomp.h"

/* KVM's real-mode helpers on Intel need three pages of guest-physical
 * address space outside RAM; this is where QEMU puts them too. */
#define KVM_TSS_ADDR         0xfffbd000ul
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

static int kick_signal(void)
{
    return SIGRTMIN;
}

static void kick_handler(int sig)
{
    (void)sig;
}

struct vm *vm_create(unsigned ncpus, struct guest_memory *mem, struct bus *bus, char *err,
                     size_t errlen)
{
    struct vm *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    vm->kvm_fd = vm->vm_fd = -1;
    vm->mem = mem;
    vm->bus = bus;
    vm->ncpus = ncpus;
    pthread_mutex_init(&vm->stop_lock, NULL);
    pthread_cond_init(&vm->stop_cond, NULL);
    pthread_mutex_init(&vm->irq_lock, NULL);

    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        snprintf(err, errlen, "cannot open /dev/kvm: %s", strerror(errno));
        goto fail;
    }
    int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        snprintf(err, errlen, "KVM API version %d, expected %d", api, KVM_API_VERSION);
        goto fail;
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
        goto fail;
    }
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0) {
        snprintf(err, errlen, "KVM_SET_TSS_ADDR: %s", strerror(errno));
        goto fail;
    }
    uint64_t identity = KVM_IDENTITY_MAP_ADDR;
    (void)ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity);
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        snprintf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
        goto fail;
    }
    /* Linux calibrates against the PIT when it has no better clock; the
     * in-kernel one costs nothing until programmed. */
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) == 0) {
        /* Lost ticks are dropped, not reinjected (guests with kvmclock/TSC
         * do not count ticks).  Without the reinject notifiers KVM also
         * tears the VM down in ~5 ms instead of ~22 ms, measured here. */
        struct kvm_reinject_control reinject = { .pit_reinject = 0 };
        (void)ioctl(vm->vm_fd, KVM_REINJECT_CONTROL, &reinject);
    }
#ifdef KVM_CAP_EXIT_ON_EMULATION_FAILURE
    /* Ask for the failing instruction's bytes with emulation failures. */
    struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = { 1 } };
    (void)ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap);
#endif
    int rc = guest_memory_attach(mem, vm->vm_fd);
    if (rc < 0) {
        snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-rc));
        goto fail;
    }
    int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) {
        snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        goto fail;
    }
    vm->run_size = (size_t)run_size;
    vm->vcpus = calloc(ncpus, sizeof(*vm->vcpus));
    if (!vm->vcpus) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < ncpus; i++) {
        struct vcpu *cpu = &vm->vcpus[i];
        cpu->vm = vm;
        cpu->index = i;
        cpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
        if (cpu->fd < 0) {
            snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
            goto fail;
        }
        cpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu->fd, 0);
        if (cpu->run == MAP_FAILED) {
            cpu->run = NULL;
            snprintf(err, errlen, "mmap kvm_run: %s", strerror(errno));
            goto fail;
        }
        rc = cpu_setup_cpuid(vm->kvm_fd, cpu->fd, i, ncpus);
        if (rc < 0) {
            snprintf(err, errlen, "KVM_SET_CPUID2 on vCPU %u: %s", i, strerror(-rc));
            goto fail;
        }
    }
    return vm;
fail:
    vm_destroy(vm);
    return NULL;
}

void vm_destroy(struct vm *vm)
{
    if (!vm)
        return;
    if (vm->vcpus) {
        for (unsigned i = 0; i < vm->ncpus; i++) {
            if (vm->vcpus[i].run)
                munmap(vm->vcpus[i].run, vm->run_size);
            if (vm->vcpus[i].fd > 0)
                close(vm->vcpus[i].fd);
        }
        free(vm->vcpus);
    }
    free(vm->msi_routes);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    pthread_mutex_destroy(&vm->irq_lock);
    pthread_cond_destroy(&vm->stop_cond);
    pthread_mutex_destroy(&vm->stop_lock);
    free(vm);
}

int vm_irq_line(struct vm *vm, unsigned irq, int level)
{
    struct kvm_irq_level line = { .irq = irq, .level = level ? 1 : 0 };
    return ioctl(vm->vm_fd, KVM_IRQ_LINE, &line) < 0 ? -errno : 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status)
{
    pthread_mutex_lock(&vm->stop_lock);
    if (vm->stop_reason == VM_STOP_NONE) {
        vm->stop_reason = reason;
        vm->stop_status = status;
        atomic_store(&vm->stopping, true);
        pthread_cond_broadcast(&vm->stop_cond);
    }
    pthread_mutex_unlock(&vm->stop_lock);
}

bool vm_stopping(const struct vm *vm)
{
    return atomic_load(&vm->stopping);
}

static const char *exit_reason_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_UNKNOWN: return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_HYPERCALL: return "KVM_EXIT_HYPERCALL";
    case KVM_EXIT_DEBUG: return "KVM_EXIT_DEBUG";
    case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
    case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT: return "KVM_EXIT_SYSTEM_EVENT";
    default: return "unexpected exit";
    }
}

static const char *internal_suberror_name(uint32_t suberror)
{
    switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION: return "emulation failure";
    case KVM_INTERNAL_ERROR_SIMUL_EX: return "simultaneous exceptions";
    case KVM_INTERNAL_ERROR_DELIVERY_EV: return "exception delivery while handling an exit";
    case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: return "unexpected exit reason";
    default: return "unknown";
    }
}

/* Reads up to `len` bytes at the guest linear address `linear`, translating
 * each page through the vCPU's current page tables.  Returns bytes read. */
static size_t read_guest_linear(struct vcpu *cpu, uint64_t linear, uint8_t *out, size_t len)
{
    size_t done = 0;
    while (done < len) {
        uint64_t addr = linear + done;
        struct kvm_translation tr = { .linear_address = addr };
        uint64_t phys = addr;
        if (ioctl(cpu->fd, KVM_TRANSLATE, &tr) == 0) {
            if (!tr.valid)
                break;
            phys = tr.physical_address;
        }
        size_t chunk = 4096 - (addr & 4095);
        if (chunk > len - done)
            chunk = len - done;
        const uint8_t *src = guest_memory_at(cpu->vm->mem, phys, chunk);
        if (!src)
            break;
        memcpy(out + done, src, chunk);
        done += chunk;
    }
    return done;
}

static const char *cpu_mode_name(const struct kvm_sregs *sregs)
{
    if (!(sregs->cr0 & 1))
        return "real mode";
    if (sregs->efer & (1u << 10))
        return sregs->cs.l ? "64-bit long mode" : "compatibility mode";
    return (sregs->cr0 & (1u << 31)) ? "protected mode, paging" : "protected mode";
}

/* Everything a person needs to see which guest instruction stopped the VM. */
static void report_guest_state(struct vcpu *cpu, const uint8_t *kvm_bytes, size_t kvm_len)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    if (ioctl(cpu->fd, KVM_GET_REGS, &regs) < 0 || ioctl(cpu->fd, KVM_GET_SREGS, &sregs) < 0) {
        fprintf(stderr, "vdfs-vm:   (cannot read vCPU registers: %s)\n", strerror(errno));
        return;
    }
    uint64_t linear = sregs.cs.base + regs.rip;
    fprintf(stderr, "vdfs-vm:   RIP=0x%016llx (linear 0x%llx, %s, CPL %u)\n",
            (unsigned long long)regs.rip, (unsigned long long)linear, cpu_mode_name(&sregs),
            (unsigned)(sregs.cs.selector & 3));
    uint8_t bytes[16];
    size_t n = kvm_len;
    const char *source = "from KVM";
    if (n > 0) {
        memcpy(bytes, kvm_bytes, n > sizeof(bytes) ? sizeof(bytes) : n);
    } else {
        n = read_guest_linear(cpu, linear, bytes, 15);
        source = "from guest memory";
    }
    fprintf(stderr, "vdfs-vm:   instruction bytes at RIP (%s):", source);
    if (n == 0)
        fprintf(stderr, " (unreadable: RIP is not in guest RAM)");
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %02x", bytes[i]);
    fprintf(stderr, "\n");
    fprintf(stderr,
            "vdfs-vm:   RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n"
            "vdfs-vm:   RSI=%016llx RDI=%016llx RSP=%016llx RBP=%016llx RFLAGS=%08llx\n"
            "vdfs-vm:   CR0=%08llx CR3=%016llx CR4=%08llx EFER=%08llx CS=%04x\n",
            (unsigned long long)regs.rax, (unsigned long long)regs.rbx,
            (unsigned long long)regs.rcx, (unsigned long long)regs.rdx,
            (unsigned long long)regs.rsi, (unsigned long long)regs.rdi,
            (unsigned long long)regs.rsp, (unsigned long long)regs.rbp,
            (unsigned long long)regs.rflags, (unsigned long long)sregs.cr0,
            (unsigned long long)sregs.cr3, (unsigned long long)sregs.cr4,
            (unsigned long long)sregs.efer, sregs.cs.selector);
}

static void report_internal_error(struct vcpu *cpu)
{
    struct kvm_run *run = cpu->run;
    uint32_t sub = run->internal.suberror;
    fprintf(stderr, "vdfs-vm: vCPU %u stopped: KVM_EXIT_INTERNAL_ERROR, suberror %u (%s)\n",
            cpu->index, sub, internal_suberror_name(sub));
    const uint8_t *insn = NULL;
    size_t insn_len = 0;
#ifdef KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
    if (sub == KVM_INTERNAL_ERROR_EMULATION &&
        (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
        insn = run->emulation_failure.insn_bytes;
        insn_len = run->emulation_failure.insn_size;
        if (insn_len > sizeof(run->emulation_failure.insn_bytes))
            insn_len = sizeof(run->emulation_failure.insn_bytes);
    } else
#endif
    {
        uint32_t ndata = run->internal.ndata;
        if (ndata > 16)
            ndata = 16;
        if (ndata) {
            fprintf(stderr, "vdfs-vm:   data:");
            for (uint32_t i = 0; i < ndata; i++)
                fprintf(stderr, " 0x%llx", (unsigned long long)run->internal.data[i]);
            fprintf(stderr, "\n");
        }
    }
    report_guest_state(cpu, insn, insn_len);
}

static void handle_io(struct vcpu *cpu)
{
    struct kvm_run *run = cpu->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
    for (uint32_t i = 0; i < run->io.count; i++) {
        bus_dispatch(cpu->vm->bus, BUS_PIO, run->io.port, data, run->io.size, is_write);
        data += run->io.size;
    }
}

static void handle_mmio(struct vcpu *cpu)
{
    struct kvm_run *run = cpu->run;
    uint32_t len = run->mmio.len <= sizeof(run->mmio.data) ? run->mmio.len : sizeof(run->mmio.data);
    bus_dispatch(cpu->vm->bus, BUS_MMIO, run->mmio.phys_addr, run->mmio.data, len,
                 run->mmio.is_write != 0);
}

/* Handles one exit.  Returns false when this vCPU must stop. */
static bool handle_exit(struct vcpu *cpu)
{
    struct vm *vm = cpu->vm;
    struct kvm_run *run = cpu->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(cpu);
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(cpu);
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; nothing could wake us. */
        fprintf(stderr, "vdfs-vm: vCPU %u halted with no way to wake up\n", cpu->index);
        vm_request_stop(vm, VM_STOP_CRASH, 0);
        return false;
    case KVM_EXIT_SHUTDOWN:
        fprintf(stderr,
                "vdfs-vm: vCPU %u: guest shut down (KVM_EXIT_SHUTDOWN: triple fault, an exception "
                "the guest could not handle)\n",
                cpu->index);
        report_guest_state(cpu, NULL, 0);
        vm_request_stop(vm, VM_STOP_CRASH, 0);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
            vm_request_stop(vm, VM_STOP_RESET, 0);
        } else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
            vm_request_stop(vm, VM_STOP_POWEROFF, 0);
        } else {
            fprintf(stderr, "vdfs-vm: vCPU %u: system event %u\n", cpu->index,
                    run->system_event.type);
            vm_request_stop(vm, VM_STOP_CRASH, 0);
        }
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        report_internal_error(cpu);
        vm_request_stop(vm, VM_STOP_CRASH, 0);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        fprintf(stderr, "vdfs-vm: vCPU %u: KVM_EXIT_FAIL_ENTRY, hardware reason 0x%llx\n",
                cpu->index,
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        report_guest_state(cpu, NULL, 0);
        vm_request_stop(vm, VM_STOP_CRASH, 0);
        return false;
    default:
        fprintf(stderr, "vdfs-vm: vCPU %u: %s (exit reason %u)\n", cpu->index,
                exit_reason_name(run->exit_reason), run->exit_reason);
        report_guest_state(cpu, NULL, 0);
        vm_request_stop(vm, VM_STOP_CRASH, 0);
        return false;
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *cpu = arg;
    struct vm *vm = cpu->vm;
    char name[16];
    snprintf(name, sizeof(name), "vcpu%u", cpu->index);
    pthread_setname_np(pthread_self(), name);
    {
        int rc = vm->seccomp ? seccomp_apply(SECCOMP_PROFILE_VCPU)
                             : seccomp_thread_confine(SECCOMP_PROFILE_VCPU);
        if (rc < 0) {
            fprintf(stderr, "vdfs-vm: vCPU %u: cannot install seccomp filter: %s\n", cpu->index,
                    strerror(-rc));
            vm_request_stop(vm, VM_STOP_ERROR, 0);
            return NULL;
        }
    }
    while (!vm_stopping(vm)) {
        if (ioctl(cpu->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            fprintf(stderr, "vdfs-vm: vCPU %u: KVM_RUN: %s\n", cpu->index, strerror(errno));
            vm_request_stop(vm, VM_STOP_ERROR, 0);
            break;
        }
        if (!handle_exit(cpu))
            break;
    }
    return NULL;
}

int vm_start(struct vm *vm, const struct boot_entry *boot)
{
    struct sigaction sa = { .sa_handler = kick_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal(), &sa, NULL);

    vm->boot = *boot;
    int rc = cpu_setup_boot_regs(vm->vcpus[0].fd, vm->mem, boot);
    if (rc < 0) {
        fprintf(stderr, "vdfs-vm: cannot set boot registers: %s\n", strerror(-rc));
        vm_request_stop(vm, VM_STOP_ERROR, 0);
        return -1;
    }
    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct vcpu *cpu = &vm->vcpus[i];
        rc = pthread_create(&cpu->thread, NULL, vcpu_thread, cpu);
        if (rc != 0) {
            fprintf(stderr, "vdfs-vm: cannot start vCPU thread %u: %s\n", i, strerror(rc));
            vm_request_stop(vm, VM_STOP_ERROR, 0);
            return -1;
        }
        cpu->started = true;
    }
    return 0;
}

enum vm_stop_reason vm_wait(struct vm *vm, int *status)
{
    pthread_mutex_lock(&vm->stop_lock);
    while (vm->stop_reason == VM_STOP_NONE)
        pthread_cond_wait(&vm->stop_cond, &vm->stop_lock);
    pthread_mutex_unlock(&vm->stop_lock);

    /* immediate_exit makes a KVM_RUN entered after the kick return at once. */
    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct vcpu *cpu = &vm->vcpus[i];
        if (!cpu->started)
            continue;
        cpu->run->immediate_exit = 1;
        pthread_kill(cpu->thread, kick_signal());
    }
    for (unsigned i = 0; i < vm->ncpus; i++) {
        if (vm->vcpus[i].started)
            pthread_join(vm->vcpus[i].thread, NULL);
    }
    *status = vm->stop_status;
    return vm->stop_reason;
}

enum vm_stop_reason vm_run(struct vm *vm, const struct boot_entry *boot, int *status)
{
    vm_start(vm, boot);
    return vm_wait(vm, status);
}
