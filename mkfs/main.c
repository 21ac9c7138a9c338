/* mkfs.vdfs: create a vdfs datastore on a block device or image file.
 *
 * Order matters: every check (options, in use, existing filesystem,
 * running hosts, size) happens before the first byte is written, so a
 * refusal leaves the target exactly as it was. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mkfs.h"

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(MKFS_PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Creates the image, or extends it sparsely, to `size` bytes. */
static int size_image(const char *path, uint64_t size, bool create)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0644);
    if (fd < 0)
        return fail("cannot %s %s: %s", create ? "create" : "open", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || ((uint64_t)st.st_size < size && ftruncate(fd, (off_t)size) != 0)) {
        int err = errno;
        close(fd);
        if (create)
            unlink(path);
        return fail("cannot make %s %llu bytes long: %s", path, (unsigned long long)size, strerror(err));
    }
    close(fd);
    return 0;
}

static int open_device(const char *path, bool dry_run, struct vdfs_dev **dev)
{
    int rc = vdfs_dev_open(path, VDFS_DEV_DIRECT | (dry_run ? VDFS_DEV_RDONLY : 0), dev);
    if (rc != 0)
        return fail("cannot open %s: %s", path, strerror(-rc));
    return 0;
}

/* Refuses what must not be formatted; 0 when the target may be written. */
static int check_contents(const struct mkfs_options *o, const struct mkfs_probe *p)
{
    if (p->live_host)
        return fail("%s is mounted by a running vdfs host (heartbeat slot %u, pid %u on %s); unmount it first",
                    o->path, p->live_slot, p->live_pid, p->live_hostname[0] ? p->live_hostname : "this machine");
    if (p->fs_name != NULL && !o->force)
        return fail("%s already holds %s (signature at byte %llu); use -f to overwrite it", o->path, p->fs_name,
                    (unsigned long long)p->fs_offset);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t start = clock_ns(CLOCK_MONOTONIC);
    struct mkfs_options o;
    switch (mkfs_parse_options(argc, argv, &o)) {
    case MKFS_PARSE_OK: break;
    case MKFS_PARSE_HELP: return 0;
    default: return 1;
    }

    struct stat st;
    bool exists = stat(o.path, &st) == 0;
    if (!exists && errno != ENOENT)
        return fail("cannot access %s: %s", o.path, strerror(errno));
    if (exists && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return fail("%s is neither a block device nor a regular file", o.path);
    if (!exists && o.size == 0)
        return fail("%s does not exist; give a SIZE to create an image file", o.path);

    if (exists) {
        char why[1024];
        int busy = mkfs_check_in_use(o.path, &st, why, sizeof(why));
        if (busy < 0)
            return fail("cannot tell whether %s is in use: %s", o.path, strerror(-busy));
        if (busy > 0)
            return fail("%s; refusing to format it", why);
        /* Held open until exit: nobody can mount the device meanwhile. */
        int claim = mkfs_claim_blockdev(o.path, &st);
        if (claim == -EBUSY)
            return fail("%s is in use (mounted or held by another driver); refusing to format it", o.path);
        if (claim < -1)
            return fail("cannot open %s: %s", o.path, strerror(-claim));
    }

    struct vdfs_dev *dev = NULL;
    uint64_t dev_size = 0;
    if (exists) {
        if (open_device(o.path, o.dry_run, &dev) != 0)
            return 1;
        dev_size = vdfs_dev_size(dev);
    }
    if (exists && S_ISBLK(st.st_mode) && o.size > dev_size)
        return fail("SIZE %llu is larger than %s (%llu bytes)", (unsigned long long)o.size, o.path,
                    (unsigned long long)dev_size);
    uint64_t total = o.size != 0 ? o.size : dev_size;

    struct vdfs_super sb;
    uint64_t min_bytes = 0;
    int rc = mkfs_plan(&o, total, clock_ns(CLOCK_REALTIME), &sb, &min_bytes);
    if (rc == -ENOSPC && min_bytes != 0)
        return fail("device too small: %llu bytes; vdfs needs at least %llu bytes with these options"
                    " (fewer hosts -H, a smaller journal -J or fewer descriptors -N need less)",
                    (unsigned long long)total, (unsigned long long)min_bytes);
    if (rc == -ENOSPC)
        return fail("device too small: %llu bytes; no size fits these options", (unsigned long long)total);
    if (rc == -EDOM)
        return fail("grow limit %llu bytes (-G) is below the datastore's size, %llu bytes",
                    (unsigned long long)o.grow_limit, (unsigned long long)total);
    if (rc != 0)
        return fail("cannot lay out a datastore of %llu bytes with these options: %s", (unsigned long long)total,
                    strerror(-rc));

    struct mkfs_probe probe = {0};
    if (dev != NULL) {
        rc = mkfs_probe_device(dev, &sb, &probe);
        if (rc != 0)
            return fail("cannot read %s: %s", o.path, strerror(-rc));
        if (check_contents(&o, &probe) != 0)
            return 1;
    }

    struct mkfs_stats stats = {0};
    if (!o.dry_run) {
        if (!exists || (S_ISREG(st.st_mode) && total > dev_size)) {
            if (dev != NULL)
                vdfs_dev_close(dev);
            dev = NULL;
            if (size_image(o.path, total, !exists) != 0)
                return 1;
            if (open_device(o.path, false, &dev) != 0)
                return 1;
        }
        /* Every slot's liveness lock, held until exit: a host that is
         * mounting (or mounted) holds one, and none can claim a slot while
         * mkfs writes. */
        rc = vdfs_dev_try_lock(dev, vdfs_liveness_lock_offset(0), VDFS_MAX_HOSTS_LIMIT, true);
        if (rc == -EAGAIN)
            return fail("%s is in use by a running vdfs host or another mkfs.vdfs; refusing to format it", o.path);
        if (rc != 0)
            return fail("cannot lock the heartbeat slots of %s: %s", o.path, strerror(-rc));
        rc = mkfs_write(dev, &sb, probe.wipe, probe.nwipe, &stats);
        if (rc != 0)
            return fail("writing %s failed: %s; it holds no valid datastore now", o.path, strerror(-rc));
    }
    if (dev != NULL)
        vdfs_dev_close(dev);

    double seconds = (double)(clock_ns(CLOCK_MONOTONIC) - start) / 1e9;
    if (o.json)
        mkfs_report_json(o.path, &sb, o.dry_run, &stats, seconds);
    else if (!o.quiet)
        mkfs_report_text(o.path, &sb, o.dry_run, &stats);
    return 0;
}
