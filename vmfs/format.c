/* Encode and decode of every on-disk structure of format v1, and the object
 * checksums.  Each decoder trusts nothing: it verifies the self-describing
 * header first and then the semantics of the fields, so that a corrupt or
 * hostile image yields -EIO (or -EINVAL for an insane superblock geometry)
 * and never a crash. */
#include "format.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

/* ---- little-endian fields ----------------------------------------------- */

uint16_t vdfs_get16(vdfs_le16 v)
{
    return (uint16_t)(v.b[0] | (uint16_t)v.b[1] << 8);
}

uint32_t vdfs_get32(vdfs_le32 v)
{
    return (uint32_t)v.b[0] | (uint32_t)v.b[1] << 8 | (uint32_t)v.b[2] << 16 |
           (uint32_t)v.b[3] << 24;
}

uint64_t vdfs_get64(vdfs_le64 v)
{
    uint64_t r = 0;
    for (int i = 7; i >= 0; i--)
        r = r << 8 | v.b[i];
    return r;
}

vdfs_le16 vdfs_put16(uint16_t v)
{
    vdfs_le16 r = { { (uint8_t)v, (uint8_t)(v >> 8) } };
    return r;
}

vdfs_le32 vdfs_put32(uint32_t v)
{
    vdfs_le32 r = { { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) } };
    return r;
}

vdfs_le64 vdfs_put64(uint64_t v)
{
    vdfs_le64 r;
    for (int i = 0; i < 8; i++)
        r.b[i] = (uint8_t)(v >> (8 * i));
    return r;
}

/* ---- object header and checksum ----------------------------------------- */

uint64_t vdfs_checksum(const void *buf, size_t len)
{
    return XXH3_64bits(buf, len);
}

#define CSUM_OFFSET offsetof(struct vdfs_disk_header, csum)

void vdfs_obj_seal(uint8_t *buf, size_t len, const struct vdfs_header *h)
{
    struct vdfs_disk_header d = {
        .magic = vdfs_put32(VDFS_MAGIC),
        .kind = vdfs_put32(h->kind),
        .addr = vdfs_put64(h->addr),
        .gen = vdfs_put64(h->gen),
        .csum = vdfs_put64(0),
    };
    memcpy(buf, &d, sizeof(d));
    vdfs_le64 csum = vdfs_put64(vdfs_checksum(buf, len));
    memcpy(buf + CSUM_OFFSET, &csum, sizeof(csum));
}

void vdfs_obj_read_header(const uint8_t *buf, struct vdfs_header *h)
{
    struct vdfs_disk_header d;
    memcpy(&d, buf, sizeof(d));
    h->kind = vdfs_get32(d.kind);
    h->addr = vdfs_get64(d.addr);
    h->gen = vdfs_get64(d.gen);
}

int vdfs_obj_verify(const uint8_t *buf, size_t len, uint32_t kind, uint64_t addr)
{
    /* Objects are at most one metadata block; the checksum is taken over a
     * copy because the stored csum field must read as zero. */
    uint8_t copy[VDFS_META_SIZE];
    struct vdfs_disk_header d;

    if (len < sizeof(d) || len > sizeof(copy))
        return -EIO;
    memcpy(&d, buf, sizeof(d));
    if (vdfs_get32(d.magic) != VDFS_MAGIC || vdfs_get32(d.kind) != kind ||
        vdfs_get64(d.addr) != addr)
        return -EIO;
    memcpy(copy, buf, len);
    memset(copy + CSUM_OFFSET, 0, sizeof(d.csum));
    if (vdfs_checksum(copy, len) != vdfs_get64(d.csum))
        return -EIO;
    return 0;
}

static void seal_as(uint8_t *buf, size_t len, uint32_t kind, const struct vdfs_header *h)
{
    struct vdfs_header sealed = { .kind = kind, .addr = h->addr, .gen = h->gen };
    vdfs_obj_seal(buf, len, &sealed);
}

static bool all_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i])
            return false;
    return true;
}

/* Copies a fixed-width on-disk string into a NUL-terminated native one. */
static void string_from_disk(char *dst, const uint8_t *src, size_t width)
{
    size_t n = strnlen((const char *)src, width);
    memcpy(dst, src, n);
    memset(dst + n, 0, width + 1 - n);
}

static void string_to_disk(uint8_t *dst, const char *src, size_t width)
{
    size_t n = strnlen(src, width);
    memset(dst, 0, width);
    memcpy(dst, src, n);
}

/* ---- superblock --------------------------------------------------------- */

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static uint64_t div_ceil(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* A byte range of the device that one on-disk area occupies. */
struct extent {
    uint64_t start, len;
};

/* Builds [start, start + count * unit) unless that overflows. */
static bool make_extent(struct extent *e, uint64_t start, uint64_t count, uint64_t unit)
{
    uint64_t len, end;
    if (__builtin_mul_overflow(count, unit, &len) || __builtin_add_overflow(start, len, &end))
        return false;
    e->start = start;
    e->len = len;
    return true;
}

static bool extents_disjoint_inside(const struct extent *e, size_t n, uint64_t limit)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].start > limit || e[i].len > limit - e[i].start)
            return false;
        for (size_t j = 0; j < i; j++)
            if (e[i].len && e[j].len && e[i].start < e[j].start + e[j].len &&
                e[j].start < e[i].start + e[i].len)
                return false;
    }
    return true;
}

static uint64_t region_unit_expected(const struct vdfs_super *s, unsigned rtype)
{
    switch (rtype) {
    case VDFS_RT_FB: return s->block_size;
    case VDFS_RT_SB: return s->subblock_size;
    default: return VDFS_META_SIZE;
    }
}

/* The geometry every other module relies on without re-checking it. */
static int super_check_geometry(const struct vdfs_super *s)
{
    if (!is_pow2(s->block_size) || !is_pow2(s->subblock_size) ||
        s->subblock_size < VDFS_META_SIZE || s->subblock_size > s->block_size ||
        s->block_size > (64u << 20))
        return -EINVAL;
    /* A sub-block file names its units from the direct slots. */
    if (s->block_size / s->subblock_size > VDFS_DIRECT_SLOTS)
        return -EINVAL;
    if (s->max_hosts < 1 || s->max_hosts > VDFS_MAX_HOSTS_LIMIT || s->journal_blocks < 2)
        return -EINVAL;
    if (s->hb_interval_ms == 0 || s->hb_timeout_ms == 0)
        return -EINVAL;

    /* Every area of the device: superblock, heartbeats, locks, journals,
     * the backup superblock, and per resource type its bitmaps and data. */
    struct extent area[5 + 2 * VDFS_RT_COUNT];
    struct extent locks[VDFS_RT_COUNT + 1];
    size_t n = 0;
    area[n++] = (struct extent){ VDFS_SUPER_OFFSET, VDFS_META_SIZE };
    area[n++] = (struct extent){ s->backup_offset, VDFS_META_SIZE };
    if (!make_extent(&area[n++], s->heartbeat_offset, s->max_hosts, VDFS_SECTOR_SIZE) ||
        !make_extent(&area[n++], s->lock_offset, s->lock_count, VDFS_SECTOR_SIZE) ||
        !make_extent(&area[n++], s->journal_offset, (uint64_t)s->max_hosts * s->journal_blocks,
                     VDFS_META_SIZE))
        return -EINVAL;
    if (s->heartbeat_offset % VDFS_SECTOR_SIZE || s->lock_offset % VDFS_SECTOR_SIZE ||
        s->journal_offset % VDFS_META_SIZE || s->backup_offset % VDFS_META_SIZE)
        return -EINVAL;

    for (unsigned t = 0; t < VDFS_RT_COUNT; t++) {
        const struct vdfs_region *r = &s->region[t];
        /* per_cluster is what vdfs_layout always writes: a smaller one
         * would make a cluster (and its bookkeeping) per few resources. */
        if (r->unit_size != region_unit_expected(s, t) || r->per_cluster != VDFS_RESOURCES_PER_CLUSTER ||
            r->clusters != div_ceil(r->count, r->per_cluster))
            return -EINVAL;
        if (r->start % r->unit_size || r->bitmap_offset % VDFS_META_SIZE)
            return -EINVAL;
        /* Pointers hold index + 1 in 31 bits; inode numbers are 32 bits. */
        if (r->count > VDFS_PTR_INDEX_MASK)
            return -EINVAL;
        if (!make_extent(&area[n++], r->start, r->count, r->unit_size) ||
            !make_extent(&area[n++], r->bitmap_offset, r->clusters, VDFS_META_SIZE) ||
            !make_extent(&locks[t], r->lock_index, r->clusters, 1))
            return -EINVAL;
    }
    if (!make_extent(&locks[VDFS_RT_COUNT], s->fd_lock_index, s->region[VDFS_RT_FD].count, 1))
        return -EINVAL;
    if (!extents_disjoint_inside(area, n, s->total_bytes) ||
        !extents_disjoint_inside(locks, VDFS_RT_COUNT + 1, s->lock_count))
        return -EINVAL;

    uint64_t fds = s->region[VDFS_RT_FD].count;
    if (s->root_ino == 0 || s->root_ino >= fds || s->lostfound_ino == 0 ||
        s->lostfound_ino >= fds || s->root_ino == s->lostfound_ino)
        return -EINVAL;
    return 0;
}

void vdfs_super_encode(const struct vdfs_super *s, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_disk_super d;
    memset(&d, 0, sizeof(d));
    d.version = vdfs_put32(s->version);
    d.compat = vdfs_put32(s->compat);
    d.incompat = vdfs_put32(s->incompat);
    d.ro_compat = vdfs_put32(s->ro_compat);
    memcpy(d.uuid, s->uuid, VDFS_UUID_SIZE);
    string_to_disk(d.label, s->label, VDFS_LABEL_SIZE);
    d.created_ns = vdfs_put64(s->created_ns);
    d.total_bytes = vdfs_put64(s->total_bytes);
    d.block_size = vdfs_put32(s->block_size);
    d.subblock_size = vdfs_put32(s->subblock_size);
    d.max_hosts = vdfs_put32(s->max_hosts);
    d.journal_blocks = vdfs_put32(s->journal_blocks);
    d.heartbeat_offset = vdfs_put64(s->heartbeat_offset);
    d.lock_offset = vdfs_put64(s->lock_offset);
    d.lock_count = vdfs_put64(s->lock_count);
    d.journal_offset = vdfs_put64(s->journal_offset);
    d.backup_offset = vdfs_put64(s->backup_offset);
    d.fd_lock_index = vdfs_put64(s->fd_lock_index);
    d.root_ino = vdfs_put32(s->root_ino);
    d.lostfound_ino = vdfs_put32(s->lostfound_ino);
    d.hb_interval_ms = vdfs_put32(s->hb_interval_ms);
    d.hb_timeout_ms = vdfs_put32(s->hb_timeout_ms);
    for (unsigned t = 0; t < VDFS_RT_COUNT; t++) {
        const struct vdfs_region *r = &s->region[t];
        struct vdfs_disk_region *dr = &d.region[t];
        dr->start = vdfs_put64(r->start);
        dr->count = vdfs_put64(r->count);
        dr->unit_size = vdfs_put32(r->unit_size);
        dr->per_cluster = vdfs_put32(r->per_cluster);
        dr->clusters = vdfs_put32(r->clusters);
        dr->bitmap_offset = vdfs_put64(r->bitmap_offset);
        dr->lock_index = vdfs_put64(r->lock_index);
    }
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_SUPER, &s->hdr);
}

int vdfs_super_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_super *s)
{
    struct vdfs_disk_super d;
    memcpy(&d, buf, sizeof(d));
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_SUPER, addr))
        return -EIO;
    memset(s, 0, sizeof(*s));
    vdfs_obj_read_header(buf, &s->hdr);
    s->version = vdfs_get32(d.version);
    s->compat = vdfs_get32(d.compat);
    s->incompat = vdfs_get32(d.incompat);
    s->ro_compat = vdfs_get32(d.ro_compat);
    memcpy(s->uuid, d.uuid, VDFS_UUID_SIZE);
    string_from_disk(s->label, d.label, VDFS_LABEL_SIZE);
    s->created_ns = vdfs_get64(d.created_ns);
    s->total_bytes = vdfs_get64(d.total_bytes);
    s->block_size = vdfs_get32(d.block_size);
    s->subblock_size = vdfs_get32(d.subblock_size);
    s->max_hosts = vdfs_get32(d.max_hosts);
    s->journal_blocks = vdfs_get32(d.journal_blocks);
    s->heartbeat_offset = vdfs_get64(d.heartbeat_offset);
    s->lock_offset = vdfs_get64(d.lock_offset);
    s->lock_count = vdfs_get64(d.lock_count);
    s->journal_offset = vdfs_get64(d.journal_offset);
    s->backup_offset = vdfs_get64(d.backup_offset);
    s->fd_lock_index = vdfs_get64(d.fd_lock_index);
    s->root_ino = vdfs_get32(d.root_ino);
    s->lostfound_ino = vdfs_get32(d.lostfound_ino);
    s->hb_interval_ms = vdfs_get32(d.hb_interval_ms);
    s->hb_timeout_ms = vdfs_get32(d.hb_timeout_ms);
    for (unsigned t = 0; t < VDFS_RT_COUNT; t++) {
        struct vdfs_region *r = &s->region[t];
        const struct vdfs_disk_region *dr = &d.region[t];
        r->start = vdfs_get64(dr->start);
        r->count = vdfs_get64(dr->count);
        r->unit_size = vdfs_get32(dr->unit_size);
        r->per_cluster = vdfs_get32(dr->per_cluster);
        r->clusters = vdfs_get32(dr->clusters);
        r->bitmap_offset = vdfs_get64(dr->bitmap_offset);
        r->lock_index = vdfs_get64(dr->lock_index);
    }
    if (s->version != VDFS_FORMAT_VERSION)
        return -EIO;
    /* Checked before the geometry: a future feature may change its rules. */
    if (s->incompat & ~VDFS_FEATURE_INCOMPAT_SUPPORTED)
        return -EOPNOTSUPP;
    return super_check_geometry(s);
}

/* ---- heartbeat slot ----------------------------------------------------- */

void vdfs_heartbeat_encode(const struct vdfs_heartbeat *h, uint8_t buf[VDFS_SECTOR_SIZE])
{
    struct vdfs_disk_heartbeat d;
    memset(&d, 0, sizeof(d));
    d.state = vdfs_put32(h->state);
    d.slot = vdfs_put32(h->slot);
    memcpy(d.host_uuid, h->host_uuid, VDFS_UUID_SIZE);
    d.hb_gen = vdfs_put64(h->hb_gen);
    d.counter = vdfs_put64(h->counter);
    d.stamp_ns = vdfs_put64(h->stamp_ns);
    d.interval_ms = vdfs_put32(h->interval_ms);
    d.pid = vdfs_put32(h->pid);
    d.replayer_slot = vdfs_put32(h->replayer_slot);
    d.timeout_ms = vdfs_put32(h->timeout_ms);
    string_to_disk(d.hostname, h->hostname, VDFS_HOSTNAME_SIZE);
    d.replayer_hb_gen = vdfs_put64(h->replayer_hb_gen);
    d.flags = vdfs_put32(h->flags);
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_HEARTBEAT, &h->hdr);
}

int vdfs_heartbeat_decode(const uint8_t buf[VDFS_SECTOR_SIZE], uint64_t addr, struct vdfs_heartbeat *h)
{
    struct vdfs_disk_heartbeat d;
    memcpy(&d, buf, sizeof(d));
    memset(h, 0, sizeof(*h));
    /* mkfs zeroes the heartbeat area instead of writing every slot. */
    if (all_zero(buf, sizeof(d))) {
        h->hdr.kind = VDFS_KIND_HEARTBEAT;
        h->hdr.addr = addr;
        h->state = VDFS_HB_FREE;
        return 0;
    }
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_HEARTBEAT, addr))
        return -EIO;
    vdfs_obj_read_header(buf, &h->hdr);
    h->state = vdfs_get32(d.state);
    h->slot = vdfs_get32(d.slot);
    memcpy(h->host_uuid, d.host_uuid, VDFS_UUID_SIZE);
    h->hb_gen = vdfs_get64(d.hb_gen);
    h->counter = vdfs_get64(d.counter);
    h->stamp_ns = vdfs_get64(d.stamp_ns);
    h->interval_ms = vdfs_get32(d.interval_ms);
    h->pid = vdfs_get32(d.pid);
    h->replayer_slot = vdfs_get32(d.replayer_slot);
    h->timeout_ms = vdfs_get32(d.timeout_ms);
    string_from_disk(h->hostname, d.hostname, VDFS_HOSTNAME_SIZE);
    h->replayer_hb_gen = vdfs_get64(d.replayer_hb_gen);
    h->flags = vdfs_get32(d.flags);
    if (h->state > VDFS_HB_REPLAYING)
        return -EIO;
    return 0;
}

/* ---- lock record -------------------------------------------------------- */

void vdfs_lock_encode(const struct vdfs_lock_rec *l, uint8_t buf[VDFS_SECTOR_SIZE])
{
    struct vdfs_disk_lock d;
    memset(&d, 0, sizeof(d));
    d.mode = vdfs_put32(l->mode);
    d.owner_slot = vdfs_put32(l->owner_slot);
    d.owner_hb_gen = vdfs_put64(l->owner_hb_gen);
    d.object = vdfs_put64(l->object);
    d.acquired_ns = vdfs_put64(l->acquired_ns);
    d.nholders = vdfs_put32(l->nholders);
    for (unsigned i = 0; i < VDFS_LOCK_HOLDERS; i++) {
        d.holders[i].slot = vdfs_put32(l->holders[i].slot);
        d.holders[i].hb_gen = vdfs_put32(l->holders[i].hb_gen);
    }
    d.version = vdfs_put64(l->version);
    d.waiters = vdfs_put64(l->waiters);
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_LOCK, &l->hdr);
}

int vdfs_lock_decode(const uint8_t buf[VDFS_SECTOR_SIZE], uint64_t addr, struct vdfs_lock_rec *l)
{
    struct vdfs_disk_lock d;
    memcpy(&d, buf, sizeof(d));
    memset(l, 0, sizeof(*l));
    /* mkfs zeroes the lock area instead of writing every record. */
    if (all_zero(buf, sizeof(d))) {
        l->hdr.kind = VDFS_KIND_LOCK;
        l->hdr.addr = addr;
        l->mode = VDFS_LOCK_FREE;
        l->owner_slot = VDFS_NO_SLOT;
        return 0;
    }
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_LOCK, addr))
        return -EIO;
    vdfs_obj_read_header(buf, &l->hdr);
    l->mode = vdfs_get32(d.mode);
    l->owner_slot = vdfs_get32(d.owner_slot);
    l->owner_hb_gen = vdfs_get64(d.owner_hb_gen);
    l->object = vdfs_get64(d.object);
    l->acquired_ns = vdfs_get64(d.acquired_ns);
    l->nholders = vdfs_get32(d.nholders);
    for (unsigned i = 0; i < VDFS_LOCK_HOLDERS; i++) {
        l->holders[i].slot = vdfs_get32(d.holders[i].slot);
        l->holders[i].hb_gen = vdfs_get32(d.holders[i].hb_gen);
    }
    l->version = vdfs_get64(d.version);
    l->waiters = vdfs_get64(d.waiters);
    if (l->mode > VDFS_LOCK_MULTI_WRITER || l->nholders > VDFS_LOCK_HOLDERS)
        return -EIO;
    return 0;
}

/* ---- resource cluster bitmap -------------------------------------------- */

void vdfs_bitmap_encode(const struct vdfs_bitmap *b, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_disk_bitmap d;
    memset(&d, 0, sizeof(d));
    d.rtype = vdfs_put32(b->rtype);
    d.cluster = vdfs_put32(b->cluster);
    d.first = vdfs_put64(b->first);
    d.count = vdfs_put32(b->count);
    d.free = vdfs_put32(b->free);
    d.affinity = vdfs_put32(b->affinity);
    memcpy(d.bits, b->bits, VDFS_BITMAP_BYTES);
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_BITMAP, &b->hdr);
}

void vdfs_bitmap_init_free(struct vdfs_bitmap *bm, const struct vdfs_super *s, unsigned rtype, uint32_t c)
{
    const struct vdfs_region *r = &s->region[rtype];
    memset(bm, 0, sizeof(*bm));
    bm->hdr = (struct vdfs_header){.kind = VDFS_KIND_BITMAP, .addr = vdfs_bitmap_addr(s, rtype, c), .gen = 1};
    bm->rtype = rtype;
    bm->cluster = c;
    bm->first = (uint64_t)c * r->per_cluster;
    bm->count = vdfs_cluster_len(r, c);
    bm->free = bm->count;
    bm->affinity = VDFS_NO_SLOT;
}

int vdfs_bitmap_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_bitmap *b)
{
    struct vdfs_disk_bitmap d;
    memcpy(&d, buf, sizeof(d));
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_BITMAP, addr))
        return -EIO;
    memset(b, 0, sizeof(*b));
    vdfs_obj_read_header(buf, &b->hdr);
    b->rtype = vdfs_get32(d.rtype);
    b->cluster = vdfs_get32(d.cluster);
    b->first = vdfs_get64(d.first);
    b->count = vdfs_get32(d.count);
    b->free = vdfs_get32(d.free);
    b->affinity = vdfs_get32(d.affinity);
    memcpy(b->bits, d.bits, VDFS_BITMAP_BYTES);
    if (b->rtype >= VDFS_RT_COUNT || b->count > VDFS_BITMAP_BITS || b->free > b->count)
        return -EIO;
    return 0;
}

/* ---- file descriptor ---------------------------------------------------- */

static struct vdfs_disk_timestamp ts_to_disk(struct vdfs_timespec t)
{
    struct vdfs_disk_timestamp d = {
        .sec = vdfs_put64((uint64_t)t.sec),
        .nsec = vdfs_put32(t.nsec),
        .reserved = vdfs_put32(0),
    };
    return d;
}

static struct vdfs_timespec ts_from_disk(struct vdfs_disk_timestamp d)
{
    struct vdfs_timespec t = { .sec = (int64_t)vdfs_get64(d.sec), .nsec = vdfs_get32(d.nsec) };
    return t;
}

void vdfs_fd_encode(const struct vdfs_fd *fd, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_disk_fd d;
    memset(&d, 0, sizeof(d));
    d.ino = vdfs_put32(fd->ino);
    d.mode = vdfs_put32(fd->mode);
    d.uid = vdfs_put32(fd->uid);
    d.gid = vdfs_put32(fd->gid);
    d.nlink = vdfs_put32(fd->nlink);
    d.flags = vdfs_put32(fd->flags);
    d.addr_mode = vdfs_put32(fd->addr_mode);
    d.xattr_len = vdfs_put32(fd->xattr_len);
    d.size = vdfs_put64(fd->size);
    d.alloc_bytes = vdfs_put64(fd->alloc_bytes);
    d.parent = vdfs_put32(fd->parent);
    d.ino_gen = vdfs_put32(fd->ino_gen);
    d.atime = ts_to_disk(fd->atime);
    d.mtime = ts_to_disk(fd->mtime);
    d.ctime = ts_to_disk(fd->ctime);
    d.btime = ts_to_disk(fd->btime);
    d.rdev = vdfs_put32(fd->rdev);
    memcpy(d.xattr, fd->xattr, VDFS_XATTR_BYTES);
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        memcpy(d.data, fd->data.resident, VDFS_DATA_AREA);
    } else {
        for (unsigned i = 0; i < VDFS_SLOTS; i++) {
            vdfs_le32 slot = vdfs_put32(fd->data.slots[i]);
            memcpy(d.data + 4 * i, &slot, sizeof(slot));
        }
    }
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_FD, &fd->hdr);
}

int vdfs_fd_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_fd *fd)
{
    if (vdfs_obj_verify(buf, sizeof(struct vdfs_disk_fd), VDFS_KIND_FD, addr))
        return -EIO;
    return vdfs_fd_decode_verified(buf, fd);
}

int vdfs_fd_decode_verified(const uint8_t buf[VDFS_META_SIZE], struct vdfs_fd *fd)
{
    struct vdfs_disk_fd d;
    memcpy(&d, buf, sizeof(d));
    memset(fd, 0, sizeof(*fd));
    vdfs_obj_read_header(buf, &fd->hdr);
    fd->ino = vdfs_get32(d.ino);
    fd->mode = vdfs_get32(d.mode);
    fd->uid = vdfs_get32(d.uid);
    fd->gid = vdfs_get32(d.gid);
    fd->nlink = vdfs_get32(d.nlink);
    fd->flags = vdfs_get32(d.flags);
    fd->addr_mode = vdfs_get32(d.addr_mode);
    fd->xattr_len = vdfs_get32(d.xattr_len);
    fd->size = vdfs_get64(d.size);
    fd->alloc_bytes = vdfs_get64(d.alloc_bytes);
    fd->parent = vdfs_get32(d.parent);
    fd->ino_gen = vdfs_get32(d.ino_gen);
    fd->atime = ts_from_disk(d.atime);
    fd->mtime = ts_from_disk(d.mtime);
    fd->ctime = ts_from_disk(d.ctime);
    fd->btime = ts_from_disk(d.btime);
    fd->rdev = vdfs_get32(d.rdev);
    memcpy(fd->xattr, d.xattr, VDFS_XATTR_BYTES);
    if (fd->addr_mode > VDFS_AM_BLOCK || fd->xattr_len > VDFS_XATTR_BYTES ||
        (fd->addr_mode == VDFS_AM_RESIDENT && fd->size > VDFS_RESIDENT_MAX))
        return -EIO;
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        memcpy(fd->data.resident, d.data, VDFS_DATA_AREA);
    } else {
        for (unsigned i = 0; i < VDFS_SLOTS; i++) {
            vdfs_le32 slot;
            memcpy(&slot, d.data + 4 * i, sizeof(slot));
            fd->data.slots[i] = vdfs_get32(slot);
        }
    }
    return 0;
}

/* ---- pointer block ------------------------------------------------------ */

void vdfs_pb_encode(const struct vdfs_pb *pb, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_disk_pb d;
    memset(&d, 0, sizeof(d));
    d.owner_ino = vdfs_put32(pb->owner_ino);
    d.level = vdfs_put32(pb->level);
    for (unsigned i = 0; i < VDFS_PB_ENTRIES; i++)
        d.entries[i] = vdfs_put32(pb->entries[i]);
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_PB, &pb->hdr);
}

int vdfs_pb_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_pb *pb)
{
    struct vdfs_disk_pb d;
    memcpy(&d, buf, sizeof(d));
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_PB, addr))
        return -EIO;
    memset(pb, 0, sizeof(*pb));
    vdfs_obj_read_header(buf, &pb->hdr);
    pb->owner_ino = vdfs_get32(d.owner_ino);
    pb->level = vdfs_get32(d.level);
    for (unsigned i = 0; i < VDFS_PB_ENTRIES; i++)
        pb->entries[i] = vdfs_get32(d.entries[i]);
    if (pb->level != 1 && pb->level != 2)
        return -EIO;
    return 0;
}

/* ---- directory block ---------------------------------------------------- */

void vdfs_dirblock_encode(const struct vdfs_dirblock *dir, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_disk_dirblock d;
    memset(&d, 0, sizeof(d));
    d.owner_ino = vdfs_put32(dir->owner_ino);
    d.nentries = vdfs_put16(dir->nentries);
    d.used = vdfs_put16(dir->used);
    /* Bytes past `used` are free space: stored as zeros so that removed
     * names do not linger on disk. */
    memcpy(d.entries, dir->entries, dir->used < VDFS_DIR_AREA ? dir->used : VDFS_DIR_AREA);
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_DIR, &dir->hdr);
}

/* Walks the packed entries; true if they fill `used` exactly, every one is
 * well formed, and there are `nentries` of them. */
static bool dir_entries_parse(const uint8_t *area, uint16_t used, uint16_t nentries)
{
    uint32_t pos = 0, count = 0;
    while (pos < used) {
        if (used - pos < VDFS_DIRENT_FIXED)
            return false;
        vdfs_le32 ino;
        memcpy(&ino, area + pos, sizeof(ino));
        uint8_t name_len = area[pos + 5];
        if (vdfs_get32(ino) == 0 || name_len == 0 || used - pos - VDFS_DIRENT_FIXED < name_len)
            return false;
        const uint8_t *name = area + pos + VDFS_DIRENT_FIXED;
        for (unsigned i = 0; i < name_len; i++)
            if (name[i] == '/' || name[i] == '\0')
                return false;
        pos += VDFS_DIRENT_FIXED + name_len;
        count++;
    }
    return count == nentries;
}

int vdfs_dirblock_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_dirblock *dir)
{
    struct vdfs_disk_dirblock d;
    memcpy(&d, buf, sizeof(d));
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_DIR, addr))
        return -EIO;
    memset(dir, 0, sizeof(*dir));
    vdfs_obj_read_header(buf, &dir->hdr);
    dir->owner_ino = vdfs_get32(d.owner_ino);
    dir->nentries = vdfs_get16(d.nentries);
    dir->used = vdfs_get16(d.used);
    memcpy(dir->entries, d.entries, VDFS_DIR_AREA);
    if (dir->used > VDFS_DIR_AREA || !dir_entries_parse(dir->entries, dir->used, dir->nentries))
        return -EIO;
    return 0;
}

/* ---- journal header and descriptor -------------------------------------- */

void vdfs_jheader_encode(const struct vdfs_jheader *j, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_disk_jheader d;
    memset(&d, 0, sizeof(d));
    d.slot = vdfs_put32(j->slot);
    d.start_seq = vdfs_put64(j->start_seq);
    d.start_block = vdfs_put32(j->start_block);
    memcpy(d.host_uuid, j->host_uuid, VDFS_UUID_SIZE);
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_JHEADER, &j->hdr);
}

int vdfs_jheader_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_jheader *j)
{
    struct vdfs_disk_jheader d;
    memcpy(&d, buf, sizeof(d));
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_JHEADER, addr))
        return -EIO;
    memset(j, 0, sizeof(*j));
    vdfs_obj_read_header(buf, &j->hdr);
    j->slot = vdfs_get32(d.slot);
    j->start_seq = vdfs_get64(d.start_seq);
    j->start_block = vdfs_get32(d.start_block);
    memcpy(j->host_uuid, d.host_uuid, VDFS_UUID_SIZE);
    return 0;
}

void vdfs_jdesc_encode(const struct vdfs_jdesc *j, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_disk_jdesc d;
    memset(&d, 0, sizeof(d));
    d.seq = vdfs_put64(j->seq);
    d.count = vdfs_put32(j->count);
    d.flags = vdfs_put32(j->flags);
    d.images_csum = vdfs_put64(j->images_csum);
    for (unsigned i = 0; i < VDFS_JDESC_ADDRS; i++)
        d.addrs[i] = vdfs_put64(j->addrs[i]);
    memcpy(buf, &d, sizeof(d));
    seal_as(buf, sizeof(d), VDFS_KIND_JDESC, &j->hdr);
}

int vdfs_jdesc_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_jdesc *j)
{
    struct vdfs_disk_jdesc d;
    memcpy(&d, buf, sizeof(d));
    if (vdfs_obj_verify(buf, sizeof(d), VDFS_KIND_JDESC, addr))
        return -EIO;
    memset(j, 0, sizeof(*j));
    vdfs_obj_read_header(buf, &j->hdr);
    j->seq = vdfs_get64(d.seq);
    j->count = vdfs_get32(d.count);
    j->flags = vdfs_get32(d.flags);
    j->images_csum = vdfs_get64(d.images_csum);
    for (unsigned i = 0; i < VDFS_JDESC_ADDRS; i++)
        j->addrs[i] = vdfs_get64(d.addrs[i]);
    if (j->count > VDFS_JDESC_ADDRS)
        return -EIO;
    return 0;
}

bool vdfs_dirent_next(const struct vdfs_dirblock *d, uint16_t *pos, struct vdfs_dirent *e)
{
    uint32_t p = *pos;
    if (d->used > VDFS_DIR_AREA || p + VDFS_DIRENT_FIXED > d->used)
        return false;
    const uint8_t *b = d->entries + p;
    e->ino = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    e->type = b[4];
    e->name_len = b[5];
    if (e->name_len == 0 || p + VDFS_DIRENT_FIXED + e->name_len > d->used)
        return false;
    e->name = b + VDFS_DIRENT_FIXED;
    e->offset = (uint16_t)p;
    e->len = (uint16_t)(VDFS_DIRENT_FIXED + e->name_len);
    *pos = (uint16_t)(p + e->len);
    return true;
}

void vdfs_dirent_remove(struct vdfs_dirblock *d, const struct vdfs_dirent *e)
{
    memmove(d->entries + e->offset, d->entries + e->offset + e->len, d->used - e->offset - e->len);
    d->used = (uint16_t)(d->used - e->len);
    memset(d->entries + d->used, 0, VDFS_DIR_AREA - d->used);
    d->nentries--;
}

static void put_entry_head(uint8_t *p, uint32_t ino, uint8_t type)
{
    p[0] = (uint8_t)ino;
    p[1] = (uint8_t)(ino >> 8);
    p[2] = (uint8_t)(ino >> 16);
    p[3] = (uint8_t)(ino >> 24);
    p[4] = type;
}

bool vdfs_dirent_append(struct vdfs_dirblock *d, uint32_t ino, uint8_t type, const char *name, size_t len)
{
    if (len == 0 || len > VDFS_NAME_MAX || d->used + VDFS_DIRENT_FIXED + len > VDFS_DIR_AREA)
        return false;
    uint8_t *p = d->entries + d->used;
    put_entry_head(p, ino, type);
    p[5] = (uint8_t)len;
    memcpy(p + VDFS_DIRENT_FIXED, name, len);
    d->used = (uint16_t)(d->used + VDFS_DIRENT_FIXED + len);
    d->nentries++;
    return true;
}

void vdfs_dirent_set(struct vdfs_dirblock *d, const struct vdfs_dirent *e, uint32_t ino, uint8_t type)
{
    put_entry_head(d->entries + e->offset, ino, type);
}
