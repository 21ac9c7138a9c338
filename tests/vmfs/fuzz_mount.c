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
 * patches: le16 block, le16 offset, u8 length, that many bytes.  A patch
 * goes to a non-empty 4 KiB block of the base's metadata (everything before
 * the file blocks): block % 7 picks a class (superblock, heartbeat and lock
 * areas; journals; bitmaps; descriptors; pointer blocks; directory blocks;
 * other), block / 7 a block of it.  Unless raw, every object a patch
 * touched is sealed again (magic, checksum) and journal descriptors get
 * their images' checksum recomputed, so that the library believes the
 * corrupt values instead of stopping at the checksum.  File data is not
 * copied: file blocks read as zeros.
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
#include "vdfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BASES 2
#define MAX_TOUCHED 256
#define MAX_ITEMS 400         /* objects visited by one walk */
#define MAX_DEPTH 12
#define MAX_DIR_ENTRIES 600   /* readdir callbacks per directory */
#define MAX_EXTENTS 2048
#define READ_CHUNK 65536
#define BUF_SIZE (2 * READ_CHUNK) /* the largest write is 70000 bytes */

/* Classes of metadata blocks a patch picks from. */
enum { CLASS_AREAS, CLASS_JOURNAL, CLASS_BITMAP, CLASS_FD, CLASS_PB, CLASS_DIR, CLASS_OTHER, CLASSES };

struct base {
    uint8_t *image;  /* pristine */
    uint8_t *work;   /* patched copy, restored block by block after each input */
    size_t size;
    struct vdfs_super sb;
    uint64_t meta_end;   /* start of the file blocks */
    uint64_t *blocks;    /* offsets of non-empty 4 KiB blocks before meta_end */
    size_t nblocks;
    /* The same blocks by what they hold, so that patches reach the rare
     * kinds (directory and pointer blocks) as often as descriptors. */
    uint64_t *by_class[CLASSES];
    size_t nclass[CLASSES];
};

static struct base bases[MAX_BASES];
static size_t nbases;
static bool verbose;
static const char *image_dir;

static void quiet_logger(int level, const char *msg, void *ctx)
{
    if (verbose)
        fprintf(stderr, "vdfs[%d]: %s\n", level, msg);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool block_is_zero(const uint8_t *p)
{
    for (size_t i = 0; i < VDFS_META_SIZE; i++)
        if (p[i])
            return false;
    return true;
}

static void load_base(struct base *b, const char *path)
{
    FILE *fp = fopen(path, "rb");
    long end;
    if (!fp || fseek(fp, 0, SEEK_END) || (end = ftell(fp)) <= 0 || fseek(fp, 0, SEEK_SET)) {
        fprintf(stderr, "fuzz_mount: cannot read %s\n", path);
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
        fprintf(stderr, "fuzz_mount: %s has no valid superblock\n", path);
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
    for (unsigned c = 0; c < CLASSES; c++)
        if (!(b->by_class[c] = malloc(b->nblocks * sizeof(uint64_t))))
            abort();
    for (size_t i = 0; i < b->nblocks; i++) {
        uint64_t off = b->blocks[i];
        const uint8_t *p = b->image + off;
        uint32_t kind = get32(p) == VDFS_MAGIC ? get32(p + 4) : 0;
        unsigned c = off < jstart ? CLASS_AREAS
                     : off < jend ? CLASS_JOURNAL
                     : kind == VDFS_KIND_BITMAP ? CLASS_BITMAP
                     : kind == VDFS_KIND_FD ? CLASS_FD
                     : kind == VDFS_KIND_PB ? CLASS_PB
                     : kind == VDFS_KIND_DIR ? CLASS_DIR
                     : kind == VDFS_KIND_SUPER ? CLASS_AREAS
                                                : CLASS_OTHER;
        b->by_class[c][b->nclass[c]++] = off;
    }
}

/* Block `sel` picks: a class, then a block of it. */
static uint64_t pick_block(const struct base *b, uint32_t sel)
{
    unsigned c = sel % CLASSES;
    for (unsigned n = 0; n < CLASSES && b->nclass[c] == 0; n++)
        c = (c + 1) % CLASSES;
    return b->by_class[c][(sel / CLASSES) % b->nclass[c]];
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
        load_base(&bases[nbases++], p);
    free(copy);
}


static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
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
static void fix_journal(struct base *b, uint32_t slot)
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

static void reseal_block(struct base *b, uint64_t off, bool journals[VDFS_MAX_HOSTS_LIMIT])
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

static int write_image(struct base *b, const uint64_t *touched, size_t ntouched)
{
    int fd;
    char path[512];
    if (image_dir) {
        snprintf(path, sizeof(path), "%s/fuzz_mount-XXXXXX", image_dir);
        fd = mkstemp(path);
        if (fd >= 0)
            unlink(path);
    } else {
        fd = memfd_create("fuzz_mount", 0);
    }
    if (fd < 0 || ftruncate(fd, (off_t)b->size) < 0)
        abort();
    for (size_t i = 0; i < b->nblocks; i++)
        if (pwrite(fd, b->work + b->blocks[i], VDFS_META_SIZE, (off_t)b->blocks[i]) != VDFS_META_SIZE)
            abort();
    for (size_t i = 0; i < ntouched; i++)
        if (pwrite(fd, b->work + touched[i], VDFS_META_SIZE, (off_t)touched[i]) != VDFS_META_SIZE)
            abort();
    return fd;
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
    struct base *b = &bases[(flags & 1) % nbases];
    bool raw = flags & 2;
    unsigned which = (flags >> 2) & 3;
    uint64_t touched[MAX_TOUCHED];
    size_t ntouched = 0;
    for (size_t i = 1; i + 5 <= size;) {
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
            for (size_t k = 0; k < ntouched && !seen; k++)
                seen = touched[k] == blk;
            if (!seen && ntouched < MAX_TOUCHED)
                touched[ntouched++] = blk;
        }
    }
    if (!raw) {
        bool journals[VDFS_MAX_HOSTS_LIMIT] = {false};
        for (size_t k = 0; k < ntouched; k++)
            reseal_block(b, touched[k], journals);
        for (uint32_t s = 0; s < VDFS_MAX_HOSTS_LIMIT; s++)
            if (journals[s]) {
                fix_journal(b, s);
                /* The descriptors that were re-sealed go back too. */
                for (uint32_t pos = 1; pos < b->sb.journal_blocks && ntouched < MAX_TOUCHED; pos++) {
                    uint64_t a = vdfs_journal_addr(&b->sb, s, pos);
                    if (get32(b->image + a) == VDFS_MAGIC && get32(b->image + a + 4) == VDFS_KIND_JDESC)
                        touched[ntouched++] = a;
                }
            }
    }
    int fd = write_image(b, touched, ntouched);
    /* The pristine image comes back for the next input. */
    for (size_t k = 0; k < ntouched; k++)
        memcpy(b->work + touched[k], b->image + touched[k], VDFS_META_SIZE);

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
