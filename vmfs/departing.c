/* Hosts on this machine that are leaving (departing.h).
 *
 * OFD locks carry no owner pid, so the heartbeat slot's pid names the
 * holder, and /proc checks that the pid is still that holder: a vdfs-fuse
 * process with the datastore open.  A pid reused by another process, or a
 * holder on another machine sharing the locks, is never taken for one. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "departing.h"
#include "format.h"
#include "internal.h"

#define POLL_MS 20u
/* A holder that has closed the datastore, or exited, keeps its lock only
 * while the kernel finishes its last I/O (io_uring requests hold the file). */
#define GONE_GRACE_MS 2000u

struct file_id {
    bool blockdev;
    dev_t rdev, dev;
    ino_t ino;
};

enum holder_state { HOLDER_MOUNTED, HOLDER_DEPARTING, HOLDER_GONE };

static bool same_file(const struct stat *st, const struct file_id *id)
{
    if (id->blockdev)
        return S_ISBLK(st->st_mode) && st->st_rdev == id->rdev;
    return st->st_dev == id->dev && st->st_ino == id->ino;
}

static int file_id_of(struct vdfs_dev *dev, struct file_id *id)
{
    struct stat st;
    if (fstat(vdfs_dev_fd(dev), &st) != 0)
        return -errno;
    *id = (struct file_id){.blockdev = S_ISBLK(st.st_mode), .rdev = st.st_rdev, .dev = st.st_dev, .ino = st.st_ino};
    return 0;
}

void vdfs_unescape_octal(char *s)
{
    char *out = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
            s += 4;
        } else {
            *out++ = *s++;
        }
    }
    *out = '\0';
}

static bool is_vdfs_fuse(uint32_t pid)
{
    char path[64], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/%u/comm", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool got = fgets(comm, sizeof(comm), f) != NULL;
    fclose(f);
    /* mount(8) runs it as mount.fuse.vdfs, a link to vdfs-fuse. */
    return got && (strcmp(comm, "vdfs-fuse\n") == 0 || strcmp(comm, "mount.fuse.vdfs\n") == 0);
}

static bool has_open(uint32_t pid, const struct file_id *id)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%u/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        char fd_path[64 + 256];
        struct stat st;
        snprintf(fd_path, sizeof(fd_path), "%s/%s", path, e->d_name);
        found = e->d_name[0] != '.' && stat(fd_path, &st) == 0 && same_file(&st, id);
    }
    closedir(d);
    return found;
}

/* Whether the process still has a vdfs-fuse mount of the datastore, as
 * its own mount namespace sees it.  vdfs-fuse names its mounts fuse.vdfs
 * with the absolute path of the device as their source.  When in doubt
 * (a source that cannot be looked at), the answer is yes: then nobody
 * waits.  A source that no longer exists is some other, removed image. */
static bool has_mount(uint32_t pid, const struct file_id *id)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%u/mountinfo", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    char *line = NULL;
    size_t cap = 0;
    bool mounted = false;
    while (!mounted && getline(&line, &cap, f) > 0) {
        char fstype[64], source[PATH_MAX], in_root[PATH_MAX + 64];
        const char *sep = strstr(line, " - ");
        if (!sep || sscanf(sep + 3, "%63s %4095s", fstype, source) != 2 || strcmp(fstype, "fuse.vdfs") != 0)
            continue;
        vdfs_unescape_octal(source);
        struct stat st;
        snprintf(in_root, sizeof(in_root), "/proc/%u/root%s", pid, source);
        if (source[0] != '/')
            mounted = true;
        else if (stat(in_root, &st) == 0)
            mounted = same_file(&st, id);
        else
            mounted = errno != ENOENT && errno != ENOTDIR; /* a removed image is not this one */
    }
    free(line);
    fclose(f);
    return mounted;
}

static enum holder_state holder_state(uint32_t pid, const struct file_id *id)
{
    if (!is_vdfs_fuse(pid) || !has_open(pid, id))
        return HOLDER_GONE;
    return has_mount(pid, id) ? HOLDER_MOUNTED : HOLDER_DEPARTING;
}

bool vdfs_host_is_departing(struct vdfs_dev *dev, uint32_t pid)
{
    struct file_id id;
    return file_id_of(dev, &id) == 0 && holder_state(pid, &id) == HOLDER_DEPARTING;
}

int vdfs_wait_departing_host(struct vdfs_dev *dev, uint32_t slot, uint32_t pid, unsigned timeout_ms)
{
    struct file_id id;
    int rc = file_id_of(dev, &id);
    if (rc)
        return rc;
    uint64_t start = vdfs_monotonic_ms();
    unsigned gone_ms = 0;
    for (;;) {
        rc = vdfs_dev_probe_lock(dev, vdfs_liveness_lock_offset(slot), 1);
        if (rc <= 0)
            return rc;
        switch (holder_state(pid, &id)) {
        case HOLDER_MOUNTED:
            return -EBUSY;
        case HOLDER_DEPARTING:
            gone_ms = 0;
            break;
        case HOLDER_GONE:
            if ((gone_ms += POLL_MS) > GONE_GRACE_MS)
                return -EBUSY;
            break;
        }
        if (vdfs_monotonic_ms() - start >= timeout_ms)
            return -ETIMEDOUT;
        vdfs_sleep_ms(POLL_MS);
    }
}

/* The slot's heartbeat as it is now; false if it cannot be read or decoded. */
static bool read_heartbeat(struct vdfs_dev *dev, uint64_t addr, struct vdfs_heartbeat *hb)
{
    uint8_t raw[VDFS_SECTOR_SIZE];
    return vdfs_dev_read_any(dev, raw, sizeof(raw), addr) == 0 && vdfs_heartbeat_decode(raw, addr, hb) == 0;
}

void vdfs_wait_departing_hosts(struct vdfs_dev *dev, uint64_t heartbeat_offset, uint32_t slots,
                               void (*notice)(uint32_t slot, uint32_t pid, void *arg), void *arg)
{
    for (uint32_t slot = 0; slot < slots; slot++) {
        uint64_t addr = heartbeat_offset + (uint64_t)slot * VDFS_SECTOR_SIZE;
        struct vdfs_heartbeat hb;
        for (unsigned waited = 0; vdfs_dev_probe_lock(dev, vdfs_liveness_lock_offset(slot), 1) == 1;
             waited += POLL_MS) {
            bool known = read_heartbeat(dev, addr, &hb) && hb.state != VDFS_HB_FREE;
            if (known && vdfs_host_is_departing(dev, hb.pid)) {
                if (notice)
                    notice(slot, hb.pid, arg);
                vdfs_wait_departing_host(dev, slot, hb.pid, VDFS_DEPARTING_WAIT_MS);
                break;
            }
            /* LIVE and staying: the caller's to refuse.  FREE (or being
             * written) and held: a host between freeing its slot and
             * letting go, or one claiming it, which turns LIVE at once. */
            if (known || waited >= GONE_GRACE_MS / 2)
                break;
            vdfs_sleep_ms(POLL_MS);
        }
    }
}
