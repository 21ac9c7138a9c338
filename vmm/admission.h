/* Admission control against the host's capacity, as on an ESXi host: a
 * registry of running VMs (one file per VM under /run/vdfs-vm, or
 * $VDFS_VM_RUN_DIR) checked under a lock before a VM starts. */
#ifndef VDFS_VMM_ADMISSION_H
#define VDFS_VMM_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct host_capacity {
    unsigned cores;
    uint64_t memory_bytes;
};

struct vm_record {
    pid_t pid;
    char name[64];
    unsigned cpus;
    uint64_t memory_bytes;
    long long started; /* unix time */
    unsigned long long start_ticks; /* process start, /proc/PID/stat; 0 = unknown */
    /* From the VM's state file: whether a disk's writes wait for space,
     * since when (unix time), and which disk. */
    bool waiting_for_space;
    long long waiting_since;
    char waiting_disk[256];
};

struct admission_request {
    const char *name;
    unsigned cpus;
    uint64_t memory_bytes;
    double cpu_ratio;           /* vCPUs allowed per host core */
    bool allow_mem_overcommit;  /* admit, with a warning, beyond host RAM */
};

void host_capacity_read(struct host_capacity *host);
const char *admission_dir(void);

/* Admits and registers the calling process's VM, or refuses with a message
 * in `err` (-1).  A warning for admitted memory overcommit goes to stderr. */
int admission_admit(const struct admission_request *req, char *err, size_t errlen);
/* Removes the calling process's registry entry. */
void admission_release(void);
/* Records in the VM's state file, for `ps`, that a disk's writes started
 * or stopped waiting for space (virtio_blk_set_space_wait_hook). */
void admission_note_space_wait(const char *disk, bool waiting);

/* Whether the record's VMM still runs: the process exists, is no zombie,
 * and its pid has not been reused. */
bool vm_record_alive(const struct vm_record *r);
/* Lists live VMs (stale entries of dead processes are removed).  The array
 * is malloc'd; returns the count or -1. */
int admission_list(struct vm_record **out);

/* `vdfs-vm ps`: prints the VMs and their share of the host.  Exit code. */
int admission_ps(bool json, FILE *out);

#endif
