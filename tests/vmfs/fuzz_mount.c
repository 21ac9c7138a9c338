/* libFuzzer target for libvdfs's mount and operation path (clang only, not
 * run in CI): corrupt metadata met while mounting or using a datastore
 * must give EIO or a refused mount, never a crash, hang or sanitizer error.
 *
 * tests/vmfs/run_fuzz_mount.sh [SECONDS] does everything below: builds
 * with clang, makes the base images, runs under nice -n 19.
 *
 * FUZZ_MOUNT_BASE names one or two base images, ':'-separated, built as:
 *
 *   mkfs.vdfs -q -b 64K -s 8K -H 4 -J 1M clean.img 64M
 *   fuzz_mount_base clean.img                  # fill it, unmount cleanly
 *   mkfs.vdfs -q -b 64K -s 8K -H 4 -J 1M tmp.img 64M
 *   fuzz_mount_base tmp.img live.img           # copy taken while mounted
 *
 * live.img has a host that looks alive, holds the metadata lock and has
 * transactions in its journal: a read-write mount declares it dead after
 * the (short) heartbeat timeout and replays its journal.
 *
 * Input: byte 0 is flags (bit 0: which base; bit 1: raw, do not re-seal;
 * bits 2-3: 1 read-only mount only, 2 read-write only, else both; bit 4:
 * a second read-write mount, which reads what the first one wrote), then
 * patches as metadata_patch.h describes them: re-sealed unless raw, so that
 * the library believes the corrupt values instead of stopping at the
 * checksum.  File data is not copied: file blocks read as zeros.
 *
 * The patched image goes to a memfd opened without O_DIRECT, or with
 * FUZZ_MOUNT_DIR set to a file in that directory opened with O_DIRECT.
 * It is mounted read-only and read-write (fresh host UUID, 20 ms heartbeat
 * interval, 90 ms timeout); the whole tree is walked (bounded) through the
 * public API, and the read-write mount also creates, writes, renames,
 * links, unlinks and removes.  An image that grew (a write past the end of
 * the datastore) counts as a crash.  FUZZ_MOUNT_VERBOSE=1 prints library
 * messages.
 *
 *   FUZZ_MOUNT_BASE=clean.img:live.img nice -n 19 ./fuzz_mount -timeout=30 \
 *       -rss_limit_mb=4096 corpus/
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "metadata_patch.h"
#include "vdfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BASES 2
#define MAX_ITEMS 400         /* objects visited by one walk */
#define MAX_DEPTH 12
#define MAX_DIR_ENTRIES 600   /* readdir callbacks per directory */
#define MAX_EXTENTS 2048
#define READ_CHUNK 65536
#define BUF_SIZE (2 * READ_CHUNK) /* the largest write is 70000 bytes */

static struct patch_base bases[MAX_BASES];
static size_t nbases;
static bool verbose;
static const char *image_dir;

static void quiet_logger(int level, const char *msg, void *ctx)
{
    if (verbose)
        fprintf(stderr, "vdfs[%d]: %s\n", level, msg);
}

static void init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    verbose = getenv("FUZZ_MOUNT_VERBOSE") != NULL;
    image_dir = getenv("FUZZ_MOUNT_DIR");
    vdfs_set_logger(quiet_logger, NULL);
    const char *list = getenv("FUZZ_MOUNT_BASE");
    if (!list || !*list) {
        fprintf(stderr, "fuzz_mount: set FUZZ_MOUNT_BASE (see fuzz_mount.c)\n");
        abort();
    }
    char *copy = strdup(list), *save = NULL;
    for (char *p = strtok_r(copy, ":", &save); p && nbases < MAX_BASES; p = strtok_r(NULL, ":", &save))
        patch_base_load(&bases[nbases++], p);
    free(copy);
}


/* ---- the walk ------------------------------------------------------------ */

struct item {
    uint32_t ino;
    uint32_t parent;
    unsigned depth;
    char name[VDFS_NAME_MAX + 1];
    char path[1024];
};

struct walk {
    struct vdfs *fs;
    struct item *items;
    size_t n;
    size_t callbacks;
    const struct item *dir;
    uint64_t resume_cookie; /* a cookie from the middle of the listing */
    /* for the read-write operations */
    uint32_t some_dir, some_file, last_file, last_dir;
    char some_file_name[VDFS_NAME_MAX + 1], last_file_name[VDFS_NAME_MAX + 1], last_dir_name[VDFS_NAME_MAX + 1];
    uint32_t some_file_dir, last_file_dir, last_dir_parent;
};

static int collect(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next_cookie)
{
    struct walk *w = ctx;
    if (++w->callbacks > MAX_DIR_ENTRIES)
        return 1;
    if (w->callbacks == 4)
        w->resume_cookie = next_cookie;
    if (!strcmp(name, ".") || !strcmp(name, "..") || w->n >= MAX_ITEMS || w->dir->depth >= MAX_DEPTH)
        return 0;
    struct item *it = &w->items[w->n++];
    it->ino = ino;
    it->parent = w->dir->ino;
    it->depth = w->dir->depth + 1;
    snprintf(it->name, sizeof(it->name), "%s", name);
    snprintf(it->path, sizeof(it->path), "%s/%s", w->dir->path, name);
    return 0;
}

static int count_entries(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next_cookie)
{
    size_t *n = ctx;
    return ++*n > MAX_DIR_ENTRIES;
}

static int count_extents(void *ctx, const struct vdfs_extent *ext)
{
    size_t *n = ctx;
    return ++*n > MAX_EXTENTS;
}

static void read_file(struct vdfs *fs, uint32_t ino, uint64_t size, uint8_t *buf)
{
    if (vdfs_open(fs, ino, O_RDONLY) < 0)
        return;
    size_t extents = 0;
    vdfs_map(fs, ino, count_extents, &extents);
    vdfs_lseek(fs, ino, 0, SEEK_DATA);
    vdfs_lseek(fs, ino, 0, SEEK_HOLE);
    vdfs_lseek(fs, ino, size / 2, SEEK_DATA);
    const uint64_t offs[] = {0, READ_CHUNK, size / 2, size > READ_CHUNK ? size - READ_CHUNK : 0, size ? size - 1 : 0,
                             size + 1};
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
        vdfs_pread(fs, ino, buf, READ_CHUNK, offs[i]);
    vdfs_release(fs, ino, O_RDONLY);
}

static void read_xattrs(struct vdfs *fs, uint32_t ino, uint8_t *buf)
{
    char list[4096];
    ssize_t n = vdfs_listxattr(fs, ino, NULL, 0);
    n = vdfs_listxattr(fs, ino, list, sizeof(list));
    for (ssize_t at = 0; n > 0 && at < n;) {
        size_t len = strnlen(list + at, (size_t)(n - at));
        if (len == (size_t)(n - at))
            break;
        vdfs_getxattr(fs, ino, list + at, NULL, 0);
        vdfs_getxattr(fs, ino, list + at, buf, READ_CHUNK);
        vdfs_getxattr(fs, ino, list + at, buf, 3);
        at += (ssize_t)len + 1;
    }
    vdfs_getxattr(fs, ino, "user.absent", buf, READ_CHUNK);
}

static void walk_tree(struct walk *w, uint8_t *buf)
{
    struct vdfs *fs = w->fs;
    w->items[0] = (struct item){.ino = vdfs_root_ino(fs), .parent = 0, .depth = 0};
    w->n = 1;
    struct vdfs_statfs sf;
    vdfs_statfs(fs, &sf);
    struct vdfs_usage u;
    vdfs_usage(fs, &u);
    struct vdfs_info info;
    vdfs_get_info(fs, &info);
    for (size_t i = 0; i < w->n; i++) {
        const struct item *it = &w->items[i];
        struct vdfs_stat st;
        if (it->parent) {
            vdfs_lookup(fs, it->parent, it->name, &st);
            vdfs_resolve(fs, it->path, true, &st);
        }
        if (vdfs_getattr(fs, it->ino, &st) < 0)
            continue;
        vdfs_check_generation(fs, it->ino, st.ino_gen);
        read_xattrs(fs, it->ino, buf);
        char holder[128];
        vdfs_lock_holder(fs, it->ino, holder, sizeof(holder));
        if (S_ISDIR(st.mode)) {
            w->dir = it;
            w->callbacks = 0;
            w->resume_cookie = 0;
            vdfs_readdir(fs, it->ino, 0, collect, w);
            if (w->resume_cookie) {
                size_t n = 0;
                vdfs_readdir(fs, it->ino, w->resume_cookie, count_entries, &n);
            }
            if (it->parent) {
                if (!w->some_dir)
                    w->some_dir = it->ino;
                w->last_dir = it->ino;
                w->last_dir_parent = it->parent;
                memcpy(w->last_dir_name, it->name, sizeof(it->name));
            }
        } else if (S_ISREG(st.mode)) {
            read_file(fs, it->ino, st.size, buf);
            if (!w->some_file) {
                w->some_file = it->ino;
                w->some_file_dir = it->parent;
                memcpy(w->some_file_name, it->name, sizeof(it->name));
            }
            w->last_file = it->ino;
            w->last_file_dir = it->parent;
            memcpy(w->last_file_name, it->name, sizeof(it->name));
        } else if (S_ISLNK(st.mode)) {
            vdfs_readlink(fs, it->ino, (char *)buf, READ_CHUNK);
            vdfs_readlink(fs, it->ino, (char *)buf, 5);
        }
    }
}

static void modify_file(struct vdfs *fs, uint32_t ino, uint8_t *buf)
{
    struct vdfs_stat st;
    int grc = vdfs_getattr(fs, ino, &st), orc = grc < 0 ? grc : vdfs_open(fs, ino, O_RDWR);
    if (verbose)
        fprintf(stderr, "fuzz_mount: open %u for writing: %s\n", ino, vdfs_strerror(orc));
    if (orc < 0)
        return;
    vdfs_pwrite(fs, ino, buf, 100, 0);
    vdfs_pwrite(fs, ino, buf, 5000, st.size);
    vdfs_pwrite(fs, ino, buf, 70000, st.size / 3);
    vdfs_fallocate(fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 200000);
    vdfs_fallocate(fs, ino, 0, st.size, 300000);
    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = st.size / 2};
    vdfs_setattr(fs, ino, &sa, &st);
    vdfs_setxattr(fs, ino, "user.fuzz", buf, 40, 0);
    vdfs_removexattr(fs, ino, "user.small");
    vdfs_fsync(fs, ino, false);
    vdfs_release(fs, ino, O_RDWR);
}

static void modify_tree(struct walk *w, uint8_t *buf)
{
    struct vdfs *fs = w->fs;
    const struct vdfs_cred cred = {0, 0};
    uint32_t root = vdfs_root_ino(fs);
    uint32_t dir = w->some_dir ? w->some_dir : root;
    struct vdfs_stat st, dst;
    memset(buf, 0xa5, BUF_SIZE);
    int rc = vdfs_create(fs, root, "fz.new", S_IFREG | 0644, 0, &cred, &st);
    if (verbose)
        fprintf(stderr, "fuzz_mount: create: %s\n", vdfs_strerror(rc));
    if (rc == 0) {
        modify_file(fs, st.ino, buf);
        if (vdfs_create(fs, dir, "fz.dir", S_IFDIR | 0755, 0, &cred, &dst) == 0) {
            vdfs_rename(fs, root, "fz.new", dst.ino, "fz.moved", 0);
            vdfs_link(fs, st.ino, root, "fz.link", &st);
            vdfs_symlink(fs, dst.ino, "fz.sym", "../fz.link", &cred, &st);
            vdfs_unlink(fs, root, "fz.link");
            vdfs_rename(fs, dst.ino, "fz.moved", root, "fz.back", VDFS_RENAME_NOREPLACE);
            vdfs_rename(fs, root, "fz.back", dst.ino, "fz.sym", VDFS_RENAME_EXCHANGE);
            vdfs_rename(fs, root, "fz.back", dst.ino, "fz.sym", VDFS_RENAME_EXCHANGE);
            vdfs_unlink(fs, dst.ino, "fz.sym");
            vdfs_rmdir(fs, dir, "fz.dir");
        }
        vdfs_unlink(fs, root, "fz.back");
        vdfs_unlink(fs, root, "fz.new");
    }
    if (w->some_file)
        modify_file(fs, w->some_file, buf);
    if (w->some_file && w->some_file_dir) {
        vdfs_rename(fs, w->some_file_dir, w->some_file_name, dir, "fz.renamed", 0);
        vdfs_rename(fs, dir, "fz.renamed", w->some_file_dir, w->some_file_name, 0);
        vdfs_link(fs, w->some_file, dir, "fz.hard", &st);
        if (w->last_file && w->last_file_dir)
            vdfs_rename(fs, w->last_file_dir, w->last_file_name, dir, "fz.hard", 0);
        if (w->some_dir)
            vdfs_rename(fs, w->some_file_dir, w->some_file_name, root, "fz.swap", VDFS_RENAME_EXCHANGE);
    }
    if (w->last_file && w->last_file_dir && w->last_file != w->some_file) {
        modify_file(fs, w->last_file, buf);
        vdfs_unlink(fs, w->last_file_dir, w->last_file_name);
    }
    if (w->last_dir && w->last_dir_parent) {
        vdfs_setxattr(fs, w->last_dir, "user.fuzzdir", buf, 300, 0);
        vdfs_rmdir(fs, w->last_dir_parent, w->last_dir_name);
        if (w->some_dir && w->some_dir != w->last_dir)
            vdfs_rename(fs, w->last_dir_parent, w->last_dir_name, w->some_dir, "fz.movedir", 0);
    }
    vdfs_sync(fs);
}

static void exercise(const char *path, bool readonly, struct walk *w, uint8_t *buf)
{
    char uuid[37];
    uint8_t raw[16];
    vdfs_uuid_generate(raw);
    vdfs_uuid_format(raw, uuid);
    struct vdfs_mount_opts opts = {
        .readonly = readonly,
        .host_uuid = uuid,
        .host_name = "fuzz",
        .no_direct = image_dir == NULL,
        .commit_ms = 50,
        .hb_interval_ms = 20,
        .hb_timeout_ms = 90,
    };
    struct vdfs *fs;
    int rc = vdfs_mount(path, &opts, &fs);
    if (verbose)
        fprintf(stderr, "fuzz_mount: %s mount: %s\n", readonly ? "read-only" : "read-write", vdfs_strerror(rc));
    if (rc != 0)
        return;
    struct item *items = w->items;
    memset(w, 0, sizeof(*w));
    w->items = items;
    w->fs = fs;
    walk_tree(w, buf);
    if (!readonly)
        modify_tree(w, buf);
    rc = vdfs_unmount(fs);
    if (verbose)
        fprintf(stderr, "fuzz_mount: unmount: %s (%zu objects walked)\n", vdfs_strerror(rc), w->n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    struct patch_base *b = &bases[(flags & 1) % nbases];
    bool raw = flags & 2;
    unsigned which = (flags >> 2) & 3;
    static struct patch_set set;
    patch_apply(b, data + 1, size - 1, raw, &set);
    int fd = patch_write_image(b, &set, image_dir);
    patch_restore(b, &set);

    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    static struct walk w;
    static struct item items[MAX_ITEMS];
    static uint8_t *buf;
    if (!buf && !(buf = malloc(BUF_SIZE)))
        abort();
    w.items = items;
    if (which != 2)
        exercise(path, true, &w, buf);
    if (which != 1)
        exercise(path, false, &w, buf);
    if (which != 1 && (flags & 16))
        exercise(path, false, &w, buf);
    /* Writes must stay inside the datastore, whatever the metadata says. */
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != b->size) {
        fprintf(stderr, "fuzz_mount: the image grew from %zu to %lld bytes: a write went past the datastore\n",
                b->size, (long long)st.st_size);
        abort();
    }
    close(fd);
    return 0;
}
