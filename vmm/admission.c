/* The VM registry and the admission decision. */
#include "admission.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REGISTRY_SUFFIX ".vm"
#define STATE_SUFFIX ".state"
/* The state file is rewritten in place at this fixed size, so a change is
 * one pwrite from a seccomp-confined I/O thread (no truncate, no rename). */
#define STATE_BYTES 512

static char registered_path[4096];
static char state_path[4096];
static int state_fd = -1;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned disks_waiting;

void host_capacity_read(struct host_capacity *host)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    host->cores = cores > 0 ? (unsigned)cores : 1;
    host->memory_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

const char *admission_dir(void)
{
    const char *dir = getenv("VDFS_VM_RUN_DIR");
    return dir && *dir ? dir : "/run/vdfs-vm";
}

/* The process's start time in clock ticks since boot (/proc/PID/stat field
 * 22), or 0 if unknown: tells a VM's process from a later one that reused
 * its pid. `state` (may be NULL) gets its state letter ('Z' for a zombie),
 * or 0. */
static unsigned long long process_start_ticks(pid_t pid, char *state)
{
    if (state)
        *state = 0;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    unsigned long long ticks = 0;
    char letter = 0;
    /* After ") " come fields 3..: the state, and starttime as field 22. */
    if (sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
               &letter, &ticks) != 2)
        return 0;
    if (state)
        *state = letter;
    return ticks;
}

bool vm_record_alive(const struct vm_record *r)
{
    if (r->pid <= 0 || (kill(r->pid, 0) < 0 && errno != EPERM))
        return false;
    char state;
    unsigned long long ticks = process_start_ticks(r->pid, &state);
    /* A zombie's VM has ended; only its parent has not reaped it yet. */
    if (state == 'Z' || state == 'X')
        return false;
    return r->start_ticks == 0 || ticks == r->start_ticks;
}

static int parse_record(const char *text, struct vm_record *r)
{
    memset(r, 0, sizeof(*r));
    const char *p;
    int pid;
    unsigned long long mem;
    if (!(p = strstr(text, "\"pid\":")) || sscanf(p, "\"pid\": %d", &pid) != 1)
        return -1;
    if (!(p = strstr(text, "\"cpus\":")) || sscanf(p, "\"cpus\": %u", &r->cpus) != 1)
        return -1;
    if (!(p = strstr(text, "\"memory\":")) || sscanf(p, "\"memory\": %llu", &mem) != 1)
        return -1;
    if ((p = strstr(text, "\"started\":")))
        sscanf(p, "\"started\": %lld", &r->started);
    if ((p = strstr(text, "\"start_ticks\":")))
        sscanf(p, "\"start_ticks\": %llu", &r->start_ticks);
    if ((p = strstr(text, "\"name\": \""))) {
        p += strlen("\"name\": \"");
        size_t len = strcspn(p, "\"");
        if (len >= sizeof(r->name))
            len = sizeof(r->name) - 1;
        memcpy(r->name, p, len);
    }
    r->pid = pid;
    r->memory_bytes = mem;
    return 0;
}

static void state_path_of(pid_t pid, char *out, size_t len)
{
    snprintf(out, len, "%s/%d" STATE_SUFFIX, admission_dir(), (int)pid);
}

/* "running", or "waiting-for-space SINCE DISK", padded with spaces. */
static void state_write(const char *text)
{
    if (state_fd < 0)
        return;
    char buf[STATE_BYTES];
    memset(buf, ' ', sizeof(buf));
    int n = snprintf(buf, sizeof(buf), "%s", text);
    if (n >= 0 && (size_t)n < sizeof(buf))
        buf[n] = ' ';
    buf[sizeof(buf) - 1] = '\n';
    if (pwrite(state_fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
        return; /* only `ps` reads it */
}

void admission_note_space_wait(const char *disk, bool waiting)
{
    pthread_mutex_lock(&state_lock);
    if (waiting && disks_waiting++ == 0) {
        /* clock_gettime is in every seccomp profile; time(2) is not. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        char text[STATE_BYTES];
        snprintf(text, sizeof(text), "waiting-for-space %lld %.*s", (long long)now.tv_sec, STATE_BYTES - 64, disk);
        state_write(text);
    } else if (!waiting && disks_waiting > 0 && --disks_waiting == 0) {
        state_write("running");
    }
    pthread_mutex_unlock(&state_lock);
}

static void state_read(struct vm_record *r)
{
    char path[4096];
    state_path_of(r->pid, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char text[STATE_BYTES + 1];
    size_t got = fread(text, 1, STATE_BYTES, f);
    fclose(f);
    text[got] = '\0';
    long long since;
    int at = 0;
    if (sscanf(text, "waiting-for-space %lld %n", &since, &at) == 1 && at > 0) {
        r->waiting_for_space = true;
        r->waiting_since = since;
        size_t len = strcspn(text + at, "\n");
        while (len > 0 && text[at + len - 1] == ' ')
            len--;
        if (len >= sizeof(r->waiting_disk))
            len = sizeof(r->waiting_disk) - 1;
        memcpy(r->waiting_disk, text + at, len);
        r->waiting_disk[len] = '\0';
    }
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Takes the registry lock so that check-and-register is atomic across VMs
 * starting at once.  Returns the lock fd or -errno. */
static int lock_registry(void)
{
    const char *dir = admission_dir();
    int rc = ensure_dir(dir);
    if (rc < 0)
        return rc;
    char path[4096];
    snprintf(path, sizeof(path), "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int admission_list(struct vm_record **out)
{
    *out = NULL;
    const char *dir = admission_dir();
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct vm_record *list = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= strlen(REGISTRY_SUFFIX) ||
            strcmp(de->d_name + len - strlen(REGISTRY_SUFFIX), REGISTRY_SUFFIX) != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char text[1024];
        size_t got = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[got] = '\0';
        struct vm_record r;
        if (parse_record(text, &r) < 0)
            continue;
        if (!vm_record_alive(&r)) {
            unlink(path); /* the VM's process died without cleaning up */
            state_path_of(r.pid, path, sizeof(path));
            unlink(path);
            continue;
        }
        state_read(&r);
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct vm_record *grown = realloc(list, (size_t)cap * sizeof(*grown));
            if (!grown) {
                free(list);
                closedir(d);
                return -1;
            }
            list = grown;
        }
        list[n++] = r;
    }
    closedir(d);
    *out = list;
    return n;
}

int admission_admit(const struct admission_request *req, char *err, size_t errlen)
{
    struct host_capacity host;
    host_capacity_read(&host);
    int lock = lock_registry();
    if (lock < 0) {
        snprintf(err, errlen, "admission: cannot lock the VM registry in %s: %s",
                 admission_dir(), strerror(-lock));
        return -1;
    }
    struct vm_record *vms;
    int n = admission_list(&vms);
    if (n < 0) {
        snprintf(err, errlen, "admission: cannot read the VM registry in %s", admission_dir());
        close(lock);
        return -1;
    }
    unsigned used_cpus = 0;
    uint64_t used_mem = 0;
    for (int i = 0; i < n; i++) {
        if (vms[i].pid == getpid())
            continue;
        used_cpus += vms[i].cpus;
        used_mem += vms[i].memory_bytes;
    }
    free(vms);
    int rc = -1;
    double cpu_limit = req->cpu_ratio * host.cores;
    if ((double)(used_cpus + req->cpus) > cpu_limit + 1e-9) {
        snprintf(err, errlen,
                 "admission refused: %u vCPUs already running + %u requested > %.1f allowed "
                 "(%u host cores x CPU overcommit ratio %.2f; raise it with --cpu-ratio)",
                 used_cpus, req->cpus, cpu_limit, host.cores, req->cpu_ratio);
        goto out;
    }
    uint64_t total_mem = used_mem + req->memory_bytes;
    if (total_mem > host.memory_bytes) {
        if (!req->allow_mem_overcommit) {
            snprintf(err, errlen,
                     "admission refused: %" PRIu64 " MiB of VM memory already running + %" PRIu64
                     " MiB requested > %" PRIu64
                     " MiB host RAM (memory overcommit needs --allow-mem-overcommit)",
                     used_mem >> 20, req->memory_bytes >> 20, host.memory_bytes >> 20);
            goto out;
        }
        fprintf(stderr,
                "vdfs-vm: warning: memory overcommitted: %" PRIu64 " MiB of VM memory on %" PRIu64
                " MiB host RAM; the host may swap or kill VMs\n",
                total_mem >> 20, host.memory_bytes >> 20);
    }
    snprintf(registered_path, sizeof(registered_path), "%s/%d" REGISTRY_SUFFIX, admission_dir(),
             (int)getpid());
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", registered_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "admission: cannot write %s: %s", tmp, strerror(errno));
        registered_path[0] = '\0';
        goto out;
    }
    fprintf(f,
            "{\"pid\": %d, \"name\": \"%s\", \"cpus\": %u, \"memory\": %" PRIu64
            ", \"started\": %lld, \"start_ticks\": %llu}\n",
            (int)getpid(), req->name, req->cpus, req->memory_bytes, (long long)time(NULL),
            process_start_ticks(getpid(), NULL));
    if (fclose(f) != 0 || rename(tmp, registered_path) < 0) {
        snprintf(err, errlen, "admission: cannot write %s: %s", registered_path,
                 strerror(errno));
        unlink(tmp);
        registered_path[0] = '\0';
        goto out;
    }
    state_path_of(getpid(), state_path, sizeof(state_path));
    state_fd = open(state_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    state_write("running");
    rc = 0;
out:
    close(lock);
    return rc;
}

void admission_release(void)
{
    if (registered_path[0]) {
        unlink(registered_path);
        registered_path[0] = '\0';
    }
    if (state_fd >= 0) {
        close(state_fd);
        state_fd = -1;
        unlink(state_path);
    }
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

int admission_ps(bool json, FILE *out)
{
    struct host_capacity host;
    host_capacity_read(&host);
    struct vm_record *vms;
    int n = admission_list(&vms);
    if (n < 0) {
        fprintf(stderr, "vdfs-vm: cannot read the VM registry in %s: %s\n", admission_dir(),
                strerror(errno));
        return 1;
    }
    unsigned cpus = 0;
    uint64_t mem = 0;
    for (int i = 0; i < n; i++) {
        cpus += vms[i].cpus;
        mem += vms[i].memory_bytes;
    }
    if (json) {
        fprintf(out, "{\"host\": {\"cores\": %u, \"memory\": %" PRIu64 "}, \"vms\": [",
                host.cores, host.memory_bytes);
        for (int i = 0; i < n; i++) {
            fprintf(out, "%s{\"pid\": %d, \"name\": ", i ? ", " : "", (int)vms[i].pid);
            json_string(out, vms[i].name);
            fprintf(out, ", \"cpus\": %u, \"memory\": %" PRIu64 ", \"started\": %lld, \"state\": \"%s\"",
                    vms[i].cpus, vms[i].memory_bytes, vms[i].started,
                    vms[i].waiting_for_space ? "waiting-for-space" : "running");
            if (vms[i].waiting_for_space) {
                fprintf(out, ", \"waiting_since\": %lld, \"waiting_disk\": ", vms[i].waiting_since);
                json_string(out, vms[i].waiting_disk);
            }
            fputc('}', out);
        }
        fprintf(out, "], \"total\": {\"cpus\": %u, \"memory\": %" PRIu64 "}}\n", cpus, mem);
    } else {
        fprintf(out, "%-20s %8s %5s %10s  %s\n", "NAME", "PID", "CPUS", "MEMORY", "STATE");
        for (int i = 0; i < n; i++)
            fprintf(out, "%-20s %8d %5u %7" PRIu64 " MiB  %s\n", vms[i].name, (int)vms[i].pid,
                    vms[i].cpus, vms[i].memory_bytes >> 20,
                    vms[i].waiting_for_space ? "waiting for space" : "running");
        fprintf(out,
                "host: %u vCPUs on %u cores (%.2f per core); %" PRIu64 " MiB of %" PRIu64
                " MiB RAM (%.1f%%)\n",
                cpus, host.cores, (double)cpus / host.cores, mem >> 20, host.memory_bytes >> 20,
                host.memory_bytes ? 100.0 * (double)mem / (double)host.memory_bytes : 0.0);
        long long now = (long long)time(NULL);
        for (int i = 0; i < n; i++)
            if (vms[i].waiting_for_space)
                fprintf(out,
                        "%s (pid %d): writes to %s have waited for space for %lld s; free space where it "
                        "lives (on a datastore: remove files, or vdfsctl grow), or stop the VM\n",
                        vms[i].name, (int)vms[i].pid, vms[i].waiting_disk,
                        now > vms[i].waiting_since ? now - vms[i].waiting_since : 0);
    }
    free(vms);
    return 0;
}
