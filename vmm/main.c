/* vdfs-vm: run a VM from a .vmx-like config, list running VMs, or check
 * the seccomp policy.  See docs/vmm.md. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acpi.h"
#include "admission.h"
#include "boot.h"
#include "bus_core.h"
#include "config.h"
#include "datastore.h"
#include "kvm.h"
#include "memory.h"
#include "platform.h"
#include "serial.h"
#include "stop.h"
#include "vmm_seccomp.h"
#include "pci.h"
#include "virtio_pci.h"
#include "virtio_spec.h"
#include "disk_vdfs.h"
#include "virtio_blk.h"
#include "virtio_net.h"

/* Exit codes besides the guest's own debug-exit status. */
#define EXIT_VMM_ERROR   1
#define EXIT_GUEST_CRASH 2
#define EXIT_GUEST_RESET 3

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vdfs-vm run [CONFIG.vmx] [options]   boot a VM\n"
            "       vdfs-vm ps [--json]                  list VMs against host capacity\n"
            "       vdfs-vm stop NAME|PID [--force] [--timeout S]  shut a VM down (ACPI power button),\n"
            "                                            or with --force power it off\n"
            "       vdfs-vm --seccomp-selftest           prove the seccomp allow-lists block\n"
            "\n"
            "CONFIG.vmx may be in a datastore, vdfs:IMAGE:/dir/vm.vmx: read through libvdfs, with\n"
            "its relative disk, kernel and initrd names in the same datastore folder.\n"
            "\n"
            "run options (override the config file):\n"
            "  --name NAME             VM name (registry, ps)\n"
            "  --cpus N                vCPUs (1-%d)\n"
            "  --memory SIZE           guest RAM, e.g. 256M, 2G\n"
            "  --kernel PATH           ELF with a PVH note, or a bzImage (or vdfs:IMAGE:/path)\n"
            "  --initrd PATH           initial ramdisk (or vdfs:IMAGE:/path)\n"
            "  --cmdline STRING        kernel command line\n"
            "  --disk PATH[,ro][,cache=none|writeback][,serial=X]\n"
            "                          virtio-blk disk, a file, a block device or\n"
            "                          vdfs:IMAGE:/path (repeatable; replaces the config's);\n"
            "                          cache=none: O_DIRECT (not for vdfs: disks)\n"
            "  --nic PORTGROUP[,mac=M] virtio-net NIC on the switch (repeatable)\n"
            "  --switch NAME|SOCKET    the vdfs-switch the NICs attach to: its name (port socket\n"
            "                          /run/vdfs-switch/NAME.sock) or its port socket (default sw0)\n"
            "  --serial stdout|file:PATH     where the guest console goes\n"
            "  --cpu-ratio R           vCPUs allowed per host core (default 4.0)\n"
            "  --allow-mem-overcommit  admit beyond host RAM, with a warning\n"
            "  --no-seccomp            no seccomp allow-lists (debugging)\n"
            "  -v, --verbose           report how the VM ended and unclaimed port accesses\n"
            "\n"
            "exit status: the guest's byte written to port 0xf4; 0 after ACPI poweroff;\n"
            "%d VMM error; %d guest crashed (emulation failure, triple fault); %d guest reset\n",
            CONFIG_MAX_CPUS, EXIT_VMM_ERROR, EXIT_GUEST_CRASH, EXIT_GUEST_RESET);
}

enum {
    OPT_NAME = 256, OPT_CPUS, OPT_MEMORY, OPT_KERNEL, OPT_INITRD, OPT_CMDLINE, OPT_DISK,
    OPT_NIC, OPT_SWITCH, OPT_SERIAL, OPT_CPU_RATIO, OPT_ALLOW_MEM, OPT_NO_SECCOMP, OPT_HELP,
};

struct run_options {
    bool allow_mem_overcommit;
    bool seccomp;
    bool verbose;
};

static int parse_run_args(int argc, char **argv, struct vm_config *cfg, struct run_options *opt)
{
    static const struct option longopts[] = {
        { "name", required_argument, NULL, OPT_NAME },
        { "cpus", required_argument, NULL, OPT_CPUS },
        { "memory", required_argument, NULL, OPT_MEMORY },
        { "kernel", required_argument, NULL, OPT_KERNEL },
        { "initrd", required_argument, NULL, OPT_INITRD },
        { "cmdline", required_argument, NULL, OPT_CMDLINE },
        { "disk", required_argument, NULL, OPT_DISK },
        { "nic", required_argument, NULL, OPT_NIC },
        { "switch", required_argument, NULL, OPT_SWITCH },
        { "serial", required_argument, NULL, OPT_SERIAL },
        { "cpu-ratio", required_argument, NULL, OPT_CPU_RATIO },
        { "allow-mem-overcommit", no_argument, NULL, OPT_ALLOW_MEM },
        { "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, OPT_HELP },
        { NULL, 0, NULL, 0 },
    };
    static const char *const keys[] = {
        [OPT_NAME - OPT_NAME] = "name",       [OPT_CPUS - OPT_NAME] = "cpus",
        [OPT_MEMORY - OPT_NAME] = "memory",   [OPT_KERNEL - OPT_NAME] = "kernel",
        [OPT_INITRD - OPT_NAME] = "initrd",   [OPT_CMDLINE - OPT_NAME] = "cmdline",
        [OPT_DISK - OPT_NAME] = "disk",       [OPT_NIC - OPT_NAME] = "nic",
        [OPT_SWITCH - OPT_NAME] = "switch",   [OPT_SERIAL - OPT_NAME] = "serial",
        [OPT_CPU_RATIO - OPT_NAME] = "cpu_overcommit_ratio",
    };
    /* Options may follow the config path: collect it first. */
    const char *config_path = NULL;
    if (argc > 1 && argv[1][0] != '-') {
        config_path = argv[1];
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    char err[512];
    if (config_path && config_load(cfg, config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "vdfs-vm: %s\n", err);
        return -1;
    }
    bool disks_from_flags = false, nics_from_flags = false;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
        switch (c) {
        case 'v':
            opt->verbose = true;
            continue;
        case OPT_ALLOW_MEM:
            opt->allow_mem_overcommit = true;
            continue;
        case OPT_NO_SECCOMP:
            opt->seccomp = false;
            continue;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        case '?':
            usage(stderr);
            return -1;
        default:
            break;
        }
        if (c == OPT_DISK && !disks_from_flags) {
            cfg->ndisks = 0;
            disks_from_flags = true;
        }
        if (c == OPT_NIC && !nics_from_flags) {
            cfg->nnics = 0;
            nics_from_flags = true;
        }
        if (config_set(cfg, keys[c - OPT_NAME], optarg, err, sizeof(err)) < 0) {
            fprintf(stderr, "vdfs-vm: --%s: %s\n", longopts[c - OPT_NAME].name, err);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vdfs-vm: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!config_path && !cfg->kernel[0]) {
        fprintf(stderr, "vdfs-vm: run needs a CONFIG file or --kernel\n");
        return -1;
    }
    if (config_validate(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "vdfs-vm: %s%s%s\n", config_path ? config_path : "",
                config_path ? ": " : "", err);
        return -1;
    }
    return 0;
}

/* A thread that cannot take its allow-list must not serve the guest. */
static void confine_or_die(enum seccomp_profile profile, const char *thread)
{
    int rc = seccomp_thread_confine(profile);
    if (rc < 0) {
        fprintf(stderr, "vdfs-vm: %s thread: cannot install its seccomp filter: %s\n", thread,
                strerror(-rc));
        _exit(EXIT_VMM_ERROR);
    }
}

static void confine_device_thread(uint32_t device_type)
{
    if (device_type == VIRTIO_ID_NET)
        confine_or_die(SECCOMP_PROFILE_NET, "virtio-net");
    else
        confine_or_die(SECCOMP_PROFILE_IO, "virtio device I/O");
}

struct signal_context {
    struct vm *vm;
    struct platform *platform;
    pthread_mutex_t lock;
    bool ended; /* the VM has ended: vm and platform go away (lock held) */
};

/* Presses the guest's power button on SIGPWR (`vdfs-vm stop`). Stops the VM
 * on SIGINT, SIGTERM or SIGHUP, and when this VMM's host on a datastore
 * holding its disks has fenced itself: its disks' locks may then go to
 * another host, which may start the same VM, so this one must not run on
 * (as ESXi ends a VM whose lock on its files was lost). */
static void *signal_thread(void *arg)
{
    struct signal_context *ctx = arg;
    confine_or_die(SECCOMP_PROFILE_SIGNALS, "signal");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPWR);
    const struct timespec fence_poll = {0, 100 * 1000000L};
    bool stop = false;
    while (!stop) {
        int sig = sigtimedwait(&set, NULL, &fence_poll);
        char image[4096];
        if (sig > 0 && sig != SIGPWR) {
            fprintf(stderr, "vdfs-vm: stopping the VM on signal %d\n", sig);
            stop = true;
        } else if (sig <= 0 && datastore_fenced(image, sizeof(image))) {
            fprintf(stderr,
                    "vdfs-vm: this VMM's host on datastore %s has fenced itself (its heartbeat lease ran out "
                    "or a metadata write failed): stopping the VM, whose disk locks other hosts may now take\n",
                    image);
            stop = true;
        }
        pthread_mutex_lock(&ctx->lock);
        bool ended = ctx->ended;
        if (!ended && sig == SIGPWR) {
            fprintf(stderr, "vdfs-vm: power button pressed (SIGPWR): waiting for the guest to power off\n");
            platform_press_power_button(ctx->platform);
        }
        if (!ended && stop)
            vm_request_stop(ctx->vm, VM_STOP_ERROR, 0);
        pthread_mutex_unlock(&ctx->lock);
        if (ended)
            break;
    }
    return NULL;
}

/* The PCI bus is returned through `pci_out`, even on failure,
 * so that the caller can tear it down. */
static int add_devices(struct vm *vm, const struct vm_config *cfg, struct vm_services *svc,
                       struct pci_bus **pci_out)
{
    vm_fill_services(vm, svc);
    struct pci_bus *pci = pci_bus_create(svc);
    *pci_out = pci;
    if (!pci) {
        fprintf(stderr, "vdfs-vm: cannot create the PCI bus\n");
        return -1;
    }
    for (unsigned i = 0; i < cfg->ndisks; i++) {
        const struct disk_config *disk = &cfg->disks[i];
        if (strncmp(disk->path, "vdfs:", 5) == 0) {
            if (disk->direct) {
                /* libvdfs owns its device I/O (O_DIRECT on shared images). */
                fprintf(stderr, "vdfs-vm: disk %s: cache= applies to plain files and "
                                "block devices, not datastore disks\n", disk->path);
                return -1;
            }
            char err[1024];
            struct blk_backend *be = disk_vdfs_open(disk->path, disk->readonly, err,
                                                    sizeof(err));
            if (!be) {
                fprintf(stderr, "vdfs-vm: %s\n", err);
                return -1;
            }
            if (virtio_blk_create_backend(pci, svc, disk, be) < 0)
                return -1;
            continue;
        }
        if (virtio_blk_create(pci, svc, disk) < 0) {
            fprintf(stderr, "vdfs-vm: disk %s: cannot attach\n", cfg->disks[i].path);
            return -1;
        }
    }
    for (unsigned i = 0; i < cfg->nnics; i++) {
        if (virtio_net_create(pci, svc, &cfg->nics[i]) < 0) {
            fprintf(stderr, "vdfs-vm: nic %s: cannot attach\n", cfg->nics[i].portgroup);
            return -1;
        }
    }
    return 0;
}

/* After the vCPUs have stopped: device threads first (they use guest
 * memory and the bus), then the VM and its memory. */
static void teardown(struct pci_bus *pci, struct serial *serial, struct platform *platform, struct vm *vm,
                     struct bus *bus, struct guest_memory *mem)
{
    virtio_net_destroy_all();
    virtio_blk_destroy_all();
    if (pci)
        pci_bus_destroy(pci);
    serial_destroy(serial);
    platform_destroy(platform);
    vm_destroy(vm);
    bus_destroy(bus);
    guest_memory_destroy(mem);
}

static const char *stop_reason_name(enum vm_stop_reason r)
{
    switch (r) {
    case VM_STOP_DEBUG_EXIT: return "guest wrote its status to port 0xf4";
    case VM_STOP_POWEROFF: return "ACPI poweroff";
    case VM_STOP_RESET: return "guest reset";
    case VM_STOP_CRASH: return "guest crashed";
    case VM_STOP_ERROR: return "VMM error or signal";
    default: return "unknown";
    }
}

static int cmd_run(int argc, char **argv)
{
    struct vm_config cfg;
    config_defaults(&cfg);
    struct run_options opt = { .seccomp = true };
    /* A config, kernel or initrd read from a datastore keeps it joined
     * until the VM's disks are open: left at exit if setup fails. */
    atexit(datastore_leave_files);
    if (parse_run_args(argc, argv, &cfg, &opt) < 0)
        return EXIT_VMM_ERROR;

    char err[512];
    struct admission_request req = {
        .name = cfg.name,
        .cpus = cfg.cpus,
        .memory_bytes = cfg.memory_bytes,
        .cpu_ratio = cfg.cpu_overcommit_ratio,
        .allow_mem_overcommit = opt.allow_mem_overcommit,
    };
    if (admission_admit(&req, err, sizeof(err)) < 0) {
        fprintf(stderr, "vdfs-vm: %s\n", err);
        return EXIT_VMM_ERROR;
    }
    atexit(admission_release);
    virtio_blk_set_space_wait_hook(admission_note_space_wait);

    int serial_fd = STDOUT_FILENO;
    if (cfg.serial == SERIAL_FILE) {
        serial_fd = open(cfg.serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (serial_fd < 0) {
            fprintf(stderr, "vdfs-vm: serial file %s: %s\n", cfg.serial_path, strerror(errno));
            return EXIT_VMM_ERROR;
        }
    }

    /* A console reader that goes away must not kill the VM mid-write, and
     * a VM run in the background must not be stopped for reading the
     * terminal (the read fails instead and console input ends). */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    /* Every thread started from here on waits, before it acts for the
     * guest, until setup is over and it can take its allow-list. */
    if (opt.seccomp) {
        int rc = seccomp_prepare();
        if (rc < 0) {
            fprintf(stderr, "vdfs-vm: cannot build the seccomp filters: %s\n", strerror(-rc));
            return EXIT_VMM_ERROR;
        }
    }
    virtio_pci_set_io_thread_hook(confine_device_thread);
    /* Signals are taken by one thread; vCPU threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPWR);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct guest_memory *mem = guest_memory_create(cfg.memory_bytes);
    if (!mem) {
        fprintf(stderr, "vdfs-vm: cannot map %" PRIu64 " MiB of guest memory: %s\n",
                cfg.memory_bytes >> 20, strerror(errno));
        return EXIT_VMM_ERROR;
    }
    struct bus *bus = bus_create();
    struct vm *vm = bus ? vm_create(cfg.cpus, mem, bus, err, sizeof(err)) : NULL;
    if (!vm) {
        fprintf(stderr, "vdfs-vm: %s\n", bus ? err : "out of memory");
        return EXIT_VMM_ERROR;
    }
    vm->seccomp = false; /* the vCPUs confine themselves with the other threads */
    struct platform *platform = platform_create(vm);
    struct serial *serial = serial_create(vm, serial_fd);
    if (!platform || !serial) {
        fprintf(stderr, "vdfs-vm: cannot set up platform devices\n");
        return EXIT_VMM_ERROR;
    }
    if (serial_start_input(serial, STDIN_FILENO) < 0) {
        fprintf(stderr, "vdfs-vm: cannot start the console input thread\n");
        return EXIT_VMM_ERROR;
    }
    struct vm_services svc;
    struct pci_bus *pci = NULL;
    if (add_devices(vm, &cfg, &svc, &pci) < 0)
        return EXIT_VMM_ERROR;

    uint64_t rsdp = acpi_build(mem, cfg.cpus);
    if (!rsdp) {
        fprintf(stderr, "vdfs-vm: ACPI tables do not fit\n");
        return EXIT_VMM_ERROR;
    }
    struct boot_request boot = {
        .kernel = cfg.kernel, .initrd = cfg.initrd, .cmdline = cfg.cmdline, .rsdp = rsdp,
    };
    struct boot_entry entry;
    if (boot_load(mem, &boot, &entry, err, sizeof(err)) < 0) {
        fprintf(stderr, "vdfs-vm: %s\n", err);
        return EXIT_VMM_ERROR;
    }
    /* The disks hold their own references to their datastores now. */
    datastore_leave_files();

    pthread_t sig_thread;
    static struct signal_context sig_ctx = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sig_ctx.vm = vm;
    sig_ctx.platform = platform;
    if (pthread_create(&sig_thread, NULL, signal_thread, &sig_ctx) != 0) {
        fprintf(stderr, "vdfs-vm: cannot start the signal thread\n");
        return EXIT_VMM_ERROR;
    }
    pthread_detach(sig_thread);

    /* The vCPU threads start, then wait in seccomp_thread_confine() like
     * the device threads until every thread has the process filter. */
    int status = 0;
    vm_start(vm, &entry);
    int rc = seccomp_confine_process(opt.seccomp);
    if (rc < 0) {
        fprintf(stderr, "vdfs-vm: cannot confine the VMM's threads (seccomp): %s\n", strerror(-rc));
        vm_request_stop(vm, VM_STOP_ERROR, 0);
    }
    else if ((rc = seccomp_thread_confine(SECCOMP_PROFILE_SUPERVISOR)) < 0) {
        fprintf(stderr, "vdfs-vm: main thread: cannot install its seccomp filter: %s\n",
                strerror(-rc));
        vm_request_stop(vm, VM_STOP_ERROR, 0);
    }
    enum vm_stop_reason reason = vm_wait(vm, &status);
    pthread_mutex_lock(&sig_ctx.lock);
    sig_ctx.ended = true;
    pthread_mutex_unlock(&sig_ctx.lock);
    serial_flush(serial);
    uint64_t unclaimed_pio = bus_unclaimed_count(bus, BUS_PIO);
    uint64_t unclaimed_mmio = bus_unclaimed_count(bus, BUS_MMIO);
    teardown(pci, serial, platform, vm, bus, mem);
    if (opt.verbose)
        fprintf(stderr,
                "vdfs-vm: VM ended: %s (status %d); %" PRIu64 " port and %" PRIu64
                " MMIO accesses hit no device\n",
                stop_reason_name(reason), status, unclaimed_pio, unclaimed_mmio);
    uint64_t direct_requests, library_requests;
    disk_vdfs_counts(&direct_requests, &library_requests);
    if (opt.verbose && direct_requests + library_requests)
        fprintf(stderr, "vdfs-vm: datastore disks: %" PRIu64 " reads and writes straight to the device, %" PRIu64
                        " through libvdfs\n", direct_requests, library_requests);
    switch (reason) {
    case VM_STOP_DEBUG_EXIT:
        return status & 0xff;
    case VM_STOP_POWEROFF:
        return 0;
    case VM_STOP_RESET:
        fprintf(stderr, "vdfs-vm: guest requested a reset; ending the VM\n");
        return EXIT_GUEST_RESET;
    case VM_STOP_CRASH:
        return EXIT_GUEST_CRASH;
    default:
        return EXIT_VMM_ERROR;
    }
}

static int cmd_ps(int argc, char **argv)
{
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "vdfs-vm ps: unknown option '%s'\n", argv[i]);
            return EXIT_VMM_ERROR;
        }
    }
    return admission_ps(json, stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_VMM_ERROR;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--seccomp-selftest") == 0)
        return seccomp_selftest() == 0 ? 0 : EXIT_VMM_ERROR;
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "ps") == 0)
        return cmd_ps(argc - 1, argv + 1);
    if (strcmp(argv[1], "stop") == 0)
        return vm_stop_command(argc - 1, argv + 1);
    fprintf(stderr, "vdfs-vm: unknown command '%s' (run, ps, stop, --help)\n", argv[1]);
    return EXIT_VMM_ERROR;
}
