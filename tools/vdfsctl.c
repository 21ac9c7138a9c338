/* vdfsctl: inspect and change a datastore without mounting it, like
 * debugfs or VMware's vmkfstools/debugvmfs. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "device.h"
#include "format.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vdfsctl COMMAND [options] IMAGE [ARGS]\n"
            "\n"
            "Commands (the datastore need not be mounted):\n"
            "  info   IMAGE              volume facts: uuid, label, sizes, hosts\n"
            "  ls     IMAGE [PATH]       list a directory (-l for details)\n"
            "  stat   IMAGE PATH         a file's metadata\n"
            "  get    IMAGE PATH [LOCAL] copy out (LOCAL '-' or absent: stdout; -r for trees)\n"
            "  put    IMAGE LOCAL PATH   copy in (-r for trees); holes stay holes\n"
            "  rm     IMAGE PATH         remove (-r for trees)\n"
            "  mkdir  IMAGE PATH         make a directory (-p: parents too)\n"
            "  mv     IMAGE OLD NEW      rename, or move into directory NEW\n"
            "  cp     IMAGE FROM TO      copy inside the datastore, or into directory TO (-r for\n"
            "                            trees); the copy is thin: holes and zero blocks take no space\n"
            "  truncate IMAGE PATH SIZE  create or resize a file, thin (SIZE: 20G, 512M, bytes);\n"
            "                            --thick reserves its blocks, which read as zeros\n"
            "  grow   IMAGE [SIZE]       grow the datastore to SIZE (an image file is extended) or\n"
            "                            to its device's size, while hosts have it mounted\n"
            "  label  IMAGE [LABEL]      print the datastore's label, or set it ('' for none)\n"
            "  usage  IMAGE              provisioned against allocated space\n"
            "  map    IMAGE PATH         a file's allocated ranges and holes\n"
            "  digest IMAGE PATH         SHA-256 of a file (holes are not read)\n"
            "  hosts  IMAGE              heartbeat slots: live hosts and heartbeat age\n"
            "  locks  IMAGE              on-disk locks that are held\n"
            "\n"
            "Options: --json (info, ls, stat, usage, map, hosts, locks, grow, label), -r, -p, -l, -q, --thick,\n"
            "         -h/--help,\n"
            "         --host-uuid UUID (commands that mount: join as this cluster host)\n"
            "Commands that mount join the datastore as one more cluster host, so they work\n"
            "while vdfs-fuse hosts have it mounted; hosts and locks only read.\n"
            "Exit status: 0 success, 1 the operation failed, 2 usage error.\n");
}

void ctl_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

int ctl_parent(struct vdfs *fs, const char *path, uint32_t *parent, const char **name)
{
    static char dirpart[4096];
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len >= sizeof(dirpart))
        return -ENAMETOOLONG;
    memcpy(dirpart, path, len);
    dirpart[len] = 0;
    char *slash = strrchr(dirpart, '/');
    *name = slash ? slash + 1 : dirpart;
    if (!**name)
        return -EINVAL;
    struct vdfs_stat st;
    int rc;
    if (!slash) {
        *parent = vdfs_root_ino(fs);
        return 0;
    }
    *slash = 0;
    rc = vdfs_resolve(fs, dirpart[0] ? dirpart : "/", true, &st);
    if (rc == 0 && !S_ISDIR(st.mode))
        rc = -ENOTDIR;
    if (rc == 0)
        *parent = st.ino;
    /* name points into dirpart after the slash: still valid. */
    return rc;
}

static const char *type_name(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFDIR: return "directory";
    case S_IFREG: return "file";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char-device";
    case S_IFBLK: return "block-device";
    default: return "unknown";
    }
}

static void print_time(const char *key, struct timespec t, bool json, bool last)
{
    if (json) {
        printf("\"%s\": %lld.%09ld%s", key, (long long)t.tv_sec, t.tv_nsec, last ? "" : ", ");
        return;
    }
    char buf[64];
    struct tm tm;
    time_t s = t.tv_sec;
    gmtime_r(&s, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
    printf("%-8s %s.%09ld UTC\n", key, buf, t.tv_nsec);
}

static int cmd_stat(struct vdfs *fs, const struct ctl *c, const char *path)
{
    struct vdfs_stat st;
    int rc = vdfs_resolve(fs, path, false, &st);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    /* What stat(1) adds for these types: the device number, the target. */
    bool device = S_ISCHR(st.mode) || S_ISBLK(st.mode);
    char target[4096] = "";
    if (S_ISLNK(st.mode)) {
        ssize_t n = vdfs_readlink(fs, st.ino, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
    }
    if (c->json) {
        printf("{\"path\": ");
        ctl_json_string(path);
        printf(", \"ino\": %u, \"type\": \"%s\", \"mode\": \"%04o\", \"nlink\": %u, \"uid\": %u, \"gid\": %u, "
               "\"size\": %" PRIu64 ", \"allocated\": %" PRIu64 ", ",
               st.ino, type_name(st.mode), st.mode & 07777, st.nlink, st.uid, st.gid, st.size, st.alloc_bytes);
        if (device)
            printf("\"major\": %u, \"minor\": %u, ", major(st.rdev), minor(st.rdev));
        if (S_ISLNK(st.mode)) {
            printf("\"target\": ");
            ctl_json_string(target);
            printf(", ");
        }
        print_time("atime", st.atime, true, false);
        print_time("mtime", st.mtime, true, false);
        print_time("ctime", st.ctime, true, false);
        print_time("btime", st.btime, true, true);
        printf("}\n");
        return 0;
    }
    printf("path     %s\nino      %u\ntype     %s\nmode     %04o\nnlink    %u\nuid      %u\ngid      %u\n"
           "size     %" PRIu64 "\nallocated %" PRIu64 "\n",
           path, st.ino, type_name(st.mode), st.mode & 07777, st.nlink, st.uid, st.gid, st.size, st.alloc_bytes);
    if (device)
        printf("device   %u,%u\n", major(st.rdev), minor(st.rdev));
    if (S_ISLNK(st.mode))
        printf("target   %s\n", target);
    print_time("atime", st.atime, false, false);
    print_time("mtime", st.mtime, false, false);
    print_time("ctime", st.ctime, false, false);
    print_time("btime", st.btime, false, true);
    return 0;
}

struct ls_entry {
    char *name;
    uint32_t ino, mode;
};

struct ls_list {
    struct ls_entry *v;
    size_t n, cap;
};

/* Collects first and looks up afterwards: readdir holds the volume lock. */
static int ls_collect(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next)
{
    struct ls_list *l = ctx;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct ls_entry *more = realloc(l->v, cap * sizeof(*more));
        if (!more)
            return -ENOMEM;
        l->v = more;
        l->cap = cap;
    }
    l->v[l->n] = (struct ls_entry){strdup(name), ino, mode};
    return l->v[l->n++].name ? 0 : -ENOMEM;
}

static void ls_print(struct vdfs *fs, const struct ctl *c, uint32_t dir, const struct ls_entry *e, bool first)
{
    struct vdfs_stat st = {0};
    if (c->long_format || c->json)
        vdfs_lookup(fs, dir, e->name, &st);
    if (c->json) {
        printf("%s{\"name\": ", first ? "" : ", ");
        ctl_json_string(e->name);
        printf(", \"ino\": %u, \"type\": \"%s\", \"size\": %" PRIu64 ", \"allocated\": %" PRIu64 "}", e->ino,
               type_name(e->mode), st.size, st.alloc_bytes);
    } else if (c->long_format) {
        printf("%-12s %04o %5u %5u %14" PRIu64 " %14" PRIu64 " %s\n", type_name(e->mode), st.mode & 07777, st.uid,
               st.gid, st.size, st.alloc_bytes, e->name);
    } else {
        printf("%s\n", e->name);
    }
}

static int cmd_ls(struct vdfs *fs, const struct ctl *c, const char *path)
{
    struct vdfs_stat st;
    int rc = vdfs_resolve(fs, path, true, &st);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    if (c->json)
        printf("[");
    if (!S_ISDIR(st.mode)) {
        uint32_t parent = vdfs_root_ino(fs);
        const char *name = path;
        ctl_parent(fs, path, &parent, &name);
        struct ls_entry e = {(char *)name, st.ino, st.mode};
        ls_print(fs, c, parent, &e, true);
    } else {
        struct ls_list l = {0};
        rc = vdfs_readdir(fs, st.ino, 0, ls_collect, &l);
        for (size_t i = 0; i < l.n; i++) {
            if (rc == 0)
                ls_print(fs, c, st.ino, &l.v[i], i == 0);
            free(l.v[i].name);
        }
        free(l.v);
        if (rc)
            fprintf(stderr, "vdfsctl: %s: %s\n", path, vdfs_strerror(rc));
    }
    if (c->json)
        printf("]\n");
    return rc;
}

static int cmd_mkdir(struct vdfs *fs, const struct ctl *c, const char *path)
{
    struct vdfs_cred cred = {getuid(), getgid()};
    char buf[4096];
    if (strlen(path) >= sizeof(buf))
        return -ENAMETOOLONG;
    snprintf(buf, sizeof(buf), "%s", path);
    uint32_t dir = vdfs_root_ino(fs);
    char *save = NULL;
    int rc = 0;
    char *next = NULL;
    for (char *part = strtok_r(buf, "/", &save); part; part = next) {
        next = strtok_r(NULL, "/", &save);
        struct vdfs_stat st;
        if (!next || c->parents) {
            rc = vdfs_create(fs, dir, part, S_IFDIR | 0755, 0, &cred, &st);
            if (rc == -EEXIST && c->parents && (rc = vdfs_lookup(fs, dir, part, &st)) == 0 && !S_ISDIR(st.mode))
                rc = -ENOTDIR;
        } else {
            rc = vdfs_lookup(fs, dir, part, &st);
            if (rc == 0 && !S_ISDIR(st.mode))
                rc = -ENOTDIR;
        }
        if (rc)
            break;
        dir = st.ino;
    }
    if (rc)
        fprintf(stderr, "vdfsctl: mkdir %s: %s\n", path, vdfs_strerror(rc));
    return rc;
}

/* A file that another host has open for writing (a running VM's disk)
 * is not removed (EBUSY): say which host holds it. */
static int unlink_file(struct vdfs *fs, uint32_t parent, const char *name, uint32_t ino)
{
    int rc = vdfs_unlink(fs, parent, name);
    char host[256];
    if (rc == -EBUSY && vdfs_lock_holder(fs, ino, host, sizeof(host)) == 1)
        fprintf(stderr, "vdfsctl: %s is locked by host %s\n", name, host);
    return rc;
}

static int rm_tree(struct vdfs *fs, uint32_t parent, const char *name)
{
    struct vdfs_stat st;
    int rc = vdfs_lookup(fs, parent, name, &st);
    if (rc)
        return rc;
    if (!S_ISDIR(st.mode))
        return unlink_file(fs, parent, name, st.ino);
    struct ctl_names l = {0};
    rc = vdfs_readdir(fs, st.ino, 0, ctl_collect_name, &l);
    for (size_t i = 0; i < l.n; i++) {
        if (rc == 0)
            rc = rm_tree(fs, st.ino, l.names[i]);
        free(l.names[i]);
    }
    free(l.names);
    return rc ? rc : vdfs_rmdir(fs, parent, name);
}

static int cmd_rm(struct vdfs *fs, const struct ctl *c, const char *path)
{
    uint32_t parent;
    const char *name;
    int rc = ctl_parent(fs, path, &parent, &name);
    struct vdfs_stat st;
    if (rc == 0)
        rc = vdfs_lookup(fs, parent, name, &st);
    if (rc == 0) {
        if (S_ISDIR(st.mode))
            rc = c->recursive ? rm_tree(fs, parent, name) : -EISDIR;
        else
            rc = unlink_file(fs, parent, name, st.ino);
    }
    if (rc)
        fprintf(stderr, "vdfsctl: rm %s: %s%s\n", path, vdfs_strerror(rc), rc == -EISDIR ? " (use -r)" : "");
    return rc;
}

/* As mv(1): into NEW when it is a directory, else renamed to NEW (an
 * existing file there is replaced). */
static int cmd_mv(struct vdfs *fs, const char *from, const char *to)
{
    uint32_t old_parent, new_parent;
    const char *name;
    char old_name[256], new_name[256];
    int rc = ctl_parent(fs, from, &old_parent, &name);
    if (rc == 0 && strlen(name) >= sizeof(old_name))
        rc = -ENAMETOOLONG;
    if (rc) {
        fprintf(stderr, "vdfsctl: mv %s: %s\n", from, vdfs_strerror(rc));
        return rc;
    }
    snprintf(old_name, sizeof(old_name), "%s", name); /* ctl_parent reuses its buffer */
    struct vdfs_stat st;
    if (vdfs_resolve(fs, to, true, &st) == 0 && S_ISDIR(st.mode)) {
        new_parent = st.ino;
        snprintf(new_name, sizeof(new_name), "%s", old_name);
    } else if ((rc = ctl_parent(fs, to, &new_parent, &name)) == 0 && strlen(name) < sizeof(new_name)) {
        snprintf(new_name, sizeof(new_name), "%s", name);
    } else {
        rc = rc ? rc : -ENAMETOOLONG;
    }
    if (rc == 0)
        rc = vdfs_rename(fs, old_parent, old_name, new_parent, new_name, 0);
    if (rc)
        fprintf(stderr, "vdfsctl: mv %s %s: %s\n", from, to, vdfs_strerror(rc));
    return rc;
}

void ctl_human(uint64_t v, char *out, size_t n)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", d, units[u]);
}

static int cmd_usage(struct vdfs *fs, const struct ctl *c)
{
    struct vdfs_usage u;
    int rc = vdfs_usage(fs, &u);
    if (rc)
        return rc;
    const char *rt[] = {"file_blocks", "sub_blocks", "pointer_blocks", "descriptors"};
    if (c->json) {
        printf("{\"capacity\": %" PRIu64 ", \"free\": %" PRIu64 ", \"provisioned\": %" PRIu64
               ", \"allocated\": %" PRIu64 ", \"files\": %" PRIu64 ", \"directories\": %" PRIu64,
               u.capacity_bytes, u.free_bytes, u.provisioned_bytes, u.allocated_bytes, u.files, u.directories);
        for (int i = 0; i < 4; i++)
            printf(", \"%s\": {\"used\": %" PRIu64 ", \"total\": %" PRIu64 "}", rt[i], u.used[i], u.total[i]);
        printf("}\n");
        return 0;
    }
    char a[32], b[32], p[32], f[32];
    ctl_human(u.capacity_bytes, a, sizeof(a));
    ctl_human(u.free_bytes, f, sizeof(f));
    ctl_human(u.provisioned_bytes, p, sizeof(p));
    ctl_human(u.allocated_bytes, b, sizeof(b));
    printf("capacity     %14" PRIu64 "  (%s)\n", u.capacity_bytes, a);
    printf("free         %14" PRIu64 "  (%s)\n", u.free_bytes, f);
    printf("provisioned  %14" PRIu64 "  (%s)  sum of file sizes\n", u.provisioned_bytes, p);
    printf("allocated    %14" PRIu64 "  (%s)  data space handed out\n", u.allocated_bytes, b);
    if (u.provisioned_bytes)
        printf("thin ratio   %13.1f%%  allocated / provisioned\n",
               100.0 * (double)u.allocated_bytes / (double)u.provisioned_bytes);
    printf("files        %14" PRIu64 "\ndirectories  %14" PRIu64 "\n", u.files, u.directories);
    for (int i = 0; i < 4; i++)
        printf("%-15s %10" PRIu64 " of %" PRIu64 " used\n", rt[i], u.used[i], u.total[i]);
    return 0;
}

struct map_ctx {
    bool json;
    bool first;
};

static int map_extent(void *ctx, const struct vdfs_extent *e)
{
    struct map_ctx *m = ctx;
    const char *kind = e->hole ? "hole" : e->unwritten ? "unwritten" : e->physical ? "data" : "resident";
    if (m->json) {
        printf("%s{\"offset\": %" PRIu64 ", \"length\": %" PRIu64 ", \"kind\": \"%s\", \"device_offset\": %" PRIu64
               ", \"subblock\": %s}",
               m->first ? "" : ", ", e->logical, e->length, kind, e->physical, e->subblock ? "true" : "false");
    } else {
        printf("%16" PRIu64 " %16" PRIu64 "  %-9s", e->logical, e->length, kind);
        if (e->physical)
            printf(" at 0x%" PRIx64 "%s", e->physical, e->subblock ? " (sub-block)" : "");
        printf("\n");
    }
    m->first = false;
    return 0;
}

static int cmd_map(struct vdfs *fs, const struct ctl *c, const char *path)
{
    struct vdfs_stat st;
    int rc = vdfs_resolve(fs, path, false, &st);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    struct map_ctx m = {c->json, true};
    if (c->json)
        printf("{\"path\": \"%s\", \"size\": %" PRIu64 ", \"extents\": [", path, st.size);
    else
        printf("%16s %16s  kind\n", "offset", "length");
    rc = vdfs_map(fs, st.ino, map_extent, &m);
    if (c->json)
        printf("]}\n");
    return rc;
}

static int cmd_info(struct vdfs *fs, const struct ctl *c)
{
    struct vdfs_info in;
    struct vdfs_statfs sf;
    vdfs_get_info(fs, &in);
    vdfs_statfs(fs, &sf);
    if (c->json) {
        printf("{\"uuid\": \"%s\", \"label\": ", in.uuid);
        ctl_json_string(in.label);
        printf(", \"version\": %u, \"size\": %" PRIu64 ", \"block_size\": %u, \"subblock_size\": %u, "
               "\"max_hosts\": %u, \"journal_bytes\": %" PRIu64 ", \"blocks\": %" PRIu64 ", \"free_blocks\": %" PRIu64
               ", \"subblocks\": %" PRIu64 ", \"free_subblocks\": %" PRIu64 ", \"files\": %" PRIu64
               ", \"free_files\": %" PRIu64 ", \"grow_limit\": %" PRIu64 ", \"backup_offset\": %" PRIu64 "}\n",
               in.uuid[0] ? in.version : 0, in.total_bytes, in.block_size, in.subblock_size, in.max_hosts,
               (uint64_t)in.journal_blocks * VDFS_META_SIZE, sf.total_blocks, sf.free_blocks, sf.total_subblocks,
               sf.free_subblocks, sf.total_files, sf.free_files, in.grow_limit, in.backup_offset);
        return 0;
    }
    printf("uuid           %s\nlabel          %s\nformat         v%u\nsize           %" PRIu64 "\n"
           "block size     %u\nsub-block size %u\nmax hosts      %u\njournal        %" PRIu64 " bytes per host\n"
           "file blocks    %" PRIu64 " (%" PRIu64 " free)\nsub-blocks     %" PRIu64 " (%" PRIu64 " free)\n"
           "descriptors    %" PRIu64 " (%" PRIu64 " free)\ngrow limit     %" PRIu64 "\nbackup super   %" PRIu64 "\n",
           in.uuid, in.label, in.version, in.total_bytes, in.block_size, in.subblock_size, in.max_hosts,
           (uint64_t)in.journal_blocks * VDFS_META_SIZE, sf.total_blocks, sf.free_blocks, sf.total_subblocks,
           sf.free_subblocks, sf.total_files, sf.free_files, in.grow_limit, in.backup_offset);
    return 0;
}

/* hosts and locks read the raw regions: they work even while the
 * datastore is mounted elsewhere. */
static int open_raw(const char *image, struct vdfs_dev **dev, struct vdfs_super *sb)
{
    int rc = vdfs_dev_open(image, VDFS_DEV_RDONLY, dev);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: %s\n", image, vdfs_strerror(rc));
        return rc;
    }
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    rc = buf ? vdfs_dev_read(*dev, buf, VDFS_META_SIZE, 0) : -ENOMEM;
    if (rc == 0)
        rc = vdfs_super_decode(buf, 0, sb);
    vdfs_aligned_free(buf);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: not a valid vdfs datastore (%s)\n", image, vdfs_strerror(rc));
        vdfs_dev_close(*dev);
    }
    return rc;
}

static int cmd_hosts(const struct ctl *c)
{
    struct vdfs_dev *dev;
    struct vdfs_super sb;
    int rc = open_raw(c->image, &dev, &sb);
    if (rc)
        return rc;
    uint8_t *buf = vdfs_aligned_alloc(4096);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    const char *states[] = {"free", "live", "replaying"};
    bool first = true;
    if (c->json)
        printf("[");
    else
        printf("%-4s %-9s %-4s %-36s %-20s %8s %10s %12s\n", "slot", "state", "mode", "host uuid", "hostname", "pid",
               "gen", "age");
    for (uint32_t slot = 0; slot < sb.max_hosts && rc == 0; slot++) {
        struct vdfs_heartbeat hb;
        uint64_t addr = vdfs_heartbeat_addr(&sb, slot);
        rc = vdfs_dev_read_atomic(dev, buf, VDFS_SECTOR_SIZE, addr);
        if (rc)
            break;
        if (vdfs_heartbeat_decode(buf, addr, &hb) != 0) {
            if (c->json)
                printf("%s{\"slot\": %u, \"state\": \"corrupt\"}", first ? "" : ", ", slot);
            else
                printf("%-4u corrupt   (bad checksum: run fsck.vdfs)\n", slot);
            first = false;
            continue;
        }
        if (hb.state == VDFS_HB_FREE && !c->json)
            continue;
        char uuid[37];
        vdfs_uuid_format(hb.host_uuid, uuid);
        double age = hb.stamp_ns && now_ns > hb.stamp_ns ? (double)(now_ns - hb.stamp_ns) / 1e9 : 0;
        /* The age comes from the writer's wall clock, so it is a report,
         * not the judgement hosts make (they time silences on their own
         * monotonic clocks); a slot older than its timeout is stale. */
        uint32_t timeout_ms = hb.timeout_ms ? hb.timeout_ms : sb.hb_timeout_ms;
        bool stale = hb.state != VDFS_HB_FREE && age * 1000.0 > (double)timeout_ms;
        int local = vdfs_dev_probe_lock(dev, vdfs_liveness_lock_offset(slot), 1);
        const char *state = hb.state <= 2 ? states[hb.state] : "?";
        bool readonly = hb.state != VDFS_HB_FREE && (hb.flags & VDFS_HB_FLAG_READONLY);
        if (hb.state == VDFS_HB_LIVE && stale)
            state = "stale";
        if (c->json) {
            printf("%s{\"slot\": %u, \"state\": \"%s\", \"host_uuid\": \"%s\", \"hostname\": ", first ? "" : ", ",
                   slot, state, uuid);
            ctl_json_string(hb.hostname);
            printf(", \"pid\": %u, \"hb_gen\": %" PRIu64 ", \"counter\": %" PRIu64 ", \"age_seconds\": %.3f, "
                   "\"age_ms\": %" PRIu64 ", \"timeout_ms\": %u, \"live\": %s, \"stale\": %s, "
                   "\"local_process\": %s, \"readonly\": %s}",
                   hb.pid, hb.hb_gen, hb.counter, hb.state == VDFS_HB_FREE ? 0.0 : age,
                   hb.state == VDFS_HB_FREE ? 0 : (uint64_t)(age * 1000.0), timeout_ms,
                   hb.state == VDFS_HB_LIVE && !stale ? "true" : "false", stale ? "true" : "false",
                   local == 1 ? "true" : "false", readonly ? "true" : "false");
        } else {
            printf("%-4u %-9s %-4s %-36s %-20s %8u %10" PRIu64 " %11.1fs\n", slot, state, readonly ? "ro" : "rw", uuid,
                   hb.hostname, hb.pid, hb.hb_gen, age);
        }
        first = false;
    }
    if (c->json)
        printf("]\n");
    vdfs_aligned_free(buf);
    vdfs_dev_close(dev);
    return rc;
}

/* The host name in a slot, for showing who holds a lock. */
static void slot_name(struct vdfs_dev *dev, const struct vdfs_super *sb, uint32_t slot, char *out, size_t len)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    struct vdfs_heartbeat hb;
    uint64_t addr = vdfs_heartbeat_addr(sb, slot);
    if (buf && slot < sb->max_hosts && vdfs_dev_read_atomic(dev, buf, VDFS_SECTOR_SIZE, addr) == 0 &&
        vdfs_heartbeat_decode(buf, addr, &hb) == 0 && hb.state != VDFS_HB_FREE)
        snprintf(out, len, "%s", hb.hostname);
    vdfs_aligned_free(buf);
}

static int cmd_locks(const struct ctl *c)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    struct vdfs_dev *dev;
    struct vdfs_super sb;
    int rc = open_raw(c->image, &dev, &sb);
    if (rc)
        return rc;
    const char *modes[] = {"free", "exclusive", "read-shared", "multi-writer"};
    size_t chunk = 1 << 20;
    uint8_t *buf = vdfs_aligned_alloc(chunk);
    bool first = true;
    uint64_t shown = 0;
    if (c->json)
        printf("[");
    else
        printf("%-10s %-16s %-12s %-6s %-20s %9s %s\n", "lock", "object", "mode", "owner", "owner host", "age",
               "holders");
    uint64_t start = sb.lock_offset, end = sb.lock_offset + sb.lock_count * VDFS_SECTOR_SIZE;
    for (uint64_t off = start; off < end && rc == 0;) {
        /* Skip never-used (all-zero, usually sparse) parts of the area. */
        off_t data = lseek(vdfs_dev_fd(dev), (off_t)off, SEEK_DATA);
        if (data < 0)
            break;
        if ((uint64_t)data > off)
            off = (uint64_t)data / VDFS_SECTOR_SIZE * VDFS_SECTOR_SIZE;
        if (off >= end)
            break;
        size_t n = end - off < chunk ? (size_t)(end - off) : chunk;
        rc = vdfs_dev_read(dev, buf, n, off);
        for (size_t i = 0; rc == 0 && i < n; i += VDFS_SECTOR_SIZE) {
            struct vdfs_lock_rec l;
            uint64_t addr = off + i;
            if (vdfs_lock_decode(buf + i, addr, &l) != 0) {
                if (!c->json)
                    printf("%-10" PRIu64 " corrupt lock record at 0x%" PRIx64 "\n",
                           (addr - start) / VDFS_SECTOR_SIZE, addr);
                continue;
            }
            if (l.mode == VDFS_LOCK_FREE)
                continue;
            uint64_t index = (addr - start) / VDFS_SECTOR_SIZE;
            char object[40];
            if (index == sb.fd_lock_index)
                snprintf(object, sizeof(object), "volume-metadata");
            else if (index > sb.fd_lock_index)
                snprintf(object, sizeof(object), "file %" PRIu64, index - sb.fd_lock_index);
            else
                snprintf(object, sizeof(object), "cluster %" PRIu64, index);
            char owner[VDFS_HOSTNAME_SIZE + 1] = "";
            slot_name(dev, &sb, l.mode == VDFS_LOCK_EXCLUSIVE ? l.owner_slot : (l.nholders ? l.holders[0].slot : VDFS_NO_SLOT),
                      owner, sizeof(owner));
            double age = l.acquired_ns && now_ns > l.acquired_ns ? (double)(now_ns - l.acquired_ns) / 1e9 : 0;
            if (c->json) {
                printf("%s{\"lock\": %" PRIu64 ", \"object\": \"%s\", \"mode\": \"%s\", \"owner_slot\": %d, "
                       "\"owner_host\": ",
                       first ? "" : ", ", index, object, modes[l.mode],
                       l.owner_slot == VDFS_NO_SLOT ? -1 : (int)l.owner_slot);
                ctl_json_string(owner);
                printf(", \"age_seconds\": %.3f, \"version\": %" PRIu64 ", \"waiters\": [", age, l.version);
                bool w_first = true;
                for (uint32_t s = 0; s < 64; s++)
                    if (l.waiters >> s & 1) {
                        printf("%s%u", w_first ? "" : ", ", s);
                        w_first = false;
                    }
                printf("], \"holders\": [");
                for (uint32_t h = 0; h < l.nholders; h++)
                    printf("%s%u", h ? ", " : "", l.holders[h].slot);
                printf("]}");
            } else {
                printf("%-10" PRIu64 " %-16s %-12s %-6d %-20s %8.1fs ", index, object, modes[l.mode],
                       l.owner_slot == VDFS_NO_SLOT ? -1 : (int)l.owner_slot, owner, age);
                for (uint32_t h = 0; h < l.nholders; h++)
                    printf("%s%u", h ? "," : "", l.holders[h].slot);
                printf("\n");
            }
            first = false;
            shown++;
        }
        off += n;
    }
    if (c->json)
        printf("]\n");
    else if (!shown)
        printf("(no lock is held)\n");
    vdfs_aligned_free(buf);
    vdfs_dev_close(dev);
    return rc;
}

static int mount_for(const char *image, const char *host_uuid, bool write, struct vdfs **fs)
{
    /* Each run joins the cluster as a host of its own (its own slot, the
     * metadata lock taken as needed), so it works beside mounted hosts,
     * including a vdfs-fuse mount on this machine that uses the machine's
     * persistent host UUID.  --host-uuid or VDFS_HOST_UUID names it.
     * Commands that only read join as a read-only host: they see what
     * the other hosts have changed and can write no metadata.  On an
     * image this user may only read, or on a read-only file system, the
     * library reads without joining (as debugfs reads such an image). */
    struct vdfs_mount_opts o = {.readonly = !write, .commit_ms = 60000, .host_uuid = host_uuid,
                                .host_name = "vdfsctl", .own_host = true};
    int rc = vdfs_mount(image, &o, fs);
    if ((rc == -EBUSY || rc == -EUSERS) && !write && !o.no_host) {
        /* Its host UUID is live already (--host-uuid), or every slot is
         * taken: read without joining, which is safe but
         * may show data a few seconds old. */
        o.no_host = true;
        rc = vdfs_mount(image, &o, fs);
    }
    if (rc)
        fprintf(stderr, "vdfsctl: cannot open datastore %s: %s\n", image, vdfs_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    struct ctl c = {0};
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {"recursive", no_argument, NULL, 'r'},
        {"parents", no_argument, NULL, 'p'}, {"long", no_argument, NULL, 'l'}, {"quiet", no_argument, NULL, 'q'},
        {"host-uuid", required_argument, NULL, 'U'}, {"thick", no_argument, NULL, 'T'}, {NULL, 0, NULL, 0}};
    const char *host_uuid = NULL;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    const char *cmd = argv[1];
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "jhrplqR", longopts, NULL)) != -1) {
        switch (opt) {
        case 'j': c.json = true; break;
        case 'r':
        case 'R': c.recursive = true; break;
        case 'p': c.parents = true; break;
        case 'l': c.long_format = true; break;
        case 'q': c.quiet = true; break;
        case 'T': c.thick = true; break;
        case 'U': {
            uint8_t parsed[16];
            if (vdfs_uuid_parse(optarg, parsed) != 0) {
                fprintf(stderr, "vdfsctl: --host-uuid needs a 36-character UUID, got '%s'\n", optarg);
                return 2;
            }
            host_uuid = optarg;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    struct {
        const char *name;
        int min, max;
        bool write;
    } table[] = {{"info", 0, 0, false},   {"ls", 0, 1, false},    {"stat", 1, 1, false},  {"get", 1, 2, false},
                 {"put", 2, 2, true},     {"rm", 1, 1, true},     {"mkdir", 1, 1, true},  {"usage", 0, 0, false},
                 {"map", 1, 1, false},    {"digest", 1, 1, false}, {"hosts", 0, 0, false}, {"locks", 0, 0, false},
                 {"mv", 2, 2, true},      {"cp", 2, 2, true},     {"truncate", 2, 2, true},
                 {"grow", 0, 1, true},    {"label", 0, 1, true}};
    int which = -1;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (!strcmp(cmd, table[i].name))
            which = (int)i;
    if (which < 0) {
        fprintf(stderr, "vdfsctl: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    if (nargs < 1 + table[which].min || nargs > 1 + table[which].max) {
        fprintf(stderr, "vdfsctl: wrong number of arguments for '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    c.image = args[0];
    uint64_t size = 0;
    if (!strcmp(cmd, "truncate") && ctl_parse_size(args[2], &size)) {
        fprintf(stderr, "vdfsctl: truncate: bad size '%s' (bytes, or a number with K, M, G, T or P)\n", args[2]);
        return 2;
    }
    if (!strcmp(cmd, "grow") && nargs > 1 && (ctl_parse_size(args[1], &size) || size == 0)) {
        fprintf(stderr, "vdfsctl: grow: bad size '%s' (bytes, or a number with K, M, G, T or P)\n", args[1]);
        return 2;
    }
    if (c.thick && strcmp(cmd, "truncate")) {
        fprintf(stderr, "vdfsctl: --thick applies to truncate only\n");
        return 2;
    }
    if (!strcmp(cmd, "hosts"))
        return cmd_hosts(&c) ? 1 : 0;
    if (!strcmp(cmd, "locks"))
        return cmd_locks(&c) ? 1 : 0;
    /* label without LABEL only reads. */
    bool write = table[which].write && !(!strcmp(cmd, "label") && nargs == 1);
    struct vdfs *fs;
    if (mount_for(c.image, host_uuid, write, &fs))
        return 1;
    int rc = 0;
    if (!strcmp(cmd, "info"))
        rc = cmd_info(fs, &c);
    else if (!strcmp(cmd, "ls"))
        rc = cmd_ls(fs, &c, nargs > 1 ? args[1] : "/");
    else if (!strcmp(cmd, "stat"))
        rc = cmd_stat(fs, &c, args[1]);
    else if (!strcmp(cmd, "get"))
        rc = ctl_get(fs, &c, args[1], nargs > 2 ? args[2] : "-");
    else if (!strcmp(cmd, "put"))
        rc = ctl_put(fs, &c, args[1], args[2]);
    else if (!strcmp(cmd, "rm"))
        rc = cmd_rm(fs, &c, args[1]);
    else if (!strcmp(cmd, "mkdir"))
        rc = cmd_mkdir(fs, &c, args[1]);
    else if (!strcmp(cmd, "mv"))
        rc = cmd_mv(fs, args[1], args[2]);
    else if (!strcmp(cmd, "cp"))
        rc = ctl_cp(fs, &c, args[1], args[2]);
    else if (!strcmp(cmd, "truncate"))
        rc = ctl_truncate(fs, &c, args[1], size);
    else if (!strcmp(cmd, "grow"))
        rc = ctl_grow(fs, &c, size);
    else if (!strcmp(cmd, "label"))
        rc = ctl_label(fs, &c, nargs > 1 ? args[1] : NULL);
    else if (!strcmp(cmd, "usage"))
        rc = cmd_usage(fs, &c);
    else if (!strcmp(cmd, "map"))
        rc = cmd_map(fs, &c, args[1]);
    else if (!strcmp(cmd, "digest"))
        rc = ctl_digest(fs, &c, args[1]);
    int urc = vdfs_unmount(fs);
    if (urc && !rc) {
        fprintf(stderr, "vdfsctl: unmount: %s\n", vdfs_strerror(urc));
        rc = urc;
    }
    return rc ? 1 : 0;
}
