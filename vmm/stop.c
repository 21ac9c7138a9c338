/* `vdfs-vm stop`: ends a running VM, found in the registry by name or PID.
 * By default it presses the guest's ACPI power button (SIGPWR to its VMM)
 * and waits for the VM to end, as "Shut Down Guest" on ESXi and `virsh
 * shutdown` ask the guest; --force ends it at once (SIGTERM), a power-off. */
#include "stop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admission.h"

#define DEFAULT_TIMEOUT_S 60

static bool parse_pid(const char *text, pid_t *pid)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text < '0' || *text > '9' || *end || v <= 0 || v > 0x7fffffff)
        return false;
    *pid = (pid_t)v;
    return true;
}

/* The one live VM that `target` (a name or a PID) names, or -1 with the
 * reason printed. */
static int find_vm(const char *target, struct vm_record *out)
{
    struct vm_record *vms = NULL;
    int n = admission_list(&vms);
    if (n < 0) {
        fprintf(stderr, "vdfs-vm stop: cannot read the VM registry in %s: %s\n", admission_dir(), strerror(errno));
        return -1;
    }
    pid_t pid = 0;
    bool by_pid = parse_pid(target, &pid);
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (by_pid ? vms[i].pid == pid : strcmp(vms[i].name, target) == 0) {
            if (found++ == 0)
                *out = vms[i];
        }
    }
    if (found > 1) {
        fprintf(stderr, "vdfs-vm stop: %d VMs are named %s; name one by its PID (vdfs-vm ps)\n", found, target);
        found = -1;
    } else if (found == 0) {
        fprintf(stderr, "vdfs-vm stop: no running VM %s %s (vdfs-vm ps lists them)\n", by_pid ? "with PID" : "named",
                target);
    }
    free(vms);
    return found == 1 ? 0 : -1;
}

static void stop_usage(FILE *out)
{
    fprintf(out,
            "usage: vdfs-vm stop NAME|PID [--force] [--timeout SECONDS]\n"
            "  presses the VM's ACPI power button and waits until the guest has powered off\n"
            "  --force            power the VM off at once instead (SIGTERM to its VMM)\n"
            "  --timeout SECONDS  how long to wait for the VM to end (default %d; 0: do not wait)\n"
            "exit status: 0 the VM has ended (or, with --timeout 0, the button was pressed);\n"
            "1 no such VM, or it did not end in time\n",
            DEFAULT_TIMEOUT_S);
}

int vm_stop_command(int argc, char **argv)
{
    const char *target = NULL;
    bool force = false;
    long timeout_s = DEFAULT_TIMEOUT_S;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            timeout_s = strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end || timeout_s < 0 || timeout_s > 86400) {
                fprintf(stderr, "vdfs-vm stop: bad --timeout '%s' (0-86400 seconds)\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            stop_usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !target) {
            target = argv[i];
        } else {
            fprintf(stderr, "vdfs-vm stop: unexpected argument '%s'\n", argv[i]);
            stop_usage(stderr);
            return 2;
        }
    }
    if (!target) {
        stop_usage(stderr);
        return 2;
    }
    struct vm_record vm;
    if (find_vm(target, &vm) < 0)
        return 1;
    if (kill(vm.pid, force ? SIGTERM : SIGPWR) != 0) {
        fprintf(stderr, "vdfs-vm stop: cannot signal %s (PID %d): %s\n", vm.name, (int)vm.pid, strerror(errno));
        return 1;
    }
    if (timeout_s == 0)
        return 0;
    const struct timespec poll = {0, 100 * 1000000L};
    for (long waited_ms = 0; vm_record_alive(&vm); waited_ms += 100) {
        if (waited_ms >= timeout_s * 1000) {
            fprintf(stderr, "vdfs-vm stop: %s (PID %d) did not %s within %ld s%s\n", vm.name, (int)vm.pid,
                    force ? "end" : "power off", timeout_s, force ? "" : "; vdfs-vm stop --force powers it off");
            return 1;
        }
        nanosleep(&poll, NULL);
    }
    return 0;
}
