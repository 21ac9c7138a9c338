/* Sample objects with non-trivial values (every byte of a wide field
 * differs, high bits set) shared by the format tests. */
#ifndef VDFS_TEST_FORMAT_SAMPLES_H
#define VDFS_TEST_FORMAT_SAMPLES_H

#include <stdlib.h>
#include <string.h>

#include "format.h"

#define SAMPLE_ADDR 0x123456789000ull

static inline void sample_heartbeat(struct vdfs_heartbeat *h, uint64_t addr)
{
    memset(h, 0, sizeof(*h));
    h->hdr = (struct vdfs_header){ VDFS_KIND_HEARTBEAT, addr, 0x0102030405060708ull };
    h->state = VDFS_HB_REPLAYING;
    h->slot = 63;
    for (unsigned i = 0; i < VDFS_UUID_SIZE; i++)
        h->host_uuid[i] = (uint8_t)(0xa0 + i);
    h->hb_gen = 0xfedcba9876543210ull;
    h->counter = 0x8000000000000001ull;
    h->stamp_ns = 0x17aabbccddeeff00ull;
    h->interval_ms = 0x80001000u;
    h->pid = 0x7fff1234u;
    h->replayer_slot = 17;
    h->replayer_hb_gen = 0x1122334455667788ull;
    h->flags = VDFS_HB_FLAG_READONLY;
    strcpy(h->hostname, "esx-host-07.example.org");
}

static inline void sample_lock(struct vdfs_lock_rec *l, uint64_t addr)
{
    memset(l, 0, sizeof(*l));
    l->hdr = (struct vdfs_header){ VDFS_KIND_LOCK, addr, 0x1111222233334444ull };
    l->mode = VDFS_LOCK_READ_SHARED;
    l->owner_slot = VDFS_NO_SLOT;
    l->owner_hb_gen = 0x9988776655443322ull;
    l->object = ((uint64_t)VDFS_RT_FD << 56) | 0x123456u;
    l->acquired_ns = 0xcafebabedeadbeefull;
    l->nholders = VDFS_LOCK_HOLDERS;
    for (unsigned i = 0; i < VDFS_LOCK_HOLDERS; i++) {
        l->holders[i].slot = i * 2 + 1;
        l->holders[i].hb_gen = 0x80000000u | (i * 0x01010101u);
    }
}

static inline void sample_bitmap(struct vdfs_bitmap *b, uint64_t addr)
{
    memset(b, 0, sizeof(*b));
    b->hdr = (struct vdfs_header){ VDFS_KIND_BITMAP, addr, 42 };
    b->rtype = VDFS_RT_SB;
    b->cluster = 0x00abcdefu;
    b->first = 0x00abcdefull * VDFS_RESOURCES_PER_CLUSTER;
    b->count = VDFS_RESOURCES_PER_CLUSTER;
    b->free = 8000;
    b->affinity = 0x80000003u;
    for (unsigned i = 0; i < VDFS_BITMAP_BYTES; i++)
        b->bits[i] = (uint8_t)(i * 37 + 11);
}

static inline struct vdfs_timespec sample_ts(int64_t sec, uint32_t nsec)
{
    return (struct vdfs_timespec){ sec, nsec };
}

static inline void sample_fd_common(struct vdfs_fd *fd, uint64_t addr)
{
    memset(fd, 0, sizeof(*fd));
    fd->hdr = (struct vdfs_header){ VDFS_KIND_FD, addr, 0xfffffffffffffffeull };
    fd->ino = 0x00123456u;
    fd->mode = 0100644;
    fd->uid = 0x80000001u;
    fd->gid = 0x7ffffffeu;
    fd->nlink = 3;
    fd->flags = 0xa5a5a5a5u;
    fd->parent = 0x00654321u;
    fd->ino_gen = 0xdeadbeefu;
    fd->atime = sample_ts(-1, 999999999);
    fd->mtime = sample_ts(0x7fffffff00000001ll, 1);
    fd->ctime = sample_ts(1700000000, 123456789);
    fd->btime = sample_ts(-0x100000000ll, 0);
    fd->rdev = 0x00080001u;
    fd->xattr_len = VDFS_XATTR_BYTES;
    for (unsigned i = 0; i < VDFS_XATTR_BYTES; i++)
        fd->xattr[i] = (uint8_t)(i ^ 0x5a);
}

static inline void sample_fd_block(struct vdfs_fd *fd, uint64_t addr)
{
    sample_fd_common(fd, addr);
    fd->addr_mode = VDFS_AM_BLOCK;
    fd->size = 0x00007c0000000001ull;
    fd->alloc_bytes = 0x0000100000000000ull;
    for (unsigned i = 0; i < VDFS_SLOTS; i++)
        fd->data.slots[i] = vdfs_ptr_make(i * 0x10001u, i % 3 == 0);
}

static inline void sample_fd_resident(struct vdfs_fd *fd, uint64_t addr)
{
    sample_fd_common(fd, addr);
    fd->addr_mode = VDFS_AM_RESIDENT;
    fd->size = VDFS_RESIDENT_MAX;
    fd->alloc_bytes = 0;
    for (unsigned i = 0; i < VDFS_DATA_AREA; i++)
        fd->data.resident[i] = (uint8_t)(i * 13 + 7);
}

static inline void sample_pb(struct vdfs_pb *pb, uint64_t addr)
{
    memset(pb, 0, sizeof(*pb));
    pb->hdr = (struct vdfs_header){ VDFS_KIND_PB, addr, 7 };
    pb->owner_ino = 0x00abcdefu;
    pb->level = 2;
    for (unsigned i = 0; i < VDFS_PB_ENTRIES; i++)
        pb->entries[i] = i % 5 ? vdfs_ptr_make(0x7ffffff0u - i, i & 1) : 0;
}

/* Appends one packed entry; returns false when it does not fit. */
static inline bool dir_append(struct vdfs_dirblock *d, uint32_t ino, uint8_t type, const char *name)
{
    size_t len = strlen(name);
    if (d->used + VDFS_DIRENT_FIXED + len > VDFS_DIR_AREA)
        return false;
    uint8_t *p = d->entries + d->used;
    vdfs_le32 le = vdfs_put32(ino);
    memcpy(p, &le, sizeof(le));
    p[4] = type;
    p[5] = (uint8_t)len;
    memcpy(p + VDFS_DIRENT_FIXED, name, len);
    d->used = (uint16_t)(d->used + VDFS_DIRENT_FIXED + len);
    d->nentries++;
    return true;
}

static inline void sample_dir(struct vdfs_dirblock *d, uint64_t addr)
{
    memset(d, 0, sizeof(*d));
    d->hdr = (struct vdfs_header){ VDFS_KIND_DIR, addr, 0x10000 };
    d->owner_ino = 0x80000001u;
    dir_append(d, 1, 4, ".");
    dir_append(d, 0xfffffff0u, 8, "a file with spaces and UTF-8 \xc3\xa9");
    dir_append(d, 5, 4, "lost+found");
    char longname[VDFS_NAME_MAX + 1];
    memset(longname, 'x', VDFS_NAME_MAX);
    longname[VDFS_NAME_MAX] = '\0';
    dir_append(d, 0x01020304u, 8, longname);
}

static inline void sample_jheader(struct vdfs_jheader *j, uint64_t addr)
{
    memset(j, 0, sizeof(*j));
    j->hdr = (struct vdfs_header){ VDFS_KIND_JHEADER, addr, 99 };
    j->slot = 31;
    j->start_seq = 0x8877665544332211ull;
    j->start_block = 0x80000fffu;
    for (unsigned i = 0; i < VDFS_UUID_SIZE; i++)
        j->host_uuid[i] = (uint8_t)(0xff - i);
}

static inline void sample_jdesc(struct vdfs_jdesc *j, uint64_t addr)
{
    memset(j, 0, sizeof(*j));
    j->hdr = (struct vdfs_header){ VDFS_KIND_JDESC, addr, 3 };
    j->seq = 0x0123456789abcdefull;
    j->count = VDFS_JDESC_ADDRS;
    j->flags = VDFS_JDESC_LAST;
    j->images_csum = 0xf0e1d2c3b4a59687ull;
    for (unsigned i = 0; i < VDFS_JDESC_ADDRS; i++)
        j->addrs[i] = 0x8000000000000000ull | ((uint64_t)i << 12);
}

static inline void sample_super(struct vdfs_super *s, uint64_t addr)
{
    memset(s, 0, sizeof(*s));
    s->total_bytes = 1ull << 40;
    s->block_size = VDFS_DEFAULT_BLOCK_SIZE;
    s->subblock_size = VDFS_DEFAULT_SUBBLOCK_SIZE;
    s->max_hosts = VDFS_DEFAULT_MAX_HOSTS;
    s->journal_blocks = VDFS_DEFAULT_JOURNAL_BLOCKS;
    if (vdfs_layout(s, 0) != 0)
        abort();
    s->hdr.addr = addr;
    s->hdr.gen = 0x8000000000000005ull;
    for (unsigned i = 0; i < VDFS_UUID_SIZE; i++)
        s->uuid[i] = (uint8_t)(i * 17 + 1);
    memset(s->label, 'L', VDFS_LABEL_SIZE);
    s->label[VDFS_LABEL_SIZE] = '\0';
    s->created_ns = 0x17aabbccddeeff00ull;
    s->compat = 0x80000000u; /* unknown compat bits are allowed */
}

#endif
