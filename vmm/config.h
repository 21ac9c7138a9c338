/* A VM's configuration: parsed from a .vmx-like `key = value` file and
 * overridden by command-line flags.  See docs/vmm.md for the format. */
#ifndef VDFS_VMM_CONFIG_H
#define VDFS_VMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_DISKS 8
#define CONFIG_MAX_NICS  4
#define CONFIG_MAX_CPUS  64
#define CONFIG_PATH_MAX  4096

struct disk_config {
    char path[CONFIG_PATH_MAX];
    bool readonly;
    bool direct;     /* cache=none: O_DIRECT, the host page cache is bypassed */
    char serial[21]; /* virtio-blk serial: up to 20 bytes, NUL-terminated */
};

struct nic_config {
    char portgroup[32];
    uint8_t mac[6];
    bool mac_set;
    char switch_socket[CONFIG_PATH_MAX]; /* vdfs-switch port socket; empty: sw0's */
};

enum serial_sink { SERIAL_STDOUT = 0, SERIAL_FILE = 1 };

struct vm_config {
    char name[64];
    unsigned cpus;
    uint64_t memory_bytes;
    char kernel[CONFIG_PATH_MAX];
    char initrd[CONFIG_PATH_MAX];
    char cmdline[4096];
    struct disk_config disks[CONFIG_MAX_DISKS];
    unsigned ndisks;
    struct nic_config nics[CONFIG_MAX_NICS];
    unsigned nnics;
    enum serial_sink serial;
    char serial_path[CONFIG_PATH_MAX];
    char switch_socket[CONFIG_PATH_MAX];
    double cpu_overcommit_ratio;
    bool allow_mem_overcommit;
};

/* Fills `cfg` with defaults (1 vCPU, 256 MiB, serial on stdout, ratio 4). */
void config_defaults(struct vm_config *cfg);

/* Parses the file at `path` into `cfg` (on top of what it holds).  On error
 * writes a message naming file and line into `err` and returns -1. */
int config_load(struct vm_config *cfg, const char *path, char *err, size_t errlen);

/* Applies one `key = value` setting (the same keys as the file).  Returns
 * 0, or -1 with a message in `err`. */
int config_set(struct vm_config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Checks the whole configuration against the host (kernel present, sizes
 * possible).  Returns 0, or -1 with a message in `err`. */
int config_validate(const struct vm_config *cfg, char *err, size_t errlen);

/* Parses a size such as "256M", "2G", "4096K" or "1048576" into bytes. */
int config_parse_size(const char *text, uint64_t *bytes);

#endif
