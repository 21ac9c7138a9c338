/* vdfsctl digest: a file's SHA-256 where holes count as zeros but are
 * never read, so a thin disk digests at the speed of its allocated data. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl.h"
#include "device.h"

#define DIGEST_CHUNK (8u << 20)

struct digest_walk {
    struct vdfs *fs;
    uint32_t ino;
    uint64_t size;
    EVP_MD_CTX *md;
    uint8_t *buf;
    const uint8_t *zeros;
    int rc;
};

static int feed_zeros(struct digest_walk *w, uint64_t len)
{
    while (len) {
        size_t n = len < DIGEST_CHUNK ? (size_t)len : DIGEST_CHUNK;
        if (EVP_DigestUpdate(w->md, w->zeros, n) != 1)
            return -EIO;
        len -= n;
    }
    return 0;
}

struct extent_list {
    struct vdfs_extent *v;
    size_t n, cap;
};

/* The map callback runs under the volume lock, so extents are collected
 * first and read afterwards. */
static int collect_extent(void *ctx, const struct vdfs_extent *e)
{
    struct extent_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct vdfs_extent *more = realloc(l->v, cap * sizeof(*more));
        if (!more)
            return -ENOMEM;
        l->v = more;
        l->cap = cap;
    }
    l->v[l->n++] = *e;
    return 0;
}

static int digest_extent(struct digest_walk *w, const struct vdfs_extent *e)
{
    uint64_t end = e->logical + e->length;
    if (end > w->size)
        end = w->size;
    if (e->logical >= end)
        return 0;
    if (e->hole || e->unwritten)
        return feed_zeros(w, end - e->logical);
    for (uint64_t off = e->logical; off < end;) {
        size_t n = end - off < DIGEST_CHUNK ? (size_t)(end - off) : DIGEST_CHUNK;
        ssize_t got = vdfs_pread(w->fs, w->ino, w->buf, n, off);
        if (got <= 0)
            return got ? (int)got : -EIO;
        if (EVP_DigestUpdate(w->md, w->buf, (size_t)got) != 1)
            return -EIO;
        off += (uint64_t)got;
    }
    return 0;
}

int ctl_digest(struct vdfs *fs, const struct ctl *c, const char *path)
{
    struct vdfs_stat st;
    int rc = vdfs_resolve(fs, path, true, &st);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    if (!S_ISREG(st.mode)) {
        fprintf(stderr, "vdfsctl: %s is not a regular file\n", path);
        return -EINVAL;
    }
    struct digest_walk w = {.fs = fs, .ino = st.ino, .size = st.size};
    w.md = EVP_MD_CTX_new();
    w.buf = vdfs_aligned_alloc(DIGEST_CHUNK);
    uint8_t *zeros = calloc(1, DIGEST_CHUNK);
    w.zeros = zeros;
    if (!w.md || !w.buf || !zeros || EVP_DigestInit_ex(w.md, EVP_sha256(), NULL) != 1) {
        rc = -ENOMEM;
        goto out;
    }
    /* The map reports allocated ranges and holes up to the size; what it
     * reports beyond (fallocate KEEP_SIZE) is clipped in digest_extent. */
    struct extent_list extents = {0};
    rc = vdfs_map(fs, st.ino, collect_extent, &extents);
    for (size_t i = 0; rc == 0 && i < extents.n; i++)
        rc = digest_extent(&w, &extents.v[i]);
    free(extents.v);
    if (rc == 0) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(w.md, md, &mdlen) != 1) {
            rc = -EIO;
            goto out;
        }
        for (unsigned i = 0; i < mdlen; i++)
            printf("%02x", md[i]);
        if (c->json)
            printf("\n");
        else
            printf("  %s\n", path);
    } else {
        fprintf(stderr, "vdfsctl: digest of %s: %s\n", path, vdfs_strerror(rc));
    }
out:
    EVP_MD_CTX_free(w.md);
    vdfs_aligned_free(w.buf);
    free(zeros);
    return rc;
}
