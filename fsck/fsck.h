/* fsck.vdfs internals: the state shared by the passes.
 *
 * The checker keeps, for every resource region, the bitmap as found on the
 * device (modified in memory by fixes) and a reference bitmap built from
 * what the descriptors actually point at.  Every fix updates the in-memory
 * model the same way with or without -y, so a -n run reports exactly what a
 * -y run would repair; only -y writes.
 */
#ifndef VDFS_FSCK_H
#define VDFS_FSCK_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "format.h"

/* fsck(8) exit codes, OR-ed together. */
enum {
    FSCK_EXIT_OK = 0,
    FSCK_EXIT_CORRECTED = 1,
    FSCK_EXIT_REBOOT = 2,
    FSCK_EXIT_UNCORRECTED = 4,
    FSCK_EXIT_OPERATIONAL = 8,
    FSCK_EXIT_USAGE = 16,
    FSCK_EXIT_CANCELLED = 32,
};

enum fsck_pass_id {
    FSCK_PASS_SUPER = 0,
    FSCK_PASS_HOSTS = 1,
    FSCK_PASS_JOURNAL = 2,
    FSCK_PASS_FILES = 3,
    FSCK_PASS_DIRS = 4,
    FSCK_PASS_LINKS = 5,
    FSCK_PASS_BITMAPS = 6,
    FSCK_PASS_COUNT = 7,
};

struct fsck_options {
    bool fix;        /* -y / -p */
    bool verbose;    /* -v */
    bool json;       /* --json */
    bool progress;   /* stdout is a terminal */
    bool force;      /* -f: accepted; every run is a full check */
    uint64_t backup_offset; /* -B: where to look for the backup superblock; 0 = search */
};

struct fsck_problem {
    int pass;
    const char *code;   /* stable machine-readable name */
    char *object;       /* "ino 12", "FB cluster 3", "slot 0", ... */
    uint64_t address;   /* device byte address, 0 if none */
    char *message;
    bool fixed;
};

/* Per-cluster state of one region's bitmap. */
struct fsck_cluster {
    bool bad;      /* checksum or header wrong on the device */
    bool dirty;    /* in-memory bits differ from the device; rewrite in pass 6 */
    bool stray;    /* bits set past the cluster's end on the device */
    uint32_t grown_from; /* a file-block bitmap from before a grow: the count it covers */
    uint32_t disk_free;
    uint32_t affinity;
    uint64_t gen;
};

struct fsck_region {
    uint64_t count;
    uint8_t *bits;   /* allocation bitmap: as found, then as fixed */
    uint8_t *disk;   /* allocation bitmap exactly as read */
    uint8_t *ref;    /* resources something points at */
    uint32_t *owner; /* FB/SB/PB: the ino that references it (first one) */
    struct fsck_cluster *clusters;
};

enum fsck_ino_state {
    INO_FREE = 0,  /* bitmap bit clear */
    INO_OK = 1,    /* allocated, descriptor verified */
    INO_BAD = 2,   /* allocated but unusable: freed by fsck */
};

enum {
    INO_REACHED = 1u << 0,   /* reachable from the root */
    INO_HAS_PARENT = 1u << 1, /* directory: a kept entry names it */
    INO_RECONNECTED = 1u << 2, /* directory moved to lost+found by pass 5 */
    INO_CHASE = 1u << 3,       /* pass 5 scratch: on the current parent chain */
};

struct fsck_ino {
    uint8_t state;
    uint8_t dtype;   /* DT_* from the descriptor's mode */
    uint16_t flags;
    uint32_t nlink;  /* as stored */
    uint32_t links;  /* entries naming it (non-directories) */
    uint32_t parent; /* directory: the kept parent */
    uint32_t disk_parent; /* the parent field as stored */
    uint32_t subdirs; /* directory: kept entries naming directories */
};

struct fsck_dir_edge {
    uint32_t dir;
    uint32_t target;
    uint32_t block;
};

struct fsck_dup {
    uint8_t rtype;
    uint32_t ino;
    uint32_t container; /* PB index holding the pointer, or UINT32_MAX for the descriptor's slots */
    uint32_t entry;     /* slot or PB entry */
    uint64_t index;     /* the shared resource */
};

struct fsck {
    const char *path;
    struct fsck_options opt;
    struct vdfs_dev *dev;
    struct vdfs_super sb;
    uint64_t dev_size;
    bool have_sb;
    /* Damaged superblock copies pass 0 found (primary_bad: the backup at
     * backup_found_at is in use): reported and rewritten only once pass 1
     * has found no live host (fsck_super_repair). */
    bool primary_bad, backup_bad;
    bool backup_stale; /* a backup from before a grow or relabel */
    uint64_t backup_stale_bytes; /* the size it still gives */
    uint64_t backup_found_at;
    volatile sig_atomic_t *cancel;

    struct fsck_region rs[VDFS_RT_COUNT];
    struct fsck_ino *inos;
    uint32_t nino;

    struct fsck_dir_edge *edges;
    size_t nedges, edges_cap;
    struct fsck_dup *dups;
    size_t ndups, dups_cap;

    struct fsck_problem *problems;
    size_t nproblems, problems_cap;
    int pass;
    bool pass_done[FSCK_PASS_COUNT];
    bool operational_error;
    bool cancelled;
    bool journal_pending; /* -n with a journal that needs replay: later passes see old metadata */

    /* summary */
    uint64_t files, directories, symlinks, others;
};

/* ---- report.c ----------------------------------------------------------- */
/* Records a problem.  Returns true when the caller must apply the fix to
 * the device (-y), false when it only updates the in-memory model (-n). */
__attribute__((format(printf, 6, 7)))
bool fsck_problem(struct fsck *f, const char *code, const char *object, uint64_t address, bool fixable,
                  const char *fmt, ...);
/* Marks the most recent problem as not fixed (its repair failed). */
void fsck_problem_unfixed(struct fsck *f);
__attribute__((format(printf, 2, 3)))
void fsck_error(struct fsck *f, const char *fmt, ...);
__attribute__((format(printf, 2, 3)))
void fsck_info(struct fsck *f, const char *fmt, ...);
void fsck_pass_begin(struct fsck *f, int pass);
void fsck_progress(struct fsck *f, uint64_t done, uint64_t total);
int fsck_exit_code(const struct fsck *f);
void fsck_report_json(const struct fsck *f, int exit_code);
void fsck_report_summary(const struct fsck *f, int exit_code);
const char *fsck_pass_name(int pass);
bool fsck_cancelled(struct fsck *f);

/* ---- io.c --------------------------------------------------------------- */
int fsck_read(struct fsck *f, void *buf, size_t len, uint64_t off);
/* Writes (only with -y; a no-op returning 0 otherwise).  A failed write is
 * an operational error. */
int fsck_write(struct fsck *f, const void *buf, size_t len, uint64_t off);
bool fsck_all_zero(const void *buf, size_t len);

int fsck_fd_load(struct fsck *f, uint32_t ino, struct vdfs_fd *fd);
/* Seals with gen + 1 and writes. */
int fsck_fd_store(struct fsck *f, struct vdfs_fd *fd);
int fsck_pb_load(struct fsck *f, uint64_t index, struct vdfs_pb *pb);
int fsck_pb_store(struct fsck *f, uint64_t index, struct vdfs_pb *pb);
int fsck_dirblock_store(struct fsck *f, uint64_t addr, struct vdfs_dirblock *d);

/* Device address of byte `logical` of a file through its map: 0 and *addr,
 * 1 for a hole (or an unusable pointer), negative errno on I/O errors. */
int fsck_map_lookup(struct fsck *f, const struct vdfs_fd *fd, uint64_t logical, uint64_t *addr);

bool fsck_bit(const uint8_t *bits, uint64_t i);
void fsck_set_bit(uint8_t *bits, uint64_t i);
void fsck_clear_bit(uint8_t *bits, uint64_t i);
bool fsck_ptr_in_range(const struct fsck *f, unsigned rtype, uint32_t p);
/* Claims a resource that nothing references and the bitmap marks free;
 * returns false when the region is full. */
bool fsck_alloc(struct fsck *f, unsigned rtype, uint32_t owner, uint64_t *index);
void fsck_ref_release(struct fsck *f, unsigned rtype, uint64_t index);
uint32_t fsck_dtype_of_mode(uint32_t mode);
const char *fsck_rtype_name(unsigned rtype);

/* ---- dirent.c ----------------------------------------------------------- */
/* Appends an entry to directory `dir`, growing it when every block is full. */
int fsck_dir_add(struct fsck *f, uint32_t dir, const char *name, uint32_t ino, uint8_t type);
/* Gives directory block `block` a place in the map (sub-block or direct
 * file block), updating fd in memory only. */
int fsck_dir_map_block(struct fsck *f, struct vdfs_fd *fd, uint32_t block);
/* Makes a fresh empty directory descriptor in slot `ino`. */
int fsck_make_dir(struct fsck *f, uint32_t ino, uint32_t parent, uint32_t perm);

/* ---- passes ------------------------------------------------------------- */
int fsck_pass_super(struct fsck *f);
/* Reports, and with -y rewrites, the damaged superblock copies pass 0
 * found. */
void fsck_super_repair(struct fsck *f);
int fsck_pass_hosts(struct fsck *f);
int fsck_pass_journal(struct fsck *f);
int fsck_load_bitmaps(struct fsck *f);
int fsck_pass_files(struct fsck *f);
int fsck_pass_dirs(struct fsck *f);
/* Pass 4 helpers pass 5 reuses. */
void fsck_reach_from(struct fsck *f, uint32_t dir);
int fsck_remove_entry(struct fsck *f, uint32_t dir, uint32_t block, uint32_t target);
int fsck_pass_links(struct fsck *f);
int fsck_pass_bitmaps(struct fsck *f);

/* ---- check.c ------------------------------------------------------------ */
/* Runs every pass on an opened context; returns the fsck(8) exit code. */
int fsck_run(struct fsck *f);
void fsck_free(struct fsck *f);

#endif
