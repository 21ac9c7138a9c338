/* crash-workload: the scripted workload whose device writes the crash test
 * replays.
 *
 *   crash-workload IMAGE TRACE MANIFEST
 *
 * Mounts IMAGE with every device write traced to TRACE, runs a fixed
 * sequence of namespace and data operations with vdfs_fsync points in
 * between (and a grow of the datastore into the rest of IMAGE), and
 * unmounts.  A model of the expected tree is kept in memory.
 * After every fsync (and after the unmount) MANIFEST gets a section:
 *
 *   sync BYTES            trace length when the fsync returned
 *   touched PATH          PATH was changed since the previous sync point
 *   dir PATH              directory that must exist
 *   file PATH SIZE SHA256 regular file that must exist with this content
 *   absent PATH           name that was removed and must not exist
 *
 * vdfs_fsync commits the whole journal, so everything in the model is
 * durable at a sync point. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "device.h"
#include "vdfs.h"

/* run_crash_test.sh makes a 256 MiB datastore in an image of this size. */
#define GROWN_BYTES (512ull << 20)
#define MAX_NAMES 256
#define MAX_INODES 256

struct model_inode {
    uint8_t *data;
    size_t size;
    uint32_t ino;
};

struct model_name {
    char path[128];
    int inode;       /* index into inodes, -1 for a directory */
    bool live;       /* false: removed, reported as absent */
    bool touched;    /* changed since the last sync point */
};

static struct vdfs *fs;
static FILE *manifest;
static const char *trace_path;
static struct model_inode inodes[MAX_INODES];
static int ninodes;
static struct model_name names[MAX_NAMES];
static int nnames;
static int sync_points;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("crash-workload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void check(int rc, const char *what, const char *path)
{
    if (rc < 0)
        die("%s %s: %s", what, path, vdfs_strerror(rc));
}

static struct model_name *name_slot(const char *path)
{
    for (int i = 0; i < nnames; i++)
        if (strcmp(names[i].path, path) == 0)
            return &names[i];
    if (nnames == MAX_NAMES)
        die("model: too many names");
    struct model_name *n = &names[nnames++];
    snprintf(n->path, sizeof(n->path), "%s", path);
    n->inode = -1;
    return n;
}

static struct model_name *live_name(const char *path)
{
    for (int i = 0; i < nnames; i++)
        if (names[i].live && strcmp(names[i].path, path) == 0)
            return &names[i];
    die("model: %s does not exist", path);
    return NULL;
}

/* Every name of an inode whose content changed is touched: a hard link
 * changes with it.  Namespace operations touch only the names involved. */
static void touch_inode(int inode)
{
    for (int i = 0; i < nnames; i++)
        if (names[i].live && names[i].inode == inode)
            names[i].touched = true;
}

static void split(const char *path, char *dir, size_t dirlen, const char **base)
{
    const char *slash = strrchr(path, '/');
    size_t n = (size_t)(slash - path);
    if (n >= dirlen)
        die("path too long: %s", path);
    memcpy(dir, path, n);
    dir[n] = 0;
    if (n == 0)
        strcpy(dir, "/");
    *base = slash + 1;
}

static uint32_t parent_ino(const char *path, const char **base)
{
    char dir[128];
    split(path, dir, sizeof(dir), base);
    struct vdfs_stat st;
    check(vdfs_resolve(fs, dir, true, &st), "resolve", dir);
    return st.ino;
}

/* Content that differs per file and per write, so a block that lands in
 * the wrong file or at the wrong offset cannot hash right. */
static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
}

static void do_mkdir(const char *path)
{
    const char *base;
    uint32_t dir = parent_ino(path, &base);
    struct vdfs_cred cred = {0, 0};
    struct vdfs_stat st;
    check(vdfs_create(fs, dir, base, S_IFDIR | 0755, 0, &cred, &st), "mkdir", path);
    struct model_name *n = name_slot(path);
    n->inode = -1;
    n->live = true;
    n->touched = true;
}

static void do_rmdir(const char *path)
{
    const char *base;
    uint32_t dir = parent_ino(path, &base);
    check(vdfs_rmdir(fs, dir, base), "rmdir", path);
    struct model_name *n = live_name(path);
    n->live = false;
    n->touched = true;
}

static void do_write(const char *path, uint64_t off, size_t len, uint64_t seed)
{
    struct model_name *n = live_name(path);
    struct model_inode *m = &inodes[n->inode];
    uint8_t *buf = malloc(len);
    if (!buf)
        die("out of memory");
    fill(buf, len, seed);
    ssize_t w = vdfs_pwrite(fs, m->ino, buf, len, off);
    if (w < 0 || (size_t)w != len)
        die("write %s: %s", path, w < 0 ? vdfs_strerror((int)w) : "short write");
    if (off + len > m->size) {
        uint8_t *bigger = realloc(m->data, off + len);
        if (!bigger)
            die("out of memory");
        memset(bigger + m->size, 0, off + len - m->size);
        m->data = bigger;
        m->size = off + len;
    }
    memcpy(m->data + off, buf, len);
    free(buf);
    touch_inode(n->inode);
}

static void do_create(const char *path, size_t size, uint64_t seed)
{
    if (ninodes == MAX_INODES)
        die("model: too many files");
    const char *base;
    uint32_t dir = parent_ino(path, &base);
    struct vdfs_cred cred = {0, 0};
    struct vdfs_stat st;
    check(vdfs_create(fs, dir, base, S_IFREG | 0644, 0, &cred, &st), "create", path);
    int idx = ninodes++;
    inodes[idx] = (struct model_inode){.ino = st.ino};
    struct model_name *n = name_slot(path);
    n->inode = idx;
    n->live = true;
    n->touched = true;
    if (size > 0)
        do_write(path, 0, size, seed);
}

static void do_truncate(const char *path, size_t size)
{
    struct model_name *n = live_name(path);
    struct model_inode *m = &inodes[n->inode];
    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = size};
    check(vdfs_setattr(fs, m->ino, &sa, NULL), "truncate", path);
    if (size > m->size) {
        uint8_t *bigger = realloc(m->data, size);
        if (!bigger)
            die("out of memory");
        memset(bigger + m->size, 0, size - m->size);
        m->data = bigger;
    }
    m->size = size;
    touch_inode(n->inode);
}

static void do_unlink(const char *path)
{
    const char *base;
    uint32_t dir = parent_ino(path, &base);
    check(vdfs_unlink(fs, dir, base), "unlink", path);
    struct model_name *n = live_name(path);
    n->live = false;
    n->touched = true;
}

static void do_link(const char *existing, const char *path)
{
    struct model_name *from = live_name(existing);
    const char *base;
    uint32_t dir = parent_ino(path, &base);
    check(vdfs_link(fs, inodes[from->inode].ino, dir, base, NULL), "link", path);
    int inode = from->inode;
    struct model_name *n = name_slot(path);
    n->inode = inode;
    n->live = true;
    n->touched = true;
}

/* rename(2) semantics: an existing regular file at `to` is replaced. */
static void do_rename(const char *from, const char *to)
{
    const char *obase, *nbase;
    uint32_t odir = parent_ino(from, &obase);
    uint32_t ndir = parent_ino(to, &nbase);
    check(vdfs_rename(fs, odir, obase, ndir, nbase, 0), "rename", from);
    struct model_name *src = live_name(from);
    int inode = src->inode;
    src->live = false;
    src->touched = true;
    struct model_name *dst = name_slot(to);
    dst->inode = inode;
    dst->live = true;
    dst->touched = true;
}

static void sha256_hex(const uint8_t *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        die("SHA-256 failed");
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
}

static void write_section(void)
{
    struct stat st;
    if (stat(trace_path, &st) != 0)
        die("%s: %s", trace_path, strerror(errno));
    fprintf(manifest, "sync %lld\n", (long long)st.st_size);
    for (int i = 0; i < nnames; i++) {
        struct model_name *n = &names[i];
        if (n->touched)
            fprintf(manifest, "touched %s\n", n->path);
        n->touched = false;
    }
    for (int i = 0; i < nnames; i++) {
        struct model_name *n = &names[i];
        if (!n->live) {
            fprintf(manifest, "absent %s\n", n->path);
        } else if (n->inode < 0) {
            fprintf(manifest, "dir %s\n", n->path);
        } else {
            char hex[65];
            struct model_inode *m = &inodes[n->inode];
            sha256_hex(m->data, m->size, hex);
            fprintf(manifest, "file %s %zu %s\n", n->path, m->size, hex);
        }
    }
    if (fflush(manifest) != 0)
        die("manifest: %s", strerror(errno));
    sync_points++;
}

static void sync_point(const char *any_path)
{
    struct vdfs_stat st;
    check(vdfs_resolve(fs, any_path, false, &st), "resolve", any_path);
    check(vdfs_fsync(fs, st.ino, false), "fsync", any_path);
    write_section();
}

static void workload(void)
{
    char path[128];
    /* Files of each addressing mode: resident, sub-blocks, file blocks. */
    do_mkdir("/a");
    do_mkdir("/a/b");
    do_create("/a/small", 100, 1);
    do_create("/a/mid", 30 * 1024, 2);
    do_create("/a/big", 3 * 1024 * 1024, 3);
    sync_point("/a/big");

    /* Namespace changes on synced files. */
    do_rename("/a/mid", "/a/b/moved");
    do_unlink("/a/small");
    do_link("/a/big", "/a/b/biglink");
    do_create("/a/b/new2", 200 * 1024, 4);
    sync_point("/a/b/new2");

    /* Overwrite inside a block file, shrink, extend across modes, and grow
     * a directory. */
    do_write("/a/big", 1536 * 1024, 1024 * 1024, 5);
    do_truncate("/a/b/moved", 10 * 1024);
    do_write("/a/b/new2", 200 * 1024, 2 * 1024 * 1024, 6);
    do_mkdir("/d");
    for (int i = 0; i < 40; i++) {
        snprintf(path, sizeof(path), "/d/f%03d", i);
        do_create(path, (size_t)(i % 4 == 0 ? 100 : 5000 + i * 700), (uint64_t)(100 + i));
    }
    sync_point("/d");

    /* The datastore grows into the rest of its image (vdfs_grow): every
     * crash state of it must mount, keep what was synced and fsck clean. */
    struct vdfs_grow_result grown;
    check(vdfs_grow(fs, GROWN_BYTES, &grown), "grow", "/");
    if (grown.new_bytes != GROWN_BYTES || grown.added_blocks == 0)
        die("grow: the datastore is %llu bytes, not %llu", (unsigned long long)grown.new_bytes,
            (unsigned long long)GROWN_BYTES);

    /* Drop a link, rewrite from empty, rename over an existing file, and
     * a sparse file. */
    do_unlink("/a/b/biglink");
    do_truncate("/a/big", 0);
    do_write("/a/big", 0, 1024 * 1024, 7);
    do_rename("/a/b/new2", "/a/b/moved");
    do_mkdir("/e");
    do_create("/e/sparse", 0, 0);
    do_write("/e/sparse", 5 * 1024 * 1024, 4096, 8);
    sync_point("/e/sparse");

    /* Many small transactions, so the journal wraps (checkpoint) with
     * synced data around it. */
    for (int i = 0; i < 30; i++) {
        snprintf(path, sizeof(path), "/d/f%03d", i);
        if (i % 3 == 0) {
            do_unlink(path);
        } else if (i % 3 == 1) {
            do_write(path, 0, (size_t)(40 * 1024 + i), (uint64_t)(300 + i));
        } else {
            char to[128];
            snprintf(to, sizeof(to), "/e/r%03d", i);
            do_rename(path, to);
        }
        sync_point("/d");
    }

    /* Bigger transactions until the journal has wrapped at least once:
     * each sync point replaces a batch of files. */
    do_mkdir("/w");
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < 8; i++) {
            if (round > 0) {
                snprintf(path, sizeof(path), "/w/r%02d-%d", round - 1, i);
                do_unlink(path);
            }
            snprintf(path, sizeof(path), "/w/r%02d-%d", round, i);
            do_create(path, (size_t)(i % 2 ? 100 + i : 9000 + 1000 * i), (uint64_t)(1000 + round * 8 + i));
        }
        sync_point("/w");
    }

    /* Shrinking a block file back into resident data, removing a
     * directory, and a tail of work that only the unmount makes durable. */
    do_truncate("/a/b/moved", 60);
    do_mkdir("/e/tmp");
    do_rmdir("/e/tmp");
    sync_point("/a/b/moved");
    do_mkdir("/z");
    do_create("/z/late", 1024 * 1024 + 17, 9);
    do_link("/z/late", "/d/late-link");
    do_unlink("/d/f039");
}

int main(int argc, char **argv)
{
    if (argc != 4 || argv[1][0] == '-') {
        fprintf(stderr, "usage: crash-workload IMAGE TRACE MANIFEST\n");
        return 2;
    }
    trace_path = argv[2];
    manifest = fopen(argv[3], "w");
    if (!manifest)
        die("%s: %s", argv[3], strerror(errno));
    if (unlink(trace_path) != 0 && errno != ENOENT)
        die("%s: %s", trace_path, strerror(errno));
    if (setenv(VDFS_TRACE_ENV, trace_path, 1) != 0)
        die("setenv: %s", strerror(errno));
    /* No timed commits: the trace then depends only on the script, apart
     * from heartbeat renewals. */
    struct vdfs_mount_opts opts = {
        .host_uuid = "6c1f6a2e-3b7d-4e55-9a0b-c0ffee000001",
        .host_name = "crash-workload",
        .commit_ms = 3600 * 1000,
    };
    check(vdfs_mount(argv[1], &opts, &fs), "mount", argv[1]);
    workload();
    check(vdfs_unmount(fs), "unmount", argv[1]);
    fs = NULL;
    unsetenv(VDFS_TRACE_ENV);
    write_section();
    if (fclose(manifest) != 0)
        die("%s: %s", argv[3], strerror(errno));
    for (int i = 0; i < ninodes; i++)
        free(inodes[i].data);
    printf("crash-workload: %d sync points\n", sync_points);
    return 0;
}
