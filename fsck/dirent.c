/* The two directory writes fsck makes on its own: adding an entry
 * (lost+found, root) and creating an empty directory descriptor. */
#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fsck.h"

/* Makes room for directory block `block` (at byte block*4096) in the map,
 * allocating a sub-block or a direct file block.  Growing past what direct
 * addressing reaches is left to the library. */
int fsck_dir_map_block(struct fsck *f, struct vdfs_fd *fd, uint32_t block)
{
    const struct vdfs_super *s = &f->sb;
    uint64_t logical = (uint64_t)block * VDFS_META_SIZE;
    uint64_t index;
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        if (fd->size != 0)
            return -ENOSPC;
        memset(fd->data.resident, 0, sizeof(fd->data.resident));
        fd->addr_mode = VDFS_AM_SUB;
    }
    if (fd->addr_mode == VDFS_AM_SUB) {
        uint64_t unit = logical / s->subblock_size;
        if (unit >= s->block_size / s->subblock_size)
            return -ENOSPC;
        if (fd->data.slots[unit])
            return 0;
        if (!fsck_alloc(f, VDFS_RT_SB, fd->ino, &index))
            return -ENOSPC;
        fd->data.slots[unit] = vdfs_ptr_make(index, false);
        fd->alloc_bytes += s->subblock_size;
        return 0;
    }
    uint64_t l = logical / s->block_size;
    if (l >= VDFS_DIRECT_SLOTS)
        return -ENOSPC;
    if (fd->data.slots[l])
        return 0;
    if (!fsck_alloc(f, VDFS_RT_FB, fd->ino, &index))
        return -ENOSPC;
    fd->data.slots[l] = vdfs_ptr_make(index, false);
    fd->alloc_bytes += s->block_size;
    return 0;
}

int fsck_dir_add(struct fsck *f, uint32_t dir, const char *name, uint32_t ino, uint8_t type)
{
    /* A read-only check only models the result: nothing to write. */
    if (!f->opt.fix)
        return 0;
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    struct vdfs_dirblock *d = malloc(sizeof(*d));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    int rc = -ENOMEM;
    if (!fd || !d || !buf)
        goto out;
    rc = fsck_fd_load(f, dir, fd);
    if (rc)
        goto out;
    uint32_t nblocks = (uint32_t)(fd->size / VDFS_META_SIZE);
    for (uint32_t k = 0; k < nblocks; k++) {
        uint64_t addr;
        if (fsck_map_lookup(f, fd, (uint64_t)k * VDFS_META_SIZE, &addr) != 0)
            continue;
        if (fsck_read(f, buf, VDFS_META_SIZE, addr) != 0 || vdfs_dirblock_decode(buf, addr, d) != 0 ||
            d->owner_ino != dir)
            continue;
        if (vdfs_dirent_append(d, ino, type, name, strlen(name))) {
            rc = fsck_dirblock_store(f, addr, d);
            goto out;
        }
    }
    rc = fsck_dir_map_block(f, fd, nblocks);
    if (rc)
        goto out;
    uint64_t addr;
    rc = fsck_map_lookup(f, fd, (uint64_t)nblocks * VDFS_META_SIZE, &addr);
    if (rc) {
        rc = -EIO;
        goto out;
    }
    memset(d, 0, sizeof(*d));
    d->owner_ino = dir;
    vdfs_dirent_append(d, ino, type, name, strlen(name));
    rc = fsck_dirblock_store(f, addr, d);
    if (rc == 0) {
        fd->size += VDFS_META_SIZE;
        rc = fsck_fd_store(f, fd);
    }
out:
    free(fd);
    free(d);
    vdfs_aligned_free(buf);
    return rc;
}

int fsck_make_dir(struct fsck *f, uint32_t ino, uint32_t parent, uint32_t perm)
{
    struct fsck_ino *in = &f->inos[ino];
    in->state = INO_OK;
    in->dtype = DT_DIR;
    in->nlink = 2;
    in->links = 0;
    in->subdirs = 0;
    in->parent = in->disk_parent = parent;
    fsck_set_bit(f->rs[VDFS_RT_FD].ref, ino);
    fsck_set_bit(f->rs[VDFS_RT_FD].bits, ino);
    f->rs[VDFS_RT_FD].clusters[ino / f->sb.region[VDFS_RT_FD].per_cluster].dirty = true;
    f->directories++;
    if (!f->opt.fix)
        return 0;
    struct vdfs_fd *fd = calloc(1, sizeof(*fd));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    int rc = -ENOMEM;
    if (fd && buf) {
        /* Keep the generation moving forward from whatever was there. */
        if (fsck_read(f, buf, VDFS_META_SIZE, vdfs_fd_addr(&f->sb, ino)) == 0)
            vdfs_obj_read_header(buf, &fd->hdr);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        struct vdfs_timespec t = {.sec = now.tv_sec, .nsec = (uint32_t)now.tv_nsec};
        fd->ino = ino;
        fd->mode = S_IFDIR | (perm & 07777);
        fd->nlink = 2;
        fd->addr_mode = VDFS_AM_RESIDENT;
        fd->parent = parent;
        fd->ino_gen = 1;
        fd->atime = fd->mtime = fd->ctime = fd->btime = t;
        rc = fsck_fd_store(f, fd);
    }
    free(fd);
    vdfs_aligned_free(buf);
    return rc;
}
