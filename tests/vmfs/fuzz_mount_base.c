/* Builds the base images of fuzz_mount (see fuzz_mount.c).  Not part of CI.
 *
 *   fuzz_mount_base IMAGE [LIVE-COPY]
 *
 * IMAGE must be fresh from mkfs.vdfs (fuzz_mount.c names the options).  It
 * is mounted and filled with every kind of object the library reads: a
 * resident file, sub-block and multi-block files, single- and
 * double-indirect sparse files, a to-be-zeroed (fallocated) file, a
 * punched file, directories big enough for several directory blocks,
 * hard links, short and long symlinks, special files and xattrs.  With
 * LIVE-COPY, more transactions are committed afterwards and the image is
 * copied while still mounted: the copy has a live-looking heartbeat slot,
 * a held metadata lock and a journal to replay, as after a host crash.
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "format.h"
#include "vdfs.h"

static const struct vdfs_cred root_cred = {0, 0};

static void die(const char *what, int rc)
{
    fprintf(stderr, "fuzz_mount_base: %s: %s\n", what, vdfs_strerror(rc));
    exit(1);
}

static uint32_t make(struct vdfs *fs, uint32_t dir, const char *name, uint32_t mode, uint32_t rdev)
{
    struct vdfs_stat st;
    int rc = vdfs_create(fs, dir, name, mode, rdev, &root_cred, &st);
    if (rc < 0)
        die(name, rc);
    return st.ino;
}

static void put(struct vdfs *fs, uint32_t ino, uint64_t off, size_t len, unsigned seed)
{
    uint8_t *buf = malloc(len);
    if (!buf)
        die("malloc", -ENOMEM);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((off + i) * 131u + seed);
    ssize_t w = vdfs_pwrite(fs, ino, buf, len, off);
    if (w != (ssize_t)len)
        die("write", w < 0 ? (int)w : -EIO);
    free(buf);
}

static void file(struct vdfs *fs, uint32_t dir, const char *name, uint64_t off, size_t len, unsigned seed)
{
    uint32_t ino = make(fs, dir, name, S_IFREG | 0644, 0);
    put(fs, ino, off, len, seed);
}

static void xattr(struct vdfs *fs, uint32_t ino, const char *name, size_t len)
{
    char value[512];
    memset(value, 'x', sizeof(value));
    int rc = vdfs_setxattr(fs, ino, name, value, len, 0);
    if (rc < 0)
        die(name, rc);
}

static void populate(struct vdfs *fs)
{
    uint32_t root = vdfs_root_ino(fs);
    struct vdfs_stat st;
    file(fs, root, "resident.txt", 0, 100, 1);
    file(fs, root, "subblock.bin", 0, 20000, 2);
    file(fs, root, "blocks.bin", 0, 300000, 3);
    /* With 64 KiB blocks: past 256 direct blocks (single indirect), and
     * past 256 + 64 * 1008 (double indirect). */
    file(fs, root, "single.bin", 40u << 20, 70000, 4);
    file(fs, root, "double.bin", 5ull << 30, 5000, 5);
    uint32_t thick = make(fs, root, "thick.bin", S_IFREG | 0600, 0);
    int rc = vdfs_fallocate(fs, thick, 0, 0, 256u << 10);
    if (rc < 0)
        die("fallocate", rc);
    put(fs, thick, 70000, 1000, 6);
    uint32_t holed = make(fs, root, "holed.bin", S_IFREG | 0600, 0);
    put(fs, holed, 0, 400000, 7);
    rc = vdfs_fallocate(fs, holed, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 131072);
    if (rc < 0)
        die("punch", rc);
    xattr(fs, holed, "user.small", 10);
    xattr(fs, holed, "user.big", 400);
    xattr(fs, holed, "trusted.third", 1);

    uint32_t d1 = make(fs, root, "dir1", S_IFDIR | 0755, 0);
    uint32_t a = make(fs, d1, "a.txt", S_IFREG | 0644, 0);
    put(fs, a, 0, 5000, 8);
    xattr(fs, d1, "user.dir", 30);
    uint32_t sub = make(fs, d1, "sub", S_IFDIR | 0700, 0);
    uint32_t deep = make(fs, sub, "deeper", S_IFDIR | 0700, 0);
    file(fs, deep, "deep.bin", 0, 70000, 9);
    if ((rc = vdfs_link(fs, a, sub, "link-to-a", &st)) < 0)
        die("link", rc);
    if ((rc = vdfs_link(fs, a, root, "root-link", &st)) < 0)
        die("link", rc);
    if ((rc = vdfs_symlink(fs, root, "sym", "dir1/a.txt", &root_cred, &st)) < 0)
        die("symlink", rc);
    char target[1024];
    memset(target, 'y', sizeof(target) - 1);
    target[sizeof(target) - 1] = '\0';
    if ((rc = vdfs_symlink(fs, sub, "long-sym", target, &root_cred, &st)) < 0)
        die("symlink", rc);
    if ((rc = vdfs_symlink(fs, sub, "up", "../../sym", &root_cred, &st)) < 0)
        die("symlink", rc);
    make(fs, root, "fifo", S_IFIFO | 0644, 0);
    make(fs, root, "null", S_IFCHR | 0666, makedev(1, 3));

    /* Enough names for several directory blocks and their index. */
    uint32_t many = make(fs, root, "many", S_IFDIR | 0755, 0);
    for (int i = 0; i < 200; i++) {
        char name[64];
        snprintf(name, sizeof(name), "entry-with-a-longish-name-%03d", i);
        uint32_t ino = make(fs, many, name, (i % 7 ? S_IFREG : S_IFDIR) | 0644, 0);
        if (i % 50 == 1)
            put(fs, ino, 0, 3000, (unsigned)i);
    }
    for (int i = 0; i < 200; i += 3) {
        char name[64];
        snprintf(name, sizeof(name), "entry-with-a-longish-name-%03d", i);
        if (i % 7)
            rc = vdfs_unlink(fs, many, name);
        else
            rc = vdfs_rmdir(fs, many, name);
        if (rc < 0)
            die(name, rc);
    }
    if ((rc = vdfs_rename(fs, many, "entry-with-a-longish-name-001", d1, "renamed", 0)) < 0)
        die("rename", rc);
}

/* Transactions left in the journal of the copy. */
static void more(struct vdfs *fs)
{
    uint32_t root = vdfs_root_ino(fs);
    struct vdfs_stat st;
    int rc = vdfs_lookup(fs, root, "dir1", &st);
    if (rc < 0)
        die("lookup", rc);
    uint32_t late = make(fs, st.ino, "late.bin", S_IFREG | 0644, 0);
    put(fs, late, 0, 150000, 10);
    xattr(fs, late, "user.late", 50);
    if ((rc = vdfs_sync(fs)) < 0)
        die("sync", rc);
    if ((rc = vdfs_rename(fs, root, "resident.txt", st.ino, "resident-moved.txt", 0)) < 0)
        die("rename", rc);
    if ((rc = vdfs_unlink(fs, root, "root-link")) < 0)
        die("unlink", rc);
    make(fs, root, "late-dir", S_IFDIR | 0755, 0);
    if ((rc = vdfs_sync(fs)) < 0)
        die("sync", rc);
}

static void copy(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0)
        die(to, -errno);
    struct stat st;
    if (fstat(in, &st) < 0 || ftruncate(out, st.st_size) < 0)
        die(to, -errno);
    static uint8_t buf[1 << 16], zero[1 << 16];
    for (off_t off = 0; off < st.st_size;) {
        ssize_t n = pread(in, buf, sizeof(buf), off);
        if (n <= 0)
            die(from, n < 0 ? -errno : -EIO);
        if (memcmp(buf, zero, (size_t)n) && pwrite(out, buf, (size_t)n, off) != n)
            die(to, -errno);
        off += n;
    }
    if (close(out) < 0)
        die(to, -errno);
    close(in);
}

/* The copy's live slot claims 20 ms renewals and a 90 ms timeout, so that
 * a fuzzed mount of it declares this host dead at once, and fsck waits as
 * little to see that the slot does not move.  The base itself runs with
 * the default timing: a 90 ms lease of its own would fence it whenever
 * the machine stalls (CI builds these images beside other tests). */
static void advertise_short_heartbeat(const char *path)
{
    static uint8_t super[VDFS_META_SIZE], sector[VDFS_SECTOR_SIZE];
    int fd = open(path, O_RDWR);
    struct vdfs_super sb;
    if (fd < 0 || pread(fd, super, sizeof(super), 0) != (ssize_t)sizeof(super))
        die(path, -errno);
    if (vdfs_super_decode(super, 0, &sb) != 0)
        die("copy's superblock", -EIO);
    unsigned changed = 0;
    for (uint32_t slot = 0; slot < sb.max_hosts; slot++) {
        uint64_t at = vdfs_heartbeat_addr(&sb, slot);
        struct vdfs_heartbeat hb;
        if (pread(fd, sector, sizeof(sector), (off_t)at) != (ssize_t)sizeof(sector))
            die(path, -EIO);
        if (vdfs_heartbeat_decode(sector, at, &hb) != 0 || hb.state != VDFS_HB_LIVE ||
            strcmp(hb.hostname, "fuzz-base") != 0)
            continue;
        hb.interval_ms = 20;
        hb.timeout_ms = 90;
        vdfs_heartbeat_encode(&hb, sector);
        if (pwrite(fd, sector, sizeof(sector), (off_t)at) != (ssize_t)sizeof(sector))
            die(path, -errno);
        changed++;
    }
    if (changed != 1)
        die("copy's live heartbeat slot", -ENOENT);
    if (close(fd) < 0)
        die(path, -errno);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: fuzz_mount_base IMAGE [LIVE-COPY]\n");
        return 2;
    }
    struct vdfs_mount_opts opts = {
        .no_direct = true,
        .host_uuid = "f0220000-0000-4000-8000-000000000001",
        .host_name = "fuzz-base",
        .commit_ms = 60000,
    };
    struct vdfs *fs;
    int rc = vdfs_mount(argv[1], &opts, &fs);
    if (rc < 0)
        die(argv[1], rc);
    populate(fs);
    if (argc == 3) {
        if ((rc = vdfs_sync(fs)) < 0)
            die("sync", rc);
        more(fs);
        copy(argv[1], argv[2]);
        advertise_short_heartbeat(argv[2]);
    }
    if ((rc = vdfs_unmount(fs)) < 0)
        die("unmount", rc);
    return 0;
}
