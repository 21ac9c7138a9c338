/* Patches to a datastore image's metadata for the fuzzers (see
 * metadata_patch.h). */
#define _FILE_OFFSET_BITS 64
#include "metadata_patch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool block_is_zero(const uint8_t *p)
{
    for (size_t i = 0; i < VDFS_META_SIZE; i++)
        if (p[i])
            return false;
    return true;
}

void patch_base_load(struct patch_base *b, const char *path)
{
    memset(b, 0, sizeof(*b));
    FILE *fp = fopen(path, "rb");
    long end;
    if (!fp || fseek(fp, 0, SEEK_END) || (end = ftell(fp)) <= 0 || fseek(fp, 0, SEEK_SET)) {
        fprintf(stderr, "metadata_patch: cannot read %s\n", path);
        abort();
    }
    b->size = (size_t)end;
    b->image = malloc(b->size);
    b->work = malloc(b->size);
    if (!b->image || !b->work || fread(b->image, 1, b->size, fp) != b->size)
        abort();
    fclose(fp);
    memcpy(b->work, b->image, b->size);
    if (b->size < VDFS_META_SIZE || vdfs_super_decode(b->image, 0, &b->sb) != 0) {
        fprintf(stderr, "metadata_patch: %s has no valid superblock\n", path);
        abort();
    }
    b->meta_end = b->sb.region[VDFS_RT_FB].start;
    if (b->meta_end == 0 || b->meta_end > b->size)
        b->meta_end = b->size;
    b->blocks = malloc((b->meta_end / VDFS_META_SIZE + 1) * sizeof(*b->blocks));
    if (!b->blocks)
        abort();
    for (uint64_t off = 0; off + VDFS_META_SIZE <= b->meta_end; off += VDFS_META_SIZE)
        if (!block_is_zero(b->image + off))
            b->blocks[b->nblocks++] = off;
    if (b->nblocks == 0)
        abort();
    uint64_t jstart = b->sb.journal_offset;
    uint64_t jend = jstart + (uint64_t)b->sb.max_hosts * b->sb.journal_blocks * VDFS_META_SIZE;
    for (unsigned c = 0; c < PATCH_CLASSES; c++)
        if (!(b->by_class[c] = malloc(b->nblocks * sizeof(uint64_t))))
            abort();
    for (size_t i = 0; i < b->nblocks; i++) {
        uint64_t off = b->blocks[i];
        const uint8_t *p = b->image + off;
        uint32_t kind = get32(p) == VDFS_MAGIC ? get32(p + 4) : 0;
        unsigned c = off < jstart ? PATCH_CLASS_AREAS
                     : off < jend ? PATCH_CLASS_JOURNAL
                     : kind == VDFS_KIND_BITMAP ? PATCH_CLASS_BITMAP
                     : kind == VDFS_KIND_FD ? PATCH_CLASS_FD
                     : kind == VDFS_KIND_PB ? PATCH_CLASS_PB
                     : kind == VDFS_KIND_DIR ? PATCH_CLASS_DIR
                     : kind == VDFS_KIND_SUPER ? PATCH_CLASS_AREAS
                                                : PATCH_CLASS_OTHER;
        b->by_class[c][b->nclass[c]++] = off;
    }
}

/* Block `sel` picks: a class, then a block of it. */
static uint64_t pick_block(const struct patch_base *b, uint32_t sel)
{
    unsigned c = sel % PATCH_CLASSES;
    for (unsigned n = 0; n < PATCH_CLASSES && b->nclass[c] == 0; n++)
        c = (c + 1) % PATCH_CLASSES;
    return b->by_class[c][(sel / PATCH_CLASSES) % b->nclass[c]];
}

static bool is_object(const uint8_t *p, bool sector)
{
    if (get32(p) != VDFS_MAGIC)
        return false;
    uint32_t kind = get32(p + 4);
    bool small = kind == VDFS_KIND_HEARTBEAT || kind == VDFS_KIND_LOCK;
    return small == sector;
}

static void reseal(uint8_t *p, size_t len)
{
    struct vdfs_header h;
    vdfs_obj_read_header(p, &h);
    vdfs_obj_seal(p, len, &h);
}

/* Recomputes the images' checksum of every descriptor in `slot`'s
 * journal, following the chain the base's header starts. */
static void fix_journal(struct patch_base *b, uint32_t slot)
{
    const struct vdfs_super *sb = &b->sb;
    uint32_t pos = 1;
    while (pos < sb->journal_blocks) {
        uint8_t *d = b->work + vdfs_journal_addr(sb, slot, pos);
        if (get32(d) != VDFS_MAGIC || get32(d + 4) != VDFS_KIND_JDESC)
            break;
        uint32_t count = get32(d + 40);
        if (count == 0 || count > VDFS_JDESC_ADDRS || pos + 1 + count > sb->journal_blocks)
            break;
        put64(d + 48, vdfs_checksum(d + VDFS_META_SIZE, (size_t)count * VDFS_META_SIZE));
        reseal(d, VDFS_META_SIZE);
        pos += 1 + count;
    }
}

static void reseal_block(struct patch_base *b, uint64_t off, bool journals[VDFS_MAX_HOSTS_LIMIT])
{
    if (is_object(b->image + off, false)) {
        reseal(b->work + off, VDFS_META_SIZE);
    } else {
        for (uint64_t s = off; s < off + VDFS_META_SIZE; s += VDFS_SECTOR_SIZE)
            if (is_object(b->image + s, true))
                reseal(b->work + s, VDFS_SECTOR_SIZE);
    }
    const struct vdfs_super *sb = &b->sb;
    uint64_t jsize = (uint64_t)sb->journal_blocks * VDFS_META_SIZE;
    if (jsize && off >= sb->journal_offset && off < sb->journal_offset + sb->max_hosts * jsize) {
        uint64_t slot = (off - sb->journal_offset) / jsize;
        if (slot < VDFS_MAX_HOSTS_LIMIT)
            journals[slot] = true;
    }
}

void patch_apply(struct patch_base *b, const uint8_t *data, size_t size, bool raw, struct patch_set *set)
{
    set->ntouched = 0;
    for (size_t i = 0; i + 5 <= size;) {
        uint32_t block = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8;
        uint32_t off = ((uint32_t)data[i + 2] | (uint32_t)data[i + 3] << 8) % VDFS_META_SIZE;
        size_t len = data[i + 4];
        i += 5;
        if (len > size - i)
            len = size - i;
        uint64_t at = pick_block(b, block) + off;
        if (at + len > b->meta_end)
            len = (size_t)(b->meta_end - at);
        memcpy(b->work + at, data + i, len);
        i += len;
        for (uint64_t blk = at & ~(uint64_t)(VDFS_META_SIZE - 1); blk < at + len; blk += VDFS_META_SIZE) {
            bool seen = false;
            for (size_t k = 0; k < set->ntouched && !seen; k++)
                seen = set->touched[k] == blk;
            if (!seen && set->ntouched < PATCH_MAX_TOUCHED)
                set->touched[set->ntouched++] = blk;
        }
    }
    if (raw)
        return;
    bool journals[VDFS_MAX_HOSTS_LIMIT] = {false};
    for (size_t k = 0; k < set->ntouched; k++)
        reseal_block(b, set->touched[k], journals);
    for (uint32_t s = 0; s < VDFS_MAX_HOSTS_LIMIT; s++)
        if (journals[s]) {
            fix_journal(b, s);
            /* The descriptors that were re-sealed go back too. */
            for (uint32_t pos = 1; pos < b->sb.journal_blocks && set->ntouched < PATCH_MAX_TOUCHED; pos++) {
                uint64_t a = vdfs_journal_addr(&b->sb, s, pos);
                if (get32(b->image + a) == VDFS_MAGIC && get32(b->image + a + 4) == VDFS_KIND_JDESC)
                    set->touched[set->ntouched++] = a;
            }
        }
}

int patch_write_image(const struct patch_base *b, const struct patch_set *set, const char *dir)
{
    int fd;
    if (dir) {
        char path[512];
        snprintf(path, sizeof(path), "%s/metadata_patch-XXXXXX", dir);
        fd = mkstemp(path);
        if (fd >= 0)
            unlink(path);
    } else {
        fd = memfd_create("metadata_patch", 0);
    }
    if (fd < 0 || ftruncate(fd, (off_t)b->size) < 0)
        abort();
    for (size_t i = 0; i < b->nblocks; i++)
        if (pwrite(fd, b->work + b->blocks[i], VDFS_META_SIZE, (off_t)b->blocks[i]) != VDFS_META_SIZE)
            abort();
    for (size_t i = 0; i < set->ntouched; i++)
        if (pwrite(fd, b->work + set->touched[i], VDFS_META_SIZE, (off_t)set->touched[i]) != VDFS_META_SIZE)
            abort();
    return fd;
}

void patch_restore(struct patch_base *b, const struct patch_set *set)
{
    for (size_t k = 0; k < set->ntouched; k++)
        memcpy(b->work + set->touched[k], b->image + set->touched[k], VDFS_META_SIZE);
}
