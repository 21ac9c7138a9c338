/* On-disk format v1 of a vdfs datastore.
 *
 * Every structure that reaches the device is declared here twice: once as
 * the on-disk image (explicit little-endian fixed-width fields, size fixed
 * by static_assert) and once as the native struct the code works with.
 * format.c converts between the two; nothing ever casts a raw buffer to a
 * struct.  docs/format.md describes the same layout in prose.
 */
#ifndef VDFS_FORMAT_H
#define VDFS_FORMAT_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Explicit little-endian field types.  They are byte arrays so that the
 * compiler refuses arithmetic on them: a field must go through the codec. */
typedef struct { uint8_t b[2]; } vdfs_le16;
typedef struct { uint8_t b[4]; } vdfs_le32;
typedef struct { uint8_t b[8]; } vdfs_le64;
static_assert(sizeof(vdfs_le16) == 2, "le16");
static_assert(sizeof(vdfs_le32) == 4, "le32");
static_assert(sizeof(vdfs_le64) == 8, "le64");

uint16_t vdfs_get16(vdfs_le16 v);
uint32_t vdfs_get32(vdfs_le32 v);
uint64_t vdfs_get64(vdfs_le64 v);
vdfs_le16 vdfs_put16(uint16_t v);
vdfs_le32 vdfs_put32(uint32_t v);
vdfs_le64 vdfs_put64(uint64_t v);

/* ---- constants ---------------------------------------------------------- */

#define VDFS_MAGIC            0x53464456u /* "VDFS" read as little-endian */
#define VDFS_FORMAT_VERSION   1u
#define VDFS_META_SIZE        4096u       /* every metadata object */
#define VDFS_SECTOR_SIZE      512u        /* heartbeat slots and lock records */
#define VDFS_SUPER_OFFSET     0u
#define VDFS_HEARTBEAT_OFFSET 65536u
#define VDFS_NAME_MAX         255u
#define VDFS_UUID_SIZE        16u
#define VDFS_LABEL_SIZE       64u
#define VDFS_HOSTNAME_SIZE    64u

#define VDFS_DEFAULT_BLOCK_SIZE    (1u << 20)
#define VDFS_DEFAULT_SUBBLOCK_SIZE (64u << 10)
#define VDFS_DEFAULT_MAX_HOSTS     32u
#define VDFS_DEFAULT_GROWTH        4u  /* vdfs_layout leaves room to grow to 4x */
#define VDFS_MAX_HOSTS_LIMIT       64u
#define VDFS_DEFAULT_JOURNAL_BLOCKS 4096u /* 16 MiB per host */
#define VDFS_RESOURCES_PER_CLUSTER 8192u

/* Feature masks.  An unknown incompat bit refuses the mount; an unknown
 * ro_compat bit allows a read-only mount only. */
#define VDFS_FEATURE_COMPAT_SUPPORTED    0u
#define VDFS_FEATURE_INCOMPAT_SUPPORTED  0u
#define VDFS_FEATURE_RO_COMPAT_SUPPORTED 0u

/* Kinds of self-describing objects (the `kind` field of the header). */
enum vdfs_kind {
    VDFS_KIND_SUPER = 1,
    VDFS_KIND_HEARTBEAT = 2,
    VDFS_KIND_LOCK = 3,
    VDFS_KIND_BITMAP = 4,
    VDFS_KIND_FD = 5,
    VDFS_KIND_PB = 6,
    VDFS_KIND_DIR = 7,
    VDFS_KIND_JHEADER = 8,
    VDFS_KIND_JDESC = 9,
};

/* The four resource types, each grouped into resource clusters. */
enum vdfs_rtype {
    VDFS_RT_FB = 0, /* file blocks (data, default 1 MiB) */
    VDFS_RT_SB = 1, /* sub-blocks (small files and directories, default 64 KiB) */
    VDFS_RT_PB = 2, /* pointer blocks (4 KiB) */
    VDFS_RT_FD = 3, /* file descriptors (4 KiB) */
    VDFS_RT_COUNT = 4,
};

/* ---- common object header (32 bytes) ------------------------------------ */

/* Every metadata object begins with this header.  csum is XXH3-64 over the
 * whole object with the csum field read as zero. */
struct vdfs_disk_header {
    vdfs_le32 magic;
    vdfs_le32 kind;
    vdfs_le64 addr; /* the object's own byte address on the device */
    vdfs_le64 gen;  /* bumped on every rewrite */
    vdfs_le64 csum;
};
static_assert(sizeof(struct vdfs_disk_header) == 32, "object header");

struct vdfs_header {
    uint32_t kind;
    uint64_t addr;
    uint64_t gen;
};

/* Seal: write header fields and checksum into an encoded object of `len`
 * bytes.  Verify: check magic, kind, address and checksum; returns 0 or
 * -EIO. */
void vdfs_obj_seal(uint8_t *buf, size_t len, const struct vdfs_header *h);
int vdfs_obj_verify(const uint8_t *buf, size_t len, uint32_t kind, uint64_t addr);
void vdfs_obj_read_header(const uint8_t *buf, struct vdfs_header *h);
uint64_t vdfs_checksum(const void *buf, size_t len);

/* ---- superblock (4096 bytes, at 0, backup copy before the file blocks) -- */

struct vdfs_disk_region {
    vdfs_le64 start;        /* byte offset of resource 0 */
    vdfs_le64 count;        /* number of resources */
    vdfs_le32 unit_size;    /* bytes per resource */
    vdfs_le32 per_cluster;  /* resources per resource cluster */
    vdfs_le32 clusters;     /* number of resource clusters */
    vdfs_le32 reserved;
    vdfs_le64 bitmap_offset; /* byte offset of cluster 0's bitmap block */
    vdfs_le64 lock_index;    /* lock-area index of cluster 0's lock */
};
static_assert(sizeof(struct vdfs_disk_region) == 48, "region");

struct vdfs_disk_super {
    struct vdfs_disk_header hdr;
    vdfs_le32 version;
    vdfs_le32 compat;
    vdfs_le32 incompat;
    vdfs_le32 ro_compat;
    uint8_t uuid[VDFS_UUID_SIZE];
    uint8_t label[VDFS_LABEL_SIZE];
    vdfs_le64 created_ns;
    vdfs_le64 total_bytes;
    vdfs_le32 block_size;
    vdfs_le32 subblock_size;
    vdfs_le32 max_hosts;
    vdfs_le32 journal_blocks; /* per host, in 4 KiB blocks */
    vdfs_le64 heartbeat_offset;
    vdfs_le64 lock_offset;
    vdfs_le64 lock_count;
    vdfs_le64 journal_offset;
    vdfs_le64 backup_offset;
    vdfs_le64 fd_lock_index; /* lock-area index of descriptor 0's lock */
    vdfs_le32 root_ino;
    vdfs_le32 lostfound_ino;
    vdfs_le32 hb_interval_ms;
    vdfs_le32 hb_timeout_ms;
    struct vdfs_disk_region region[VDFS_RT_COUNT];
    uint8_t reserved[3680];
};
static_assert(sizeof(struct vdfs_disk_super) == VDFS_META_SIZE, "superblock");

struct vdfs_region {
    uint64_t start;
    uint64_t count;
    uint32_t unit_size;
    uint32_t per_cluster;
    uint32_t clusters;
    uint64_t bitmap_offset;
    uint64_t lock_index;
};

struct vdfs_super {
    struct vdfs_header hdr;
    uint32_t version;
    uint32_t compat, incompat, ro_compat;
    uint8_t uuid[VDFS_UUID_SIZE];
    char label[VDFS_LABEL_SIZE + 1];
    uint64_t created_ns;
    uint64_t total_bytes;
    uint32_t block_size;
    uint32_t subblock_size;
    uint32_t max_hosts;
    uint32_t journal_blocks;
    uint64_t heartbeat_offset;
    uint64_t lock_offset;
    uint64_t lock_count;
    uint64_t journal_offset;
    uint64_t backup_offset;
    uint64_t fd_lock_index;
    uint32_t root_ino;
    uint32_t lostfound_ino;
    uint32_t hb_interval_ms;
    uint32_t hb_timeout_ms;
    struct vdfs_region region[VDFS_RT_COUNT];
};

void vdfs_super_encode(const struct vdfs_super *s, uint8_t buf[VDFS_META_SIZE]);
/* Decodes and verifies checksum, magic, version and geometry sanity
 * (regions inside the device, sizes powers of two).  0, -EIO (checksum or
 * magic), -EINVAL (insane geometry) or -EOPNOTSUPP (unknown incompat bit). */
int vdfs_super_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_super *s);

/* ---- heartbeat slot (512 bytes, one per host) --------------------------- */

enum vdfs_hb_state {
    VDFS_HB_FREE = 0,
    VDFS_HB_LIVE = 1,
    VDFS_HB_REPLAYING = 2, /* a breaker is replaying this host's journal */
};

struct vdfs_disk_heartbeat {
    struct vdfs_disk_header hdr;
    vdfs_le32 state;
    vdfs_le32 slot;
    uint8_t host_uuid[VDFS_UUID_SIZE];
    vdfs_le64 hb_gen;   /* slot generation; +1 every time the slot is freed */
    vdfs_le64 counter;  /* bumped on every renewal */
    vdfs_le64 stamp_ns; /* CLOCK_REALTIME of the last renewal, informational */
    vdfs_le32 interval_ms;
    vdfs_le32 pid;
    vdfs_le32 replayer_slot;
    vdfs_le32 timeout_ms; /* the writer's heartbeat timeout; observers wait at least this long */
    uint8_t hostname[VDFS_HOSTNAME_SIZE];
    /* REPLAYING: the replayer's slot generation, so others judge the
     * replayer, not the silence of the slot it replays. */
    vdfs_le64 replayer_hb_gen;
    vdfs_le32 flags; /* VDFS_HB_FLAG_*; 0 in older images */
    uint8_t reserved[340];
};
static_assert(sizeof(struct vdfs_disk_heartbeat) == VDFS_SECTOR_SIZE, "heartbeat");

/* A host that writes no metadata or data (vdfs-fuse -o ro, vdfsctl's
 * read-only commands): informational, for `vdfsctl hosts`. */
#define VDFS_HB_FLAG_READONLY 1u

struct vdfs_heartbeat {
    struct vdfs_header hdr;
    uint32_t state;
    uint32_t slot;
    uint8_t host_uuid[VDFS_UUID_SIZE];
    uint64_t hb_gen;
    uint64_t counter;
    uint64_t stamp_ns;
    uint32_t interval_ms;
    uint32_t pid;
    uint32_t replayer_slot;
    uint32_t timeout_ms;
    char hostname[VDFS_HOSTNAME_SIZE + 1];
    uint64_t replayer_hb_gen;
    uint32_t flags;
};

void vdfs_heartbeat_encode(const struct vdfs_heartbeat *h, uint8_t buf[VDFS_SECTOR_SIZE]);
int vdfs_heartbeat_decode(const uint8_t buf[VDFS_SECTOR_SIZE], uint64_t addr, struct vdfs_heartbeat *h);

/* ---- on-disk lock record (512 bytes) ------------------------------------ */

enum vdfs_lock_mode {
    VDFS_LOCK_FREE = 0,
    VDFS_LOCK_EXCLUSIVE = 1,
    VDFS_LOCK_READ_SHARED = 2,
    VDFS_LOCK_MULTI_WRITER = 3,
};

#define VDFS_LOCK_HOLDERS 32u
#define VDFS_NO_SLOT 0xffffffffu

struct vdfs_disk_lock_holder {
    vdfs_le32 slot;
    vdfs_le32 hb_gen;
};
static_assert(sizeof(struct vdfs_disk_lock_holder) == 8, "lock holder");

struct vdfs_disk_lock {
    struct vdfs_disk_header hdr;
    vdfs_le32 mode;
    vdfs_le32 owner_slot;
    vdfs_le64 owner_hb_gen;
    vdfs_le64 object; /* what it protects: (rtype << 56) | index */
    vdfs_le64 acquired_ns;
    vdfs_le32 nholders;
    vdfs_le32 reserved0;
    struct vdfs_disk_lock_holder holders[VDFS_LOCK_HOLDERS];
    /* Bumped by every holder of the volume metadata lock that changed
     * metadata, when it releases: other hosts drop their caches when it
     * differs from the value they last saw.  Unused (0) on other locks. */
    vdfs_le64 version;
    /* Bit s set: the host in heartbeat slot s waits for this lock and asks
     * its holder to release it. */
    vdfs_le64 waiters;
    uint8_t reserved[168];
};
static_assert(sizeof(struct vdfs_disk_lock) == VDFS_SECTOR_SIZE, "lock");

struct vdfs_lock_rec {
    struct vdfs_header hdr;
    uint32_t mode;
    uint32_t owner_slot;
    uint64_t owner_hb_gen;
    uint64_t object;
    uint64_t acquired_ns;
    uint32_t nholders;
    struct { uint32_t slot; uint32_t hb_gen; } holders[VDFS_LOCK_HOLDERS];
    uint64_t version;
    uint64_t waiters;
};

void vdfs_lock_encode(const struct vdfs_lock_rec *l, uint8_t buf[VDFS_SECTOR_SIZE]);
int vdfs_lock_decode(const uint8_t buf[VDFS_SECTOR_SIZE], uint64_t addr, struct vdfs_lock_rec *l);

/* ---- resource cluster bitmap (4096 bytes) ------------------------------- */

#define VDFS_BITMAP_BYTES 4032u
#define VDFS_BITMAP_BITS  (VDFS_BITMAP_BYTES * 8u)

struct vdfs_disk_bitmap {
    struct vdfs_disk_header hdr;
    vdfs_le32 rtype;
    vdfs_le32 cluster;
    vdfs_le64 first;     /* index of the first resource in this cluster */
    vdfs_le32 count;     /* resources in this cluster */
    vdfs_le32 free;      /* clear bits among them */
    vdfs_le32 affinity;  /* heartbeat slot that last allocated here */
    vdfs_le32 reserved0;
    uint8_t bits[VDFS_BITMAP_BYTES]; /* bit set = allocated */
};
static_assert(sizeof(struct vdfs_disk_bitmap) == VDFS_META_SIZE, "bitmap");

struct vdfs_bitmap {
    struct vdfs_header hdr;
    uint32_t rtype;
    uint32_t cluster;
    uint64_t first;
    uint32_t count;
    uint32_t free;
    uint32_t affinity;
    uint8_t bits[VDFS_BITMAP_BYTES];
};

void vdfs_bitmap_encode(const struct vdfs_bitmap *b, uint8_t buf[VDFS_META_SIZE]);
int vdfs_bitmap_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_bitmap *b);

/* ---- file descriptor (4096 bytes) --------------------------------------- */

/* How the data area of a descriptor addresses the file's data. */
enum vdfs_addr_mode {
    VDFS_AM_RESIDENT = 0, /* data lives in the descriptor itself */
    VDFS_AM_SUB = 1,      /* direct slots name sub-blocks; file fits in one block */
    VDFS_AM_BLOCK = 2,    /* direct, single- and double-indirect file blocks */
};

#define VDFS_DIRECT_SLOTS 256u
#define VDFS_SINGLE_SLOTS 64u
#define VDFS_DOUBLE_SLOTS 128u
#define VDFS_SLOTS (VDFS_DIRECT_SLOTS + VDFS_SINGLE_SLOTS + VDFS_DOUBLE_SLOTS)
#define VDFS_XATTR_BYTES 1024u
#define VDFS_DATA_AREA 2880u
#define VDFS_RESIDENT_MAX VDFS_DATA_AREA

/* A slot or pointer-block entry: 0 is a hole; otherwise the low 31 bits are
 * the resource index + 1 and the top bit marks a lazily zeroed block that
 * must read as zeros until first written. */
#define VDFS_PTR_TBZ 0x80000000u
#define VDFS_PTR_INDEX_MASK 0x7fffffffu
static inline uint32_t vdfs_ptr_make(uint64_t index, bool tbz)
{
    return (uint32_t)(index + 1) | (tbz ? VDFS_PTR_TBZ : 0u);
}
static inline bool vdfs_ptr_present(uint32_t p) { return (p & VDFS_PTR_INDEX_MASK) != 0; }
static inline uint64_t vdfs_ptr_index(uint32_t p) { return (uint64_t)(p & VDFS_PTR_INDEX_MASK) - 1; }
static inline bool vdfs_ptr_tbz(uint32_t p) { return (p & VDFS_PTR_TBZ) != 0; }

struct vdfs_disk_timestamp {
    vdfs_le64 sec;
    vdfs_le32 nsec;
    vdfs_le32 reserved;
};
static_assert(sizeof(struct vdfs_disk_timestamp) == 16, "timestamp");

struct vdfs_disk_fd {
    struct vdfs_disk_header hdr;
    vdfs_le32 ino;
    vdfs_le32 mode;
    vdfs_le32 uid;
    vdfs_le32 gid;
    vdfs_le32 nlink;
    vdfs_le32 flags;
    vdfs_le32 addr_mode;
    vdfs_le32 xattr_len;
    vdfs_le64 size;
    vdfs_le64 alloc_bytes;
    vdfs_le32 parent;
    vdfs_le32 ino_gen;
    struct vdfs_disk_timestamp atime, mtime, ctime, btime;
    vdfs_le32 rdev;
    uint8_t reserved[36];
    uint8_t xattr[VDFS_XATTR_BYTES];
    uint8_t data[VDFS_DATA_AREA]; /* VDFS_SLOTS le32 slots, or resident data */
};
static_assert(sizeof(struct vdfs_disk_fd) == VDFS_META_SIZE, "descriptor");
static_assert(VDFS_SLOTS * 4 <= VDFS_DATA_AREA, "slots fit the data area");

struct vdfs_timespec {
    int64_t sec;
    uint32_t nsec;
};

struct vdfs_fd {
    struct vdfs_header hdr;
    uint32_t ino;
    uint32_t mode;
    uint32_t uid, gid;
    uint32_t nlink;
    uint32_t flags;
    uint32_t addr_mode;
    uint32_t xattr_len;
    uint64_t size;
    uint64_t alloc_bytes;
    uint32_t parent;
    uint32_t ino_gen;
    struct vdfs_timespec atime, mtime, ctime, btime;
    uint32_t rdev;
    uint8_t xattr[VDFS_XATTR_BYTES]; /* packed: u8 name_len, le16 value_len, name, value */
    union {
        uint32_t slots[VDFS_SLOTS];
        uint8_t resident[VDFS_DATA_AREA];
    } data;
};

void vdfs_fd_encode(const struct vdfs_fd *fd, uint8_t buf[VDFS_META_SIZE]);
int vdfs_fd_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_fd *fd);
/* vdfs_fd_decode without the seal check, for an image already verified
 * (the metadata cache checks every object on its way in, and seals what
 * it is given): the field checks still apply. */
int vdfs_fd_decode_verified(const uint8_t buf[VDFS_META_SIZE], struct vdfs_fd *fd);

/* ---- pointer block (4096 bytes) ----------------------------------------- */

#define VDFS_PB_ENTRIES 1008u

struct vdfs_disk_pb {
    struct vdfs_disk_header hdr;
    vdfs_le32 owner_ino;
    vdfs_le32 level; /* 1: entries name file blocks; 2: entries name pointer blocks */
    uint8_t reserved[24];
    vdfs_le32 entries[VDFS_PB_ENTRIES];
};
static_assert(sizeof(struct vdfs_disk_pb) == VDFS_META_SIZE, "pointer block");

struct vdfs_pb {
    struct vdfs_header hdr;
    uint32_t owner_ino;
    uint32_t level;
    uint32_t entries[VDFS_PB_ENTRIES];
};

void vdfs_pb_encode(const struct vdfs_pb *pb, uint8_t buf[VDFS_META_SIZE]);
int vdfs_pb_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_pb *pb);

/* ---- directory block (4096 bytes) --------------------------------------- */

/* A directory's data is an array of these blocks.  Entries are packed
 * back to back: le32 ino, u8 type (DT_*), u8 name_len, name bytes. */
#define VDFS_DIR_AREA 4048u
#define VDFS_DIRENT_FIXED 6u

struct vdfs_disk_dirblock {
    struct vdfs_disk_header hdr;
    vdfs_le32 owner_ino;
    vdfs_le16 nentries;
    vdfs_le16 used; /* bytes of the entry area in use */
    uint8_t reserved[8];
    uint8_t entries[VDFS_DIR_AREA];
};
static_assert(sizeof(struct vdfs_disk_dirblock) == VDFS_META_SIZE, "directory block");

struct vdfs_dirblock {
    struct vdfs_header hdr;
    uint32_t owner_ino;
    uint16_t nentries;
    uint16_t used;
    uint8_t entries[VDFS_DIR_AREA];
};

/* One entry of a decoded directory block. */
struct vdfs_dirent {
    uint32_t ino;
    uint8_t type;
    uint8_t name_len;
    const uint8_t *name; /* not NUL-terminated; points into the block */
    uint16_t offset;     /* within entries[] */
    uint16_t len;        /* bytes the entry takes */
};
/* Reads the entry at *pos and advances it: false at the end or on a
 * malformed entry. */
bool vdfs_dirent_next(const struct vdfs_dirblock *d, uint16_t *pos, struct vdfs_dirent *e);
void vdfs_dirent_remove(struct vdfs_dirblock *d, const struct vdfs_dirent *e);
/* False when the name is empty, too long, or does not fit the block. */
bool vdfs_dirent_append(struct vdfs_dirblock *d, uint32_t ino, uint8_t type, const char *name, size_t len);
void vdfs_dirent_set(struct vdfs_dirblock *d, const struct vdfs_dirent *e, uint32_t ino, uint8_t type);

void vdfs_dirblock_encode(const struct vdfs_dirblock *d, uint8_t buf[VDFS_META_SIZE]);
/* Also checks that the entries parse: each inside `used`, names non-empty,
 * without '/' or NUL, and nentries matching. */
int vdfs_dirblock_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_dirblock *d);

/* ---- journal ------------------------------------------------------------ */

/* Each host slot owns journal_blocks 4 KiB blocks.  Block 0 is the header;
 * transactions follow from block 1 as [descriptor][images...] groups.  A
 * transaction is replayed only if every group of it is intact and its last
 * group carries VDFS_JDESC_LAST. */
#define VDFS_JDESC_ADDRS 505u
#define VDFS_JDESC_LAST 1u

struct vdfs_disk_jheader {
    struct vdfs_disk_header hdr;
    vdfs_le32 slot;
    vdfs_le32 reserved0;
    vdfs_le64 start_seq;   /* sequence number expected at start_block */
    vdfs_le32 start_block; /* where replay begins */
    vdfs_le32 reserved1;
    uint8_t host_uuid[VDFS_UUID_SIZE];
    uint8_t reserved[4024];
};
static_assert(sizeof(struct vdfs_disk_jheader) == VDFS_META_SIZE, "journal header");

struct vdfs_jheader {
    struct vdfs_header hdr;
    uint32_t slot;
    uint64_t start_seq;
    uint32_t start_block;
    uint8_t host_uuid[VDFS_UUID_SIZE];
};

struct vdfs_disk_jdesc {
    struct vdfs_disk_header hdr;
    vdfs_le64 seq;
    vdfs_le32 count;  /* images following this descriptor */
    vdfs_le32 flags;
    vdfs_le64 images_csum; /* XXH3-64 over the images, in order */
    vdfs_le64 addrs[VDFS_JDESC_ADDRS];
};
static_assert(sizeof(struct vdfs_disk_jdesc) == VDFS_META_SIZE, "journal descriptor");

struct vdfs_jdesc {
    struct vdfs_header hdr;
    uint64_t seq;
    uint32_t count;
    uint32_t flags;
    uint64_t images_csum;
    uint64_t addrs[VDFS_JDESC_ADDRS];
};

void vdfs_jheader_encode(const struct vdfs_jheader *j, uint8_t buf[VDFS_META_SIZE]);
int vdfs_jheader_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_jheader *j);
void vdfs_jdesc_encode(const struct vdfs_jdesc *j, uint8_t buf[VDFS_META_SIZE]);
int vdfs_jdesc_decode(const uint8_t buf[VDFS_META_SIZE], uint64_t addr, struct vdfs_jdesc *j);

/* ---- geometry helpers shared by mkfs, the library and fsck -------------- */

static inline uint64_t vdfs_heartbeat_addr(const struct vdfs_super *s, uint32_t slot)
{
    return s->heartbeat_offset + (uint64_t)slot * VDFS_SECTOR_SIZE;
}
/* A mounted host holds an OFD read lock on one byte at this offset plus its
 * slot number, far beyond any device end, for as long as it lives.  On one
 * machine that tells a dead process at once, without waiting for its
 * heartbeat to age, and it never interferes with compare-and-write. */
#define VDFS_LIVENESS_LOCK_BASE (1ull << 60)
static inline uint64_t vdfs_liveness_lock_offset(uint32_t slot)
{
    return VDFS_LIVENESS_LOCK_BASE + slot;
}
static inline uint64_t vdfs_lock_addr(const struct vdfs_super *s, uint64_t lock_index)
{
    return s->lock_offset + lock_index * VDFS_SECTOR_SIZE;
}
static inline uint64_t vdfs_journal_addr(const struct vdfs_super *s, uint32_t slot, uint32_t block)
{
    return s->journal_offset + ((uint64_t)slot * s->journal_blocks + block) * VDFS_META_SIZE;
}
static inline uint64_t vdfs_bitmap_addr(const struct vdfs_super *s, unsigned rtype, uint32_t cluster)
{
    return s->region[rtype].bitmap_offset + (uint64_t)cluster * VDFS_META_SIZE;
}
/* How many resources cluster `c` of a region covers (the last may be short). */
static inline uint32_t vdfs_cluster_len(const struct vdfs_region *r, uint32_t c)
{
    uint64_t left = r->count - (uint64_t)c * r->per_cluster;
    return (uint32_t)(left < r->per_cluster ? left : r->per_cluster);
}
/* Whether a decoded bitmap is the one of cluster `c` of resource type
 * `rtype`: a sealed bitmap may still describe another cluster, whose
 * `first` would hand out resources outside the region. */
static inline bool vdfs_bitmap_is_of(const struct vdfs_bitmap *bm, const struct vdfs_super *s, unsigned rtype,
                                     uint32_t c)
{
    const struct vdfs_region *r = &s->region[rtype];
    return bm->rtype == rtype && bm->cluster == c && bm->first == (uint64_t)c * r->per_cluster &&
           bm->count == vdfs_cluster_len(r, c);
}
/* The bitmap of cluster `c` of resource type `rtype` with every resource
 * free, as mkfs and a grow first write it. */
void vdfs_bitmap_init_free(struct vdfs_bitmap *bm, const struct vdfs_super *s, unsigned rtype, uint32_t c);
/* A file-block bitmap written before the datastore grew into the rest of
 * its cluster (a grow stopped between its superblock and this bitmap):
 * shorter than its cluster, with nothing set past its end. */
static inline bool vdfs_bitmap_grown_into(const struct vdfs_bitmap *bm, const struct vdfs_super *s, uint32_t c)
{
    const struct vdfs_region *r = &s->region[VDFS_RT_FB];
    if (bm->rtype != VDFS_RT_FB || bm->cluster != c || bm->first != (uint64_t)c * r->per_cluster ||
        bm->count >= vdfs_cluster_len(r, c) || bm->free > bm->count)
        return false;
    for (uint32_t i = bm->count; i < vdfs_cluster_len(r, c); i++)
        if (bm->bits[i / 8] >> (i % 8) & 1u)
            return false;
    return true;
}
static inline uint64_t vdfs_resource_addr(const struct vdfs_super *s, unsigned rtype, uint64_t index)
{
    return s->region[rtype].start + index * s->region[rtype].unit_size;
}
static inline uint64_t vdfs_fd_addr(const struct vdfs_super *s, uint32_t ino)
{
    return vdfs_resource_addr(s, VDFS_RT_FD, ino);
}
static inline uint64_t vdfs_fd_lock_index(const struct vdfs_super *s, uint32_t ino)
{
    return s->fd_lock_index + ino;
}

/* Computes a whole layout for a device of `total_bytes`.  mkfs fills in the
 * requested sizes (block_size, subblock_size, max_hosts, journal_blocks;
 * fd_count 0 means automatic) and this fills in every offset and region.
 * Returns 0, -ENOSPC when the device is too small for the metadata plus
 * at least 16 file blocks, or -EINVAL for impossible requested sizes. */
int vdfs_layout(struct vdfs_super *s, uint64_t fd_count);
/* The same, with room for the file blocks of a datastore later grown up
 * to `grow_limit` bytes (at least total_bytes; 0 means the default,
 * VDFS_DEFAULT_GROWTH times total_bytes).  The room costs a lock record
 * and a bitmap block per 8192 file blocks. */
int vdfs_layout_growable(struct vdfs_super *s, uint64_t fd_count, uint64_t grow_limit);
/* How many file-block clusters the layout has room for: the lock records
 * and bitmap blocks between the file blocks' and the sub-blocks'. */
static inline uint64_t vdfs_fb_cluster_room(const struct vdfs_super *s)
{
    const struct vdfs_region *fb = &s->region[VDFS_RT_FB], *next = &s->region[VDFS_RT_SB];
    uint64_t locks = next->lock_index > fb->lock_index ? next->lock_index - fb->lock_index : 0;
    uint64_t bitmaps = next->bitmap_offset > fb->bitmap_offset ? (next->bitmap_offset - fb->bitmap_offset) / VDFS_META_SIZE : 0;
    uint64_t room = locks < bitmaps ? locks : bitmaps;
    return room > fb->clusters ? room : fb->clusters;
}
/* The largest total_bytes the datastore can grow to. */
static inline uint64_t vdfs_grow_limit(const struct vdfs_super *s)
{
    const struct vdfs_region *fb = &s->region[VDFS_RT_FB];
    uint64_t blocks = vdfs_fb_cluster_room(s) * fb->per_cluster;
    if (blocks > VDFS_PTR_INDEX_MASK)
        blocks = VDFS_PTR_INDEX_MASK;
    if (blocks < fb->count)
        return s->total_bytes;
    return fb->start + blocks * fb->unit_size;
}

#endif
