/* Measurements for bench/cluster/run.sh.
 *
 *   vdfs-clusterbench lock IMAGE HOST_UUID FILES ROUNDS
 *       mounts IMAGE through libvdfs as one host, makes FILES files, then
 *       ROUNDS times opens one of them for writing (taking its on-disk lock
 *       exclusively) and releases it; prints the median and p99 of the open
 *       and of the release in microseconds.
 *       A host alone keeps file-lock records in memory and writes them
 *       back 10 ms later, so this is what an application sees.
 *   vdfs-clusterbench caw IMAGE ROUNDS
 *       the on-disk step under it: ROUNDS times takes an unused file lock
 *       record EXCLUSIVE and frees it again, each a read and a
 *       compare-and-write of its sector with O_DIRECT (what every open and
 *       close cost before the records were kept in memory, and what a
 *       write-back costs now); prints median and p99 of take and free.
 *       Run it on an image no host has mounted.
 *   vdfs-clusterbench ofd FILE ROUNDS
 *       the same statistics for an OFD write lock + unlock on a local file:
 *       the single-machine lock the peer side of the comparison uses.
 *   vdfs-clusterbench meta DIR SECONDS
 *       create + stat + unlink of files in DIR for SECONDS; prints the
 *       operations (3 per file) per second.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "format.h"
#include "vdfs.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_stats(const char *what, double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    size_t p99 = n * 99 / 100;
    printf("%s median_us %.1f p99_us %.1f n %zu\n", what, v[n / 2], v[p99 < n ? p99 : n - 1], n);
}

static long parse_count(const char *text, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v <= 0) {
        fprintf(stderr, "vdfs-clusterbench: %s must be a positive number, not '%s'\n", what, text);
        exit(2);
    }
    return v;
}

static int bench_lock(const char *image, const char *uuid, long files, long rounds)
{
    struct vdfs_mount_opts opts = {.host_uuid = uuid};
    struct vdfs *fs;
    int rc = vdfs_mount(image, &opts, &fs);
    if (rc) {
        fprintf(stderr, "vdfs-clusterbench: mount %s: %s\n", image, vdfs_strerror(rc));
        return 1;
    }
    struct vdfs_cred cred = {0, 0};
    struct vdfs_stat st;
    uint32_t dir = vdfs_root_ino(fs);
    char dname[32];
    snprintf(dname, sizeof(dname), "lockbench.%d", (int)getpid());
    rc = vdfs_create(fs, dir, dname, S_IFDIR | 0755, 0, &cred, &st);
    if (rc == 0)
        dir = st.ino;
    uint32_t *ino = calloc((size_t)files, sizeof(*ino));
    double *open_us = calloc((size_t)rounds, sizeof(double));
    double *release_us = calloc((size_t)rounds, sizeof(double));
    if (!ino || !open_us || !release_us) {
        rc = -ENOMEM;
        goto out;
    }
    for (long i = 0; i < files && rc == 0; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%ld", i);
        rc = vdfs_create(fs, dir, name, S_IFREG | 0644, 0, &cred, &st);
        ino[i] = st.ino;
    }
    if (rc == 0)
        rc = vdfs_sync(fs);
    for (long r = 0; r < rounds && rc == 0; r++) {
        uint32_t f = ino[r % files];
        double t0 = now_us();
        rc = vdfs_open(fs, f, O_RDWR);
        double t1 = now_us();
        if (rc)
            break;
        rc = vdfs_release(fs, f, O_RDWR);
        double t2 = now_us();
        open_us[r] = t1 - t0;
        release_us[r] = t2 - t1;
    }
    if (rc == 0) {
        print_stats("open_rdwr", open_us, (size_t)rounds);
        print_stats("release", release_us, (size_t)rounds);
    }
out:
    if (rc)
        fprintf(stderr, "vdfs-clusterbench: lock: %s\n", vdfs_strerror(rc));
    free(ino);
    free(open_us);
    free(release_us);
    int urc = vdfs_unmount(fs);
    return rc || urc ? 1 : 0;
}

/* Reads lock record `addr`, sets its mode, and compare-and-writes it. */
static int caw_lock_step(struct vdfs_dev *dev, uint64_t addr, uint32_t mode, uint8_t *raw, uint8_t *next)
{
    struct vdfs_lock_rec l;
    int rc = vdfs_dev_read_atomic(dev, raw, VDFS_SECTOR_SIZE, addr);
    if (rc == 0)
        rc = vdfs_lock_decode(raw, addr, &l);
    if (rc)
        return rc;
    l.hdr.kind = VDFS_KIND_LOCK;
    l.hdr.addr = addr;
    l.hdr.gen++;
    l.mode = mode;
    l.owner_slot = mode == VDFS_LOCK_FREE ? VDFS_NO_SLOT : 0;
    l.owner_hb_gen = mode == VDFS_LOCK_FREE ? 0 : 1;
    vdfs_lock_encode(&l, next);
    return vdfs_dev_compare_and_write_flags(dev, addr, VDFS_SECTOR_SIZE, raw, next, NULL, VDFS_CAW_NO_FLUSH);
}

static int bench_caw(const char *image, long rounds)
{
    struct vdfs_dev *dev;
    int rc = vdfs_dev_open(image, VDFS_DEV_DIRECT, &dev);
    if (rc) {
        fprintf(stderr, "vdfs-clusterbench: %s: %s\n", image, vdfs_strerror(rc));
        return 1;
    }
    uint8_t *raw = vdfs_aligned_alloc(VDFS_META_SIZE), *next = vdfs_aligned_alloc(VDFS_META_SIZE);
    double *take_us = calloc((size_t)rounds, sizeof(double));
    double *free_us = calloc((size_t)rounds, sizeof(double));
    struct vdfs_super sb;
    rc = !raw || !next || !take_us || !free_us ? -ENOMEM : vdfs_dev_read(dev, raw, VDFS_META_SIZE, VDFS_SUPER_OFFSET);
    if (rc == 0)
        rc = vdfs_super_decode(raw, VDFS_SUPER_OFFSET, &sb);
    /* The last descriptor's record: a fresh image never gives it out. */
    uint64_t addr = rc ? 0 : vdfs_lock_addr(&sb, vdfs_fd_lock_index(&sb, (uint32_t)sb.region[VDFS_RT_FD].count - 1));
    for (long r = 0; r < rounds && rc == 0; r++) {
        double t0 = now_us();
        rc = caw_lock_step(dev, addr, VDFS_LOCK_EXCLUSIVE, raw, next);
        double t1 = now_us();
        if (rc == 0)
            rc = caw_lock_step(dev, addr, VDFS_LOCK_FREE, raw, next);
        take_us[r] = t1 - t0;
        free_us[r] = now_us() - t1;
    }
    if (rc == 0) {
        print_stats("caw_take", take_us, (size_t)rounds);
        print_stats("caw_free", free_us, (size_t)rounds);
    } else {
        fprintf(stderr, "vdfs-clusterbench: caw: %s\n", vdfs_strerror(rc));
    }
    vdfs_aligned_free(raw);
    vdfs_aligned_free(next);
    free(take_us);
    free(free_us);
    vdfs_dev_close(dev);
    return rc ? 1 : 0;
}

static int bench_ofd(const char *path, long rounds)
{
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    double *lock_us = calloc((size_t)rounds, sizeof(double));
    double *unlock_us = calloc((size_t)rounds, sizeof(double));
    if (fd < 0 || !lock_us || !unlock_us) {
        fprintf(stderr, "vdfs-clusterbench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (long r = 0; r < rounds; r++) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = r % 64, .l_len = 1};
        double t0 = now_us();
        if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
            return perror("F_OFD_SETLK"), 1;
        double t1 = now_us();
        fl.l_type = F_UNLCK;
        if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
            return perror("F_OFD_SETLK unlock"), 1;
        double t2 = now_us();
        lock_us[r] = t1 - t0;
        unlock_us[r] = t2 - t1;
    }
    print_stats("ofd_lock", lock_us, (size_t)rounds);
    print_stats("ofd_unlock", unlock_us, (size_t)rounds);
    close(fd);
    free(lock_us);
    free(unlock_us);
    return 0;
}

static int bench_meta(const char *dir, long seconds)
{
    char path[4096];
    struct stat st;
    double end = now_us() + (double)seconds * 1e6, start = now_us();
    long n = 0;
    while (now_us() < end) {
        snprintf(path, sizeof(path), "%s/m%ld", dir, n);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0 || close(fd) < 0 || stat(path, &st) < 0 || unlink(path) < 0) {
            fprintf(stderr, "vdfs-clusterbench: %s: %s\n", path, strerror(errno));
            return 1;
        }
        n++;
    }
    printf("meta_ops_per_s %.0f files %ld\n", (double)n * 3 / ((now_us() - start) / 1e6), n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "lock") == 0)
        return bench_lock(argv[2], argv[3], parse_count(argv[4], "FILES"), parse_count(argv[5], "ROUNDS"));
    if (argc == 4 && strcmp(argv[1], "caw") == 0)
        return bench_caw(argv[2], parse_count(argv[3], "ROUNDS"));
    if (argc == 4 && strcmp(argv[1], "ofd") == 0)
        return bench_ofd(argv[2], parse_count(argv[3], "ROUNDS"));
    if (argc == 4 && strcmp(argv[1], "meta") == 0)
        return bench_meta(argv[2], parse_count(argv[3], "SECONDS"));
    fprintf(stderr, "usage: vdfs-clusterbench lock IMAGE HOST_UUID FILES ROUNDS\n"
                    "       vdfs-clusterbench caw IMAGE ROUNDS\n"
                    "       vdfs-clusterbench ofd FILE ROUNDS\n"
                    "       vdfs-clusterbench meta DIR SECONDS\n");
    return 2;
}
