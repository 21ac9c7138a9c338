/* Measurements for bench/cluster/run.sh.
 *
 *   vdfs-clusterbench lock IMAGE HOST_UUID FILES ROUNDS
 *       mounts IMAGE through libvdfs as one host, makes FILES files, then
 *       ROUNDS times opens one of them for writing (taking its on-disk lock
 *       exclusively) and releases it; prints the median and p99 of the open
 *       and of the release in microseconds.
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
    if (argc == 4 && strcmp(argv[1], "ofd") == 0)
        return bench_ofd(argv[2], parse_count(argv[3], "ROUNDS"));
    if (argc == 4 && strcmp(argv[1], "meta") == 0)
        return bench_meta(argv[2], parse_count(argv[3], "SECONDS"));
    fprintf(stderr, "usage: vdfs-clusterbench lock IMAGE HOST_UUID FILES ROUNDS\n"
                    "       vdfs-clusterbench ofd FILE ROUNDS\n"
                    "       vdfs-clusterbench meta DIR SECONDS\n");
    return 2;
}
