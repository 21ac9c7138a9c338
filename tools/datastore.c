/* vdfsctl grow and label: changes to the datastore as a whole.
 *
 * grow: the datastore takes the space its image file or device gained, as
 * `vmkfstools --growfs` does after a LUN was extended.  An image file is
 * extended (sparsely) first; a block device must already be that large.
 * label: e2label(8)'s job, or renaming a datastore in vSphere. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

/* The size of the image file or device, extending a file to `want`. */
static int device_size(const char *image, uint64_t want, uint64_t *size)
{
    int fd = open(image, (want ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) ? -errno : 0;
    if (rc == 0 && S_ISBLK(st.st_mode)) {
        rc = ioctl(fd, BLKGETSIZE64, size) ? -errno : 0;
    } else if (rc == 0 && S_ISREG(st.st_mode)) {
        *size = (uint64_t)st.st_size;
        if (want > *size) {
            rc = ftruncate(fd, (off_t)want) ? -errno : 0;
            if (rc == 0)
                *size = want;
        }
    } else if (rc == 0) {
        rc = -ENOTBLK;
    }
    close(fd);
    return rc;
}

int ctl_grow(struct vdfs *fs, const struct ctl *c, uint64_t size)
{
    struct vdfs_info in;
    vdfs_get_info(fs, &in);
    char have[32], limit[32], want[32];
    ctl_human(in.total_bytes, have, sizeof(have));
    ctl_human(in.grow_limit, limit, sizeof(limit));
    if (size && size < in.total_bytes) {
        fprintf(stderr, "vdfsctl: grow: the datastore is %" PRIu64 " bytes (%s); it cannot shrink\n",
                in.total_bytes, have);
        return -EINVAL;
    }
    if (size > in.grow_limit) {
        ctl_human(size, want, sizeof(want));
        fprintf(stderr,
                "vdfsctl: grow: %s is more than this datastore can grow to, %" PRIu64 " bytes (%s); mkfs.vdfs -G "
                "sets that limit\n",
                want, in.grow_limit, limit);
        return -EFBIG;
    }
    uint64_t dev_size = 0;
    int rc = device_size(c->image, size, &dev_size);
    if (rc) {
        fprintf(stderr, "vdfsctl: grow: %s: %s\n", c->image, vdfs_strerror(rc));
        return rc;
    }
    if (size == 0)
        size = dev_size < in.grow_limit ? dev_size : in.grow_limit;
    if (size > dev_size) {
        ctl_human(dev_size, want, sizeof(want));
        fprintf(stderr,
                "vdfsctl: grow: the device %s is only %" PRIu64 " bytes (%s): extend the LUN or loop device "
                "(losetup -c) first\n",
                c->image, dev_size, want);
        return -ENOSPC;
    }
    struct vdfs_grow_result res;
    rc = vdfs_grow(fs, size, &res);
    if (rc) {
        ctl_human(size, want, sizeof(want));
        fprintf(stderr, "vdfsctl: grow to %s: %s\n", want, vdfs_strerror(rc));
        return rc;
    }
    if (c->json) {
        printf("{\"old_size\": %" PRIu64 ", \"size\": %" PRIu64 ", \"added_blocks\": %" PRIu64
               ", \"grow_limit\": %" PRIu64 "}\n",
               res.old_bytes, res.new_bytes, res.added_blocks, res.limit_bytes);
    } else if (!c->quiet) {
        ctl_human(res.new_bytes, want, sizeof(want));
        if (res.new_bytes == res.old_bytes)
            printf("the datastore is %s already; it can grow to %s\n", have, limit);
        else
            printf("grew the datastore from %s to %s: %" PRIu64 " file blocks added; it can grow to %s\n", have,
                   want, res.added_blocks, limit);
    }
    return 0;
}

int ctl_label(struct vdfs *fs, const struct ctl *c, const char *label)
{
    struct vdfs_info in;
    vdfs_get_info(fs, &in);
    if (!label) {
        if (c->json) {
            printf("{\"label\": ");
            ctl_json_string(in.label);
            printf("}\n");
        } else {
            printf("%s\n", in.label);
        }
        return 0;
    }
    int rc = vdfs_set_label(fs, label);
    if (rc == -ENAMETOOLONG)
        fprintf(stderr, "vdfsctl: label: \"%s\" is longer than %zu bytes\n", label, sizeof(in.label) - 1);
    else if (rc)
        fprintf(stderr, "vdfsctl: label: %s\n", vdfs_strerror(rc));
    return rc;
}
