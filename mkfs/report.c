/* The summary mkfs prints: human text, or JSON for scripts. */
#include <stdio.h>

#include "mkfs.h"
#include "vdfs.h"

static const char *const region_names[VDFS_RT_COUNT] = {"file_blocks", "subblocks", "pointer_blocks",
                                                        "descriptors"};
static const char *const region_titles[VDFS_RT_COUNT] = {"file blocks", "sub-blocks", "pointer blocks",
                                                         "descriptors"};

static void human_size(uint64_t bytes, char *out, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

void mkfs_report_text(const char *path, const struct vdfs_super *sb, bool dry_run, const struct mkfs_stats *st)
{
    char uuid[37], total[32], block[32], sub[32], journal[32], written[32], grow[32];
    vdfs_uuid_format(sb->uuid, uuid);
    human_size(sb->total_bytes, total, sizeof(total));
    human_size(sb->block_size, block, sizeof(block));
    human_size(sb->subblock_size, sub, sizeof(sub));
    human_size((uint64_t)sb->journal_blocks * VDFS_META_SIZE, journal, sizeof(journal));
    printf("%s vdfs datastore on %s%s\n", dry_run ? "Would create" : "Created", path,
           dry_run ? " (dry run: nothing written)" : "");
    printf("  uuid            %s\n", uuid);
    printf("  label           %s\n", sb->label[0] ? sb->label : "(none)");
    printf("  size            %llu bytes (%s)\n", (unsigned long long)sb->total_bytes, total);
    printf("  block size      %s, sub-block size %s\n", block, sub);
    for (unsigned r = 0; r < VDFS_RT_COUNT; r++)
        printf("  %-15s %llu in %u clusters\n", region_titles[r], (unsigned long long)sb->region[r].count,
               sb->region[r].clusters);
    printf("  max hosts       %u, journal %s each\n", sb->max_hosts, journal);
    human_size(vdfs_grow_limit(sb), grow, sizeof(grow));
    printf("  grow limit      %llu bytes (%s)\n", (unsigned long long)vdfs_grow_limit(sb), grow);
    if (!dry_run) {
        human_size(st->bytes_written + st->bytes_zeroed, written, sizeof(written));
        printf("  metadata        %s written in %llu objects\n", written, (unsigned long long)st->objects);
    }
}

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

void mkfs_report_json(const char *path, const struct vdfs_super *sb, bool dry_run, const struct mkfs_stats *st,
                      double seconds)
{
    char uuid[37];
    vdfs_uuid_format(sb->uuid, uuid);
    printf("{\"device\": ");
    json_string(path);
    printf(", \"dry_run\": %s, \"uuid\": \"%s\", \"label\": ", dry_run ? "true" : "false", uuid);
    json_string(sb->label);
    printf(", \"total_bytes\": %llu, \"block_size\": %u, \"subblock_size\": %u, \"max_hosts\": %u,"
           " \"journal_bytes_per_host\": %llu, \"backup_offset\": %llu, \"grow_limit_bytes\": %llu,",
           (unsigned long long)sb->total_bytes, sb->block_size, sb->subblock_size, sb->max_hosts,
           (unsigned long long)sb->journal_blocks * VDFS_META_SIZE, (unsigned long long)sb->backup_offset,
           (unsigned long long)vdfs_grow_limit(sb));
    for (unsigned r = 0; r < VDFS_RT_COUNT; r++)
        printf(" \"%s\": {\"count\": %llu, \"clusters\": %u, \"per_cluster\": %u, \"start\": %llu,"
               " \"bitmap_offset\": %llu},",
               region_names[r], (unsigned long long)sb->region[r].count, sb->region[r].clusters,
               sb->region[r].per_cluster, (unsigned long long)sb->region[r].start,
               (unsigned long long)sb->region[r].bitmap_offset);
    printf(" \"bytes_written\": %llu, \"bytes_zeroed\": %llu, \"objects\": %llu, \"seconds\": %.6f}\n",
           (unsigned long long)st->bytes_written, (unsigned long long)st->bytes_zeroed,
           (unsigned long long)st->objects, seconds);
}
