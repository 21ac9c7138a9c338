/* Test helper for the fsck suite: damages one thing in a datastore image,
 * through the codecs, so that fsck.vdfs has exactly that to find.
 *
 *   corrupt IMAGE fd-csum INO              flip a byte inside descriptor INO
 *   corrupt IMAGE dir-csum INO             flip a byte inside directory INO's first block
 *   corrupt IMAGE pb-csum INO              flip a byte inside INO's first pointer block
 *   corrupt IMAGE leak                     mark an unused file block allocated
 *   corrupt IMAGE dup INO_A INO_B          point B's first file block at A's
 *   corrupt IMAGE ptr-range INO            point INO's first data slot past its region
 *   corrupt IMAGE free-fd INO              clear INO's bit in the descriptor bitmap
 *   corrupt IMAGE unlink DIR NAME          remove an entry, leaving its descriptor
 *   corrupt IMAGE rename DIR NAME NEW      rename an entry in place (NEW as long as NAME)
 *   corrupt IMAGE nlink INO N              set INO's link count
 *   corrupt IMAGE size INO BYTES           set INO's size
 *   corrupt IMAGE mode INO MODE            set INO's mode (type bits too; 0100644 is a file)
 *   corrupt IMAGE free-count DELTA         add DELTA to file-block cluster 0's free count
 *   corrupt IMAGE journal INO SEC          commit (unreplayed) a transaction setting INO's mtime
 *   corrupt IMAGE stale-host SLOT          a LIVE heartbeat of a dead host, holding root's lock
 *   corrupt IMAGE jheader SLOT             flip a byte of SLOT's journal header
 *   corrupt IMAGE super-primary            flip a byte of the primary superblock
 *   corrupt IMAGE super-backup             flip a byte of the backup superblock
 *   corrupt IMAGE mtime INO                print INO's mtime seconds
 *   corrupt IMAGE nlink-of INO             print INO's link count
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsck.h"

static struct fsck f;

static void die(const char *what, int rc)
{
    fprintf(stderr, "corrupt: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static void flip(uint64_t addr, size_t at)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    int rc = fsck_read(&f, buf, VDFS_META_SIZE, addr);
    if (rc)
        die("read", rc);
    buf[at] ^= 0x5a;
    if ((rc = fsck_write(&f, buf, VDFS_META_SIZE, addr)))
        die("write", rc);
    vdfs_aligned_free(buf);
}

static void load_fd(uint32_t ino, struct vdfs_fd *fd)
{
    int rc = fsck_fd_load(&f, ino, fd);
    if (rc)
        die("load descriptor", rc);
}

static void edit_bitmap(unsigned rtype, uint64_t index, int set, int free_delta)
{
    uint32_t per = f.sb.region[rtype].per_cluster;
    uint32_t c = (uint32_t)(index / per);
    uint64_t addr = vdfs_bitmap_addr(&f.sb, rtype, c);
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    struct vdfs_bitmap bm;
    int rc = fsck_read(&f, buf, VDFS_META_SIZE, addr);
    if (rc || (rc = vdfs_bitmap_decode(buf, addr, &bm)))
        die("bitmap", rc);
    uint32_t i = (uint32_t)(index - bm.first);
    if (set > 0 && !fsck_bit(bm.bits, i)) {
        fsck_set_bit(bm.bits, i);
        bm.free--;
    } else if (set == 0 && fsck_bit(bm.bits, i)) {
        fsck_clear_bit(bm.bits, i);
        bm.free++;
    }
    bm.free = (uint32_t)((int64_t)bm.free + free_delta);
    bm.hdr.gen++;
    vdfs_bitmap_encode(&bm, buf);
    if ((rc = fsck_write(&f, buf, VDFS_META_SIZE, addr)))
        die("write bitmap", rc);
    vdfs_aligned_free(buf);
}

static uint32_t first_slot(const struct vdfs_fd *fd)
{
    uint32_t n = fd->addr_mode == VDFS_AM_SUB ? f.sb.block_size / f.sb.subblock_size : VDFS_DIRECT_SLOTS;
    for (uint32_t s = 0; s < n; s++)
        if (fd->data.slots[s])
            return s;
    fprintf(stderr, "corrupt: ino %u has no data slot\n", fd->ino);
    exit(1);
}

static void cmd_journal(uint32_t ino, int64_t sec)
{
    const uint32_t slot = 0;
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    uint8_t *image = vdfs_aligned_alloc(VDFS_META_SIZE);
    struct vdfs_jheader jh;
    uint64_t haddr = vdfs_journal_addr(&f.sb, slot, 0);
    int rc = fsck_read(&f, buf, VDFS_META_SIZE, haddr);
    if (rc || (rc = vdfs_jheader_decode(buf, haddr, &jh)))
        die("journal header", rc);
    uint32_t at = jh.start_block < 1 ? 1 : jh.start_block;
    struct vdfs_fd fd;
    load_fd(ino, &fd);
    fd.mtime.sec = sec;
    fd.hdr.gen++;
    vdfs_fd_encode(&fd, image);
    struct vdfs_jdesc jd;
    memset(&jd, 0, sizeof(jd));
    jd.hdr = (struct vdfs_header){.kind = VDFS_KIND_JDESC, .addr = vdfs_journal_addr(&f.sb, slot, at), .gen = 1};
    jd.seq = jh.start_seq;
    jd.count = 1;
    jd.flags = VDFS_JDESC_LAST;
    jd.images_csum = vdfs_checksum(image, VDFS_META_SIZE);
    jd.addrs[0] = vdfs_fd_addr(&f.sb, ino);
    vdfs_jdesc_encode(&jd, buf);
    if ((rc = fsck_write(&f, buf, VDFS_META_SIZE, jd.hdr.addr)) ||
        (rc = fsck_write(&f, image, VDFS_META_SIZE, vdfs_journal_addr(&f.sb, slot, at + 1))))
        die("write journal", rc);
    vdfs_aligned_free(buf);
    vdfs_aligned_free(image);
}

static void cmd_stale_host(uint32_t slot)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    memset(buf, 0, VDFS_META_SIZE);
    struct vdfs_heartbeat h;
    memset(&h, 0, sizeof(h));
    h.hdr = (struct vdfs_header){.kind = VDFS_KIND_HEARTBEAT, .addr = vdfs_heartbeat_addr(&f.sb, slot), .gen = 7};
    h.state = VDFS_HB_LIVE;
    h.slot = slot;
    h.hb_gen = 3;
    h.counter = 99;
    h.stamp_ns = 1000000000ull;
    h.interval_ms = 1000;
    h.pid = 999999;
    h.replayer_slot = VDFS_NO_SLOT;
    snprintf(h.hostname, sizeof(h.hostname), "deadhost");
    vdfs_heartbeat_encode(&h, buf);
    int rc = fsck_write(&f, buf, VDFS_SECTOR_SIZE, h.hdr.addr);
    if (rc)
        die("write heartbeat", rc);
    struct vdfs_lock_rec l;
    memset(&l, 0, sizeof(l));
    uint64_t li = vdfs_fd_lock_index(&f.sb, f.sb.root_ino);
    l.hdr = (struct vdfs_header){.kind = VDFS_KIND_LOCK, .addr = vdfs_lock_addr(&f.sb, li), .gen = 4};
    l.mode = VDFS_LOCK_EXCLUSIVE;
    l.owner_slot = slot;
    l.owner_hb_gen = 3;
    l.object = ((uint64_t)VDFS_RT_FD << 56) | f.sb.root_ino;
    memset(buf, 0, VDFS_META_SIZE);
    vdfs_lock_encode(&l, buf);
    if ((rc = fsck_write(&f, buf, VDFS_SECTOR_SIZE, l.hdr.addr)))
        die("write lock", rc);
    vdfs_aligned_free(buf);
}

/* Removes entry `name` of `dir` (new_name NULL) or gives it new_name, of
 * the same length, without looking at what else the directory holds. */
static void edit_entry(uint32_t dir, const char *name, const char *new_name)
{
    struct vdfs_fd fd;
    load_fd(dir, &fd);
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    struct vdfs_dirblock d;
    for (uint32_t k = 0; k < fd.size / VDFS_META_SIZE; k++) {
        uint64_t addr;
        if (fsck_map_lookup(&f, &fd, (uint64_t)k * VDFS_META_SIZE, &addr) || fsck_read(&f, buf, VDFS_META_SIZE, addr) ||
            vdfs_dirblock_decode(buf, addr, &d))
            continue;
        uint16_t pos = 0;
        struct vdfs_dirent e;
        while (vdfs_dirent_next(&d, &pos, &e)) {
            if (e.name_len == strlen(name) && !memcmp(e.name, name, e.name_len)) {
                if (new_name)
                    memcpy(d.entries + (e.name - d.entries), new_name, e.name_len);
                else
                    vdfs_dirent_remove(&d, &e);
                int rc = fsck_dirblock_store(&f, addr, &d);
                if (rc)
                    die("write directory block", rc);
                vdfs_aligned_free(buf);
                return;
            }
        }
    }
    fprintf(stderr, "corrupt: no entry '%s' in directory %u\n", name, dir);
    exit(1);
}

static uint32_t num(const char *s)
{
    return (uint32_t)strtoul(s, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: corrupt IMAGE COMMAND [ARGS] (see the source)\n");
        return 2;
    }
    const char *cmd = argv[2];
    bool readonly = !strcmp(cmd, "mtime") || !strcmp(cmd, "nlink-of");
    f.path = argv[1];
    f.opt.fix = !readonly;
    int rc = vdfs_dev_open(argv[1], readonly ? VDFS_DEV_RDONLY : 0, &f.dev);
    if (rc)
        die("open", rc);
    f.dev_size = vdfs_dev_size(f.dev);
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if ((rc = fsck_read(&f, buf, VDFS_META_SIZE, 0)) || (rc = vdfs_super_decode(buf, 0, &f.sb)))
        die("superblock", rc);
    vdfs_aligned_free(buf);
    for (unsigned r = 0; r < VDFS_RT_COUNT; r++)
        f.rs[r].count = f.sb.region[r].count;

    struct vdfs_fd fd, fd2;
    if (!strcmp(cmd, "fd-csum") && argc == 4) {
        flip(vdfs_fd_addr(&f.sb, num(argv[3])), 200);
    } else if (!strcmp(cmd, "dir-csum") && argc == 4) {
        load_fd(num(argv[3]), &fd);
        uint64_t addr;
        if (fsck_map_lookup(&f, &fd, 0, &addr))
            die("directory has no block 0", EINVAL);
        flip(addr, 100);
    } else if (!strcmp(cmd, "pb-csum") && argc == 4) {
        load_fd(num(argv[3]), &fd);
        uint32_t s = VDFS_DIRECT_SLOTS;
        while (s < VDFS_SLOTS && !fd.data.slots[s])
            s++;
        if (s == VDFS_SLOTS || fd.addr_mode != VDFS_AM_BLOCK)
            die("no pointer block", EINVAL);
        flip(vdfs_resource_addr(&f.sb, VDFS_RT_PB, vdfs_ptr_index(fd.data.slots[s])), 300);
    } else if (!strcmp(cmd, "leak") && argc == 3) {
        /* The last file block is the one a small image never uses. */
        edit_bitmap(VDFS_RT_FB, f.sb.region[VDFS_RT_FB].count - 1, 1, 0);
    } else if (!strcmp(cmd, "dup") && argc == 5) {
        load_fd(num(argv[3]), &fd);
        load_fd(num(argv[4]), &fd2);
        if (fd.addr_mode != VDFS_AM_BLOCK || fd2.addr_mode != VDFS_AM_BLOCK)
            die("dup needs two block-mapped files", EINVAL);
        fd2.data.slots[first_slot(&fd2)] = fd.data.slots[first_slot(&fd)];
        if ((rc = fsck_fd_store(&f, &fd2)))
            die("write descriptor", rc);
    } else if (!strcmp(cmd, "ptr-range") && argc == 4) {
        load_fd(num(argv[3]), &fd);
        unsigned rt = fd.addr_mode == VDFS_AM_SUB ? VDFS_RT_SB : VDFS_RT_FB;
        fd.data.slots[first_slot(&fd)] = vdfs_ptr_make(f.sb.region[rt].count + 10, false);
        if ((rc = fsck_fd_store(&f, &fd)))
            die("write descriptor", rc);
    } else if (!strcmp(cmd, "free-fd") && argc == 4) {
        edit_bitmap(VDFS_RT_FD, num(argv[3]), 0, 0);
    } else if (!strcmp(cmd, "unlink") && argc == 5) {
        edit_entry(num(argv[3]), argv[4], NULL);
    } else if (!strcmp(cmd, "rename") && argc == 6 && strlen(argv[4]) == strlen(argv[5])) {
        edit_entry(num(argv[3]), argv[4], argv[5]);
    } else if (!strcmp(cmd, "nlink") && argc == 5) {
        load_fd(num(argv[3]), &fd);
        fd.nlink = num(argv[4]);
        if ((rc = fsck_fd_store(&f, &fd)))
            die("write descriptor", rc);
    } else if (!strcmp(cmd, "size") && argc == 5) {
        load_fd(num(argv[3]), &fd);
        fd.size = strtoull(argv[4], NULL, 0);
        if ((rc = fsck_fd_store(&f, &fd)))
            die("write descriptor", rc);
    } else if (!strcmp(cmd, "mode") && argc == 5) {
        load_fd(num(argv[3]), &fd);
        fd.mode = num(argv[4]);
        if ((rc = fsck_fd_store(&f, &fd)))
            die("write descriptor", rc);
    } else if (!strcmp(cmd, "free-count") && argc == 4) {
        edit_bitmap(VDFS_RT_FB, 0, -1, atoi(argv[3]));
    } else if (!strcmp(cmd, "journal") && argc == 5) {
        cmd_journal(num(argv[3]), strtoll(argv[4], NULL, 0));
    } else if (!strcmp(cmd, "stale-host") && argc == 4) {
        cmd_stale_host(num(argv[3]));
    } else if (!strcmp(cmd, "super-primary") && argc == 3) {
        flip(0, 500);
    } else if (!strcmp(cmd, "jheader") && argc == 4) {
        flip(vdfs_journal_addr(&f.sb, num(argv[3]), 0), 100);
    } else if (!strcmp(cmd, "super-backup") && argc == 3) {
        flip(f.sb.backup_offset, 500);
    } else if (!strcmp(cmd, "mtime") && argc == 4) {
        load_fd(num(argv[3]), &fd);
        printf("%lld\n", (long long)fd.mtime.sec);
    } else if (!strcmp(cmd, "nlink-of") && argc == 4) {
        load_fd(num(argv[3]), &fd);
        printf("%u\n", fd.nlink);
    } else {
        fprintf(stderr, "corrupt: unknown command or wrong arguments: %s\n", cmd);
        return 2;
    }
    if (f.opt.fix && (rc = vdfs_dev_flush(f.dev)))
        die("flush", rc);
    vdfs_dev_close(f.dev);
    return 0;
}
