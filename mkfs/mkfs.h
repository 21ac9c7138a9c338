/* mkfs.vdfs internals: one header for the few files of the tool. */
#ifndef VDFS_MKFS_H
#define VDFS_MKFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "device.h"
#include "format.h"

#define MKFS_PROG "mkfs.vdfs"

/* ---- options.c: the command line ---------------------------------------- */

#define MIN_JOURNAL_BYTES (1u << 20)

struct mkfs_options {
    const char *path;
    uint64_t size; /* 0: use the file's or device's size */
    char label[VDFS_LABEL_SIZE + 1];
    uint8_t uuid[VDFS_UUID_SIZE];
    uint32_t block_size;
    uint32_t subblock_size;
    uint32_t max_hosts;
    uint32_t journal_blocks;
    bool journal_given; /* -J: else a device too small for the default gets a smaller journal */
    uint64_t fd_count; /* 0: automatic */
    uint64_t grow_limit; /* -G: 0 means VDFS_DEFAULT_GROWTH times the size */
    bool force;
    bool dry_run;
    bool quiet;
    bool json;
};

enum mkfs_parse_result {
    MKFS_PARSE_OK = 0,
    MKFS_PARSE_ERROR = 1, /* message and usage already printed */
    MKFS_PARSE_HELP = 2,  /* --help printed */
};

enum mkfs_parse_result mkfs_parse_options(int argc, char **argv, struct mkfs_options *o);
/* "16T", "512M", "4096", "1GiB": binary suffixes K M G T P E.  0 or -EINVAL / -ERANGE. */
int mkfs_parse_size(const char *text, uint64_t *out);

/* ---- uuid.c ------------------------------------------------------------- */

/* Accepts a 36-character UUID, "random" (version 4) or "time" (version 1
 * with a random node id).  0 or -EINVAL. */
int mkfs_uuid_from_arg(const char *arg, uint8_t uuid[VDFS_UUID_SIZE]);
/* Fills buf from getrandom(2); 0 or -errno. */
int mkfs_random_bytes(void *buf, size_t len);

/* ---- inuse.c: is the target mounted or held? ----------------------------- */

/* Returns 1 and a description in `why` when the device (or the loop device
 * backed by the image) is mounted, used as swap or held by another driver;
 * 0 when not; -errno when the check itself failed. */
int mkfs_check_in_use(const char *path, const struct stat *st, char *why, size_t why_len);
/* For block devices: opens with O_EXCL so that nobody can mount the device
 * while mkfs writes it.  Returns the descriptor (kept until exit), -1 for
 * other file types, or -errno (-EBUSY: held by someone). */
int mkfs_claim_blockdev(const char *path, const struct stat *st);

/* ---- probe.c: what the device holds now ---------------------------------- */

struct mkfs_probe {
    const char *fs_name;   /* a filesystem or partition table found, or NULL */
    uint64_t fs_offset;    /* where its magic was found */
    bool have_vdfs;        /* a vdfs superblock (primary or backup) decoded */
    struct vdfs_super vdfs; /* that superblock when have_vdfs */
    uint64_t wipe[8];      /* 4 KiB-aligned blocks that hold old superblocks */
    unsigned nwipe;
    bool live_host;        /* a heartbeat slot is in use and its liveness lock is held */
    uint32_t live_slot;
    uint32_t live_pid;
    char live_hostname[VDFS_HOSTNAME_SIZE + 1];
};

/* Looks for known signatures and for running vdfs hosts.  `planned` is the
 * superblock mkfs is about to write (its backup_offset is searched too).
 * 0 or -errno (a read failed). */
int mkfs_probe_device(struct vdfs_dev *dev, const struct vdfs_super *planned, struct mkfs_probe *p);

/* ---- plan.c: the geometry of the new datastore --------------------------- */

/* Fills *sb from the options for a device of `total` bytes.  0; -ENOSPC
 * with *min_bytes set to the smallest device that would fit; -EINVAL when
 * the layout refuses the parameters. */
int mkfs_plan(const struct mkfs_options *o, uint64_t total, uint64_t now_ns, struct vdfs_super *sb,
              uint64_t *min_bytes);

/* ---- write.c: writing the new datastore ----------------------------------- */

struct mkfs_stats {
    uint64_t bytes_written; /* bytes passed to write */
    uint64_t bytes_zeroed;  /* bytes actually zeroed (ranges that held data) */
    uint64_t objects;       /* metadata objects written */
};

/* Writes the new datastore described by `sb`.  `wipe` lists old superblock
 * blocks to destroy first, so that a crash part-way leaves no valid
 * superblock.  0 or -errno. */
int mkfs_write(struct vdfs_dev *dev, const struct vdfs_super *sb, const uint64_t *wipe, unsigned nwipe,
               struct mkfs_stats *stats);

/* ---- report.c ------------------------------------------------------------ */

void mkfs_report_text(const char *path, const struct vdfs_super *sb, bool dry_run, const struct mkfs_stats *st);
void mkfs_report_json(const char *path, const struct vdfs_super *sb, bool dry_run, const struct mkfs_stats *st,
                      double seconds);

#endif
