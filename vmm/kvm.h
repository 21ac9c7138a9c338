/* The virtual machine: KVM VM and vCPU file descriptors, one thread per
 * vCPU, and the decision of how the VM ends. */
#ifndef VDFS_VMM_KVM_H
#define VDFS_VMM_KVM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "cpu_setup.h"

/* How a VM ended; main.c maps these to process exit codes. */
enum vm_stop_reason {
    VM_STOP_NONE = 0,
    VM_STOP_DEBUG_EXIT, /* guest wrote its status to port 0xf4 */
    VM_STOP_POWEROFF,   /* ACPI S5 */
    VM_STOP_RESET,      /* i8042 reset, ACPI reset, KVM system reset */
    VM_STOP_CRASH,      /* triple fault, emulation failure, internal error */
    VM_STOP_ERROR,      /* the VMM itself failed */
};

struct vcpu {
    struct vm *vm;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
};

struct vm_msi_route {
    int efd;
    uint32_t gsi;
    uint64_t addr;
    uint32_t data;
};

struct vm {
    int kvm_fd;
    int vm_fd;
    struct guest_memory *mem;
    struct bus *bus;
    unsigned ncpus;
    struct vcpu *vcpus;
    size_t run_size;
    struct boot_entry boot;
    /* Each vCPU thread installs the vCPU seccomp profile itself before it
     * first enters the guest (for tests).  Otherwise it confines itself
     * through seccomp_thread_confine(), which does nothing unless the
     * program called seccomp_prepare() (vdfs-vm run does). */
    bool seccomp;

    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    atomic_bool stopping;
    enum vm_stop_reason stop_reason;
    int stop_status;

    pthread_mutex_t irq_lock;
    struct vm_msi_route *msi_routes;
    size_t nmsi_routes;
};

/* Creates the VM with `ncpus` vCPUs (CPUID set up, not yet started) and
 * attaches guest memory.  NULL with a message in `err`. */
struct vm *vm_create(unsigned ncpus, struct guest_memory *mem, struct bus *bus, char *err,
                     size_t errlen);
void vm_destroy(struct vm *vm);

/* Raises or lowers an IOAPIC/PIC input line (legacy devices). */
int vm_irq_line(struct vm *vm, unsigned irq, int level);

/* Ends the VM; the first request wins.  Safe from any thread. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status);
bool vm_stopping(const struct vm *vm);

/* Sets the boot CPU's registers, starts one thread per vCPU and waits until
 * the VM ends.  Returns the stop reason; `status` receives its value. */
enum vm_stop_reason vm_run(struct vm *vm, const struct boot_entry *boot, int *status);
/* vm_run in two steps, so the caller can act while the vCPUs run: vm_start
 * returns 0, or -1 when the VM could not start (vm_wait then reports
 * VM_STOP_ERROR). */
int vm_start(struct vm *vm, const struct boot_entry *boot);
enum vm_stop_reason vm_wait(struct vm *vm, int *status);

/* Fills the services devices may use (ioeventfd, MSI irqfd). */
void vm_fill_services(struct vm *vm, struct vm_services *svc);

#endif
