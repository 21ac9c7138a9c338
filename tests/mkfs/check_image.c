/* Decodes what mkfs.vdfs wrote and checks it against the on-disk
 * invariants (notes/invariants.md): both superblocks, every cluster bitmap,
 * the journal headers, the heartbeat and lock areas, root, lost+found and
 * root's directory block.
 *
 * Usage: check_image IMAGE [--label L] [--uuid U] [--hosts N] [--block B] [--total T]
 *                          [--subblock S] [--journal-blocks J] [--fds N]
 * Prints what it verified and exits 0, or the first violation and exits 1. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"

static int image_fd;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("check_image: FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void read_at(void *buf, size_t len, uint64_t off)
{
    ssize_t n = pread(image_fd, buf, len, (off_t)off);
    if (n != (ssize_t)len)
        die("cannot read %zu bytes at %llu: %s", len, (unsigned long long)off, n < 0 ? strerror(errno) : "short");
}

/* True when [off, off+len) reads as zeros; holes of a sparse image are
 * skipped without reading them. */
static bool range_is_zero(uint64_t off, uint64_t len)
{
    static uint8_t buf[1 << 20];
    uint64_t end = off + len, pos = off;
    while (pos < end) {
        off_t data = lseek(image_fd, (off_t)pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            return true;
        if (data >= 0) {
            if ((uint64_t)data >= end)
                return true;
            if ((uint64_t)data > pos)
                pos = (uint64_t)data;
        }
        size_t n = end - pos < sizeof(buf) ? (size_t)(end - pos) : sizeof(buf);
        read_at(buf, n, pos);
        for (size_t i = 0; i < n; i++)
            if (buf[i] != 0)
                return false;
        pos += n;
    }
    return true;
}

static void uuid_string(const uint8_t u[16], char out[37])
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
             u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void check_super(struct vdfs_super *sb)
{
    static uint8_t buf[VDFS_META_SIZE];
    read_at(buf, sizeof(buf), VDFS_SUPER_OFFSET);
    memset(sb, 0, sizeof(*sb));
    int rc = vdfs_super_decode(buf, VDFS_SUPER_OFFSET, sb);
    if (rc != 0)
        die("primary superblock does not decode: %s", strerror(-rc));
    if (sb->hdr.gen != 1 || sb->version != VDFS_FORMAT_VERSION || sb->root_ino != 1 || sb->lostfound_ino != 2)
        die("primary superblock: gen %llu version %u root %u lost+found %u", (unsigned long long)sb->hdr.gen,
            sb->version, sb->root_ino, sb->lostfound_ino);
    struct stat st;
    if (fstat(image_fd, &st) != 0)
        die("fstat: %s", strerror(errno));
    if (S_ISREG(st.st_mode) && sb->total_bytes > (uint64_t)st.st_size)
        die("superblock total %llu exceeds the image size %lld", (unsigned long long)sb->total_bytes,
            (long long)st.st_size);

    struct vdfs_super backup;
    memset(&backup, 0, sizeof(backup));
    read_at(buf, sizeof(buf), sb->backup_offset);
    rc = vdfs_super_decode(buf, sb->backup_offset, &backup);
    if (rc != 0)
        die("backup superblock at %llu does not decode: %s", (unsigned long long)sb->backup_offset, strerror(-rc));
    backup.hdr.addr = sb->hdr.addr;
    if (memcmp(&backup, sb, sizeof(backup)) != 0)
        die("backup superblock differs from the primary");
}

static unsigned popcount_bits(const uint8_t *bits, uint32_t from, uint32_t to)
{
    unsigned n = 0;
    for (uint32_t i = from; i < to; i++)
        n += (bits[i / 8] >> (i % 8)) & 1u;
    return n;
}

static void check_bitmaps(const struct vdfs_super *sb)
{
    static uint8_t buf[VDFS_META_SIZE];
    static const char *const names[] = {"FB", "SB", "PB", "FD"};
    for (unsigned r = 0; r < VDFS_RT_COUNT; r++) {
        const struct vdfs_region *g = &sb->region[r];
        uint64_t used = 0;
        for (uint32_t c = 0; c < g->clusters; c++) {
            struct vdfs_bitmap bm;
            uint64_t addr = vdfs_bitmap_addr(sb, r, c);
            read_at(buf, sizeof(buf), addr);
            int rc = vdfs_bitmap_decode(buf, addr, &bm);
            if (rc != 0)
                die("%s bitmap %u does not decode: %s", names[r], c, strerror(-rc));
            uint64_t first = (uint64_t)c * g->per_cluster;
            uint64_t expect_count = g->count - first < g->per_cluster ? g->count - first : g->per_cluster;
            if (bm.rtype != r || bm.cluster != c || bm.first != first || bm.count != expect_count)
                die("%s bitmap %u: rtype %u cluster %u first %llu count %u", names[r], c, bm.rtype, bm.cluster,
                    (unsigned long long)bm.first, bm.count);
            if (bm.affinity != VDFS_NO_SLOT || bm.hdr.gen != 1)
                die("%s bitmap %u: affinity %u gen %llu", names[r], c, bm.affinity, (unsigned long long)bm.hdr.gen);
            unsigned set = popcount_bits(bm.bits, 0, bm.count);
            if (popcount_bits(bm.bits, bm.count, VDFS_BITMAP_BITS) != 0)
                die("%s bitmap %u has bits set beyond its count", names[r], c);
            if (bm.free != bm.count - set)
                die("%s bitmap %u: free %u but %u of %u bits set", names[r], c, bm.free, set, bm.count);
            used += set;
            bool bit0 = bm.bits[0] & 1u, bit1 = bm.bits[0] & 2u, bit2 = bm.bits[0] & 4u;
            if (c == 0 && r == VDFS_RT_FD && !(bit0 && bit1 && bit2))
                die("FD bitmap 0 lacks descriptor 0, root or lost+found");
            if (c == 0 && r == VDFS_RT_SB && !bit0)
                die("SB bitmap 0 lacks root's directory block");
        }
        uint64_t expect_used = r == VDFS_RT_FD ? 3 : r == VDFS_RT_SB ? 1 : 0;
        if (used != expect_used)
            die("%s region: %llu resources allocated, expected %llu", names[r], (unsigned long long)used,
                (unsigned long long)expect_used);
    }
}

static void check_journals_and_areas(const struct vdfs_super *sb)
{
    static uint8_t buf[VDFS_META_SIZE];
    uint64_t seqs[VDFS_MAX_HOSTS_LIMIT];
    for (uint32_t slot = 0; slot < sb->max_hosts; slot++) {
        struct vdfs_jheader j;
        uint64_t addr = vdfs_journal_addr(sb, slot, 0);
        read_at(buf, sizeof(buf), addr);
        int rc = vdfs_jheader_decode(buf, addr, &j);
        if (rc != 0)
            die("journal header of slot %u does not decode: %s", slot, strerror(-rc));
        static const uint8_t zero_uuid[VDFS_UUID_SIZE];
        if (j.slot != slot || j.start_block != 1 || memcmp(j.host_uuid, zero_uuid, sizeof(zero_uuid)) != 0)
            die("journal header of slot %u: slot %u start_block %u", slot, j.slot, j.start_block);
        seqs[slot] = j.start_seq;
        for (uint32_t k = 0; k < slot; k++)
            if (seqs[k] == seqs[slot])
                die("journal slots %u and %u start at the same sequence", k, slot);
    }
    if (!range_is_zero(sb->heartbeat_offset, (uint64_t)sb->max_hosts * VDFS_SECTOR_SIZE))
        die("heartbeat area is not all zeros (FREE)");
    if (!range_is_zero(sb->lock_offset, sb->lock_count * VDFS_SECTOR_SIZE))
        die("lock area is not all zeros (never used)");
}

static void read_fd(const struct vdfs_super *sb, uint32_t ino, struct vdfs_fd *fd)
{
    static uint8_t buf[VDFS_META_SIZE];
    uint64_t addr = vdfs_fd_addr(sb, ino);
    read_at(buf, sizeof(buf), addr);
    int rc = vdfs_fd_decode(buf, addr, fd);
    if (rc != 0)
        die("descriptor %u does not decode: %s", ino, strerror(-rc));
    if (fd->ino != ino || fd->hdr.gen != 1 || fd->ino_gen != 1 || fd->parent != 1 || !S_ISDIR(fd->mode))
        die("descriptor %u: ino %u gen %llu ino_gen %u parent %u mode %o", ino, fd->ino,
            (unsigned long long)fd->hdr.gen, fd->ino_gen, fd->parent, fd->mode);
    if (fd->mtime.sec == 0 || fd->ctime.sec != fd->mtime.sec || fd->btime.sec != fd->mtime.sec)
        die("descriptor %u: timestamps not set", ino);
}

static void check_tree(const struct vdfs_super *sb)
{
    static struct vdfs_fd root, lf;
    read_fd(sb, 1, &root);
    read_fd(sb, 2, &lf);
    if ((root.mode & 07777) != 0755 || root.nlink != 3 || root.addr_mode != VDFS_AM_SUB ||
        root.size != VDFS_META_SIZE || root.alloc_bytes != sb->subblock_size)
        die("root: mode %o nlink %u addr_mode %u size %llu alloc %llu", root.mode, root.nlink, root.addr_mode,
            (unsigned long long)root.size, (unsigned long long)root.alloc_bytes);
    if (root.data.slots[0] != vdfs_ptr_make(0, false))
        die("root slot 0 is %#x, not sub-block 0", root.data.slots[0]);
    for (unsigned i = 1; i < VDFS_SLOTS; i++)
        if (root.data.slots[i] != 0)
            die("root slot %u is set", i);
    if ((lf.mode & 07777) != 0700 || lf.nlink != 2 || lf.addr_mode != VDFS_AM_RESIDENT || lf.size != 0 ||
        lf.alloc_bytes != 0)
        die("lost+found: mode %o nlink %u addr_mode %u size %llu", lf.mode, lf.nlink, lf.addr_mode,
            (unsigned long long)lf.size);

    static uint8_t buf[VDFS_META_SIZE];
    struct vdfs_dirblock dir;
    uint64_t addr = vdfs_resource_addr(sb, VDFS_RT_SB, 0);
    read_at(buf, sizeof(buf), addr);
    int rc = vdfs_dirblock_decode(buf, addr, &dir);
    if (rc != 0)
        die("root directory block does not decode: %s", strerror(-rc));
    vdfs_le32 ino;
    memcpy(&ino, dir.entries, sizeof(ino));
    if (dir.owner_ino != 1 || dir.nentries != 1 || vdfs_get32(ino) != 2 || dir.entries[4] != DT_DIR ||
        dir.entries[5] != 10 || memcmp(dir.entries + 6, "lost+found", 10) != 0)
        die("root directory block does not hold exactly {2, DT_DIR, \"lost+found\"}");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc % 2 != 0) {
        fprintf(stderr, "usage: check_image IMAGE [--label L] [--uuid U] [--hosts N] [--block B] [--subblock S] [--total T]"
                        " [--journal-blocks J] [--fds N]\n");
        return 2;
    }
    image_fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (image_fd < 0)
        die("cannot open %s: %s", argv[1], strerror(errno));
    struct vdfs_super sb;
    check_super(&sb);
    char uuid[37];
    uuid_string(sb.uuid, uuid);
    for (int i = 2; i < argc; i += 2) {
        const char *key = argv[i], *want = argv[i + 1];
        unsigned long long v = strtoull(want, NULL, 0);
        if (strcmp(key, "--label") == 0 && strcmp(sb.label, want) != 0)
            die("label is \"%s\", expected \"%s\"", sb.label, want);
        else if (strcmp(key, "--uuid") == 0 && strcmp(uuid, want) != 0)
            die("uuid is %s, expected %s", uuid, want);
        else if (strcmp(key, "--hosts") == 0 && sb.max_hosts != v)
            die("max_hosts is %u, expected %llu", sb.max_hosts, v);
        else if (strcmp(key, "--block") == 0 && sb.block_size != v)
            die("block_size is %u, expected %llu", sb.block_size, v);
        else if (strcmp(key, "--subblock") == 0 && sb.subblock_size != v)
            die("subblock_size is %u, expected %llu", sb.subblock_size, v);
        else if (strcmp(key, "--journal-blocks") == 0 && sb.journal_blocks != v)
            die("journal_blocks is %u, expected %llu", sb.journal_blocks, v);
        else if (strcmp(key, "--fds") == 0 && sb.region[VDFS_RT_FD].count != v)
            die("descriptor count is %llu, expected %llu", (unsigned long long)sb.region[VDFS_RT_FD].count, v);
        else if (strcmp(key, "--total") == 0 && sb.total_bytes != v)
            die("total_bytes is %llu, expected %llu", (unsigned long long)sb.total_bytes, v);
    }
    check_bitmaps(&sb);
    check_journals_and_areas(&sb);
    check_tree(&sb);
    printf("ok: %s uuid %s label \"%s\" %llu bytes, %u hosts, root lists lost+found, %u+%u+%u+%u bitmaps verified\n",
           argv[1], uuid, sb.label, (unsigned long long)sb.total_bytes, sb.max_hosts, sb.region[0].clusters,
           sb.region[1].clusters, sb.region[2].clusters, sb.region[3].clusters);
    close(image_fd);
    return 0;
}
