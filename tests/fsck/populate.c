/* Test helper for the fsck suite, built on the public libvdfs API so the
 * images it makes are written by the real library.
 *
 *   populate create IMAGE   make a small tree of files, directories, a hard
 *                           link and a symlink; print "ino type path" lines
 *   populate digest IMAGE   print "path size sha256" for every regular file
 *                           reachable from the root, in walk order
 *   populate hold IMAGE     mount, print "mounted", stay mounted until stdin closes
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vdfs.h"

static void fill(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        uint64_t x = off + i;
        buf[i] = (uint8_t)(x * 31u + seed * 7u + (x >> 12));
    }
}

static int write_pattern(struct vdfs *fs, uint32_t ino, uint64_t off, uint64_t len, unsigned seed)
{
    const size_t chunk = 1u << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t done = 0; done < len && rc == 0; done += chunk) {
        size_t n = len - done < chunk ? (size_t)(len - done) : chunk;
        fill(buf, n, off + done, seed);
        ssize_t w = vdfs_pwrite(fs, ino, buf, n, off + done);
        if (w != (ssize_t)n)
            rc = w < 0 ? (int)w : -EIO;
    }
    free(buf);
    return rc;
}

static const struct vdfs_cred root_cred = {0, 0};

static int mk(struct vdfs *fs, uint32_t dir, const char *name, uint32_t mode, const char *path, uint32_t *ino)
{
    struct vdfs_stat st;
    int rc = vdfs_create(fs, dir, name, mode, 0, &root_cred, &st);
    if (rc < 0) {
        fprintf(stderr, "populate: create %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    *ino = st.ino;
    printf("%u %s %s\n", st.ino, S_ISDIR(mode) ? "dir" : "file", path);
    return 0;
}

static int file(struct vdfs *fs, uint32_t dir, const char *name, const char *path, uint64_t off, uint64_t len,
                unsigned seed)
{
    uint32_t ino;
    int rc = mk(fs, dir, name, S_IFREG | 0644, path, &ino);
    if (rc == 0)
        rc = write_pattern(fs, ino, off, len, seed);
    if (rc < 0)
        fprintf(stderr, "populate: write %s: %s\n", path, vdfs_strerror(rc));
    return rc;
}

static int create(struct vdfs *fs)
{
    uint32_t root = vdfs_root_ino(fs), d1, sub, d2, a;
    struct vdfs_stat st;
    int rc = 0;
    rc = rc ?: file(fs, root, "small.txt", "/small.txt", 0, 100, 1);
    rc = rc ?: file(fs, root, "medium.bin", "/medium.bin", 0, 200000, 2);
    rc = rc ?: file(fs, root, "big.bin", "/big.bin", 0, (3u << 20) + 5, 3);
    /* Past 256 file blocks: needs a single-indirect pointer block. */
    rc = rc ?: file(fs, root, "sparse.bin", "/sparse.bin", 300u << 20, 65536, 4);
    rc = rc ?: mk(fs, root, "dir1", S_IFDIR | 0755, "/dir1", &d1);
    rc = rc ?: mk(fs, d1, "a.txt", S_IFREG | 0644, "/dir1/a.txt", &a);
    rc = rc ?: write_pattern(fs, a, 0, 5000, 5);
    rc = rc ?: mk(fs, d1, "sub", S_IFDIR | 0755, "/dir1/sub", &sub);
    rc = rc ?: file(fs, sub, "deep.bin", "/dir1/sub/deep.bin", 0, 1536u << 10, 6);
    rc = rc ?: mk(fs, root, "dir2", S_IFDIR | 0755, "/dir2", &d2);
    rc = rc ?: file(fs, d2, "b.bin", "/dir2/b.bin", 0, 2u << 20, 7);
    if (rc == 0 && (rc = vdfs_link(fs, a, d2, "link-to-a", &st)) == 0)
        printf("%u file /dir2/link-to-a\n", st.ino);
    if (rc == 0 && (rc = vdfs_symlink(fs, root, "sym", "dir1/a.txt", &root_cred, &st)) == 0)
        printf("%u symlink /sym\n", st.ino);
    return rc;
}

static int digest_file(struct vdfs *fs, uint32_t ino, uint64_t size, char hex[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    const size_t chunk = 1u << 20;
    uint8_t *buf = malloc(chunk);
    int rc = (!md || !buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) ? -ENOMEM : 0;
    for (uint64_t off = 0; off < size && rc == 0; off += chunk) {
        size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
        ssize_t r = vdfs_pread(fs, ino, buf, n, off);
        if (r != (ssize_t)n)
            rc = r < 0 ? (int)r : -EIO;
        else
            EVP_DigestUpdate(md, buf, n);
    }
    unsigned char out[32];
    unsigned len = 0;
    if (rc == 0 && EVP_DigestFinal_ex(md, out, &len))
        for (unsigned i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", out[i]);
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

struct walk_item {
    uint32_t ino;
    char path[1024];
};

struct collect {
    struct walk_item *items;
    size_t n, cap;
    const char *base;
};

static int collect_entry(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next)
{
    struct collect *c = ctx;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->items = realloc(c->items, c->cap * sizeof(*c->items));
        if (!c->items)
            return -ENOMEM;
    }
    c->items[c->n].ino = ino;
    snprintf(c->items[c->n].path, sizeof(c->items[c->n].path), "%s/%s", c->base, name);
    c->n++;
    return 0;
}

static int digest_tree(struct vdfs *fs)
{
    struct collect c = {0};
    c.cap = 64;
    c.items = malloc(c.cap * sizeof(*c.items));
    if (!c.items)
        return -ENOMEM;
    c.items[0].ino = vdfs_root_ino(fs);
    c.items[0].path[0] = '\0';
    c.n = 1;
    int rc = 0;
    for (size_t i = 0; i < c.n && rc == 0; i++) {
        struct vdfs_stat st;
        uint32_t ino = c.items[i].ino;
        char path[1024];
        snprintf(path, sizeof(path), "%s", c.items[i].path);
        rc = vdfs_getattr(fs, ino, &st);
        if (rc < 0) {
            printf("%s unreadable %s\n", path, vdfs_strerror(rc));
            rc = 0;
            continue;
        }
        if (S_ISDIR(st.mode)) {
            c.base = path;
            rc = vdfs_readdir(fs, ino, 0, collect_entry, &c);
            if (rc < 0) {
                printf("%s/ unreadable %s\n", path, vdfs_strerror(rc));
                rc = 0;
            }
        } else if (S_ISREG(st.mode)) {
            char hex[65] = {0};
            rc = digest_file(fs, ino, st.size, hex);
            if (rc < 0) {
                printf("%s unreadable %s\n", path, vdfs_strerror(rc));
                rc = 0;
            } else {
                printf("%s %llu %s\n", path, (unsigned long long)st.size, hex);
            }
        }
    }
    free(c.items);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "create") && strcmp(argv[1], "digest") && strcmp(argv[1], "hold"))) {
        fprintf(stderr, "usage: populate create|digest|hold IMAGE\n");
        return 2;
    }
    bool creating = !strcmp(argv[1], "create"), holding = !strcmp(argv[1], "hold");
    struct vdfs_mount_opts opts = {.readonly = !creating && !holding, .no_direct = true};
    struct vdfs *fs;
    int rc = vdfs_mount(argv[2], &opts, &fs);
    if (rc < 0) {
        fprintf(stderr, "populate: mount %s: %s\n", argv[2], vdfs_strerror(rc));
        return 1;
    }
    if (holding) {
        printf("mounted\n");
        fflush(stdout);
        while (getchar() != EOF)
            ;
    } else {
        rc = creating ? create(fs) : digest_tree(fs);
    }
    int urc = vdfs_unmount(fs);
    if (rc == 0 && urc < 0) {
        fprintf(stderr, "populate: unmount: %s\n", vdfs_strerror(urc));
        rc = urc;
    }
    return rc < 0 ? 1 : 0;
}
