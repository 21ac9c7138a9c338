/* vdfs-fuse: what the daemon's files share. */
#ifndef VDFS_FUSE_H
#define VDFS_FUSE_H

#define FUSE_USE_VERSION 312 /* fuse_loop_cfg_* with fuse_session_loop_mt */

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

#include "vdfs.h"
#include "wcache.h"

/* The command line after parsing. */
struct fuse_config_opts {
    char *device;        /* absolute path of the image or block device */
    bool readonly;       /* -o ro */
    char *host_uuid;     /* -o host_uuid= */
    char *host_name;     /* -o host_name= */
    unsigned commit_ms;  /* -o commit_ms= */
    bool no_direct;      /* -o no_direct */
    unsigned hb_interval_ms; /* -o hb_interval_ms= (0: the datastore's) */
    unsigned hb_timeout_ms;  /* -o hb_timeout_ms= (0: the datastore's) */
    bool multiwriter;    /* -o multiwriter: write opens share the file lock */
    bool no_host;        /* -o nohost (with ro): take no slot and no lock */
    unsigned max_background; /* -o max_background= (0: the kernel's default, 12) */
    unsigned writeback_mb; /* -o writeback_mb= (when writeback_set) */
    bool writeback_set;
    unsigned writeback_expire_ms; /* -o writeback_expire_ms= (0: the kernel's) */
    bool show_help;
    bool show_version;
    bool fake;           /* mount(8) helper -f: do everything but mount */
};

/* Turns argv into our options plus the remaining libfuse arguments in
 * `args` (mount point, -f, -d and kernel mount options).  Called as
 * mount.fuse.vdfs it first rewrites mount(8)'s helper calling convention.
 * Returns 0, or -1 after printing why. */
int fuse_config_parse(int argc, char **argv, struct fuse_config_opts *opts, struct fuse_args *args);
void fuse_config_free(struct fuse_config_opts *opts);
void fuse_config_usage(const char *prog);

/* The mounted volume that every request works on. */
struct vdfs_fuse {
    struct vdfs *fs;
    /* Asynchronous requests (libaio and io_uring direct I/O, readahead)
     * the kernel keeps in flight to the daemon; 0 leaves the kernel's
     * default (12).  Each holds a worker thread for the length of its
     * device I/O, so this is also the queue depth the datastore sees. */
    unsigned max_background;
    struct wcache *wc; /* overwrites held for write-back (wcache.c) */
    struct fuse_session *se; /* for notifications to the kernel */
    bool readonly;
    bool unmounted;       /* set once vdfs_unmount ran (destroy or main) */
    int unmount_rc;
    uint32_t block_size;
};

extern const struct fuse_lowlevel_ops vdfs_fuse_ops;
/* Writes held data back and unmounts the volume, once (op_destroy, or
 * main when the session never started); the result is in unmount_rc. */
void vdfs_fuse_unmount(struct vdfs_fuse *v);

/* A directory's entries, copied at opendir so that readdir offsets stay
 * valid while entries are added or removed. */
struct dir_entry {
    char *name;
    uint32_t ino;
    uint32_t mode;
};
struct dir_snapshot {
    struct dir_entry *entries;
    size_t count, cap;
    bool served; /* entries were listed: a read from offset 0 is a rewinddir */
};

/* Empties the listing: the directory was removed. */
void dir_snapshot_clear(struct dir_snapshot *snap);

/* Directories removed through this mount that the kernel may still stat
 * (removed.c).  note: after a successful rmdir, with the attributes the
 * directory had; stat: true with those attributes (no links, size 0) if
 * `node` is such a directory; forget: the kernel dropped the node. */
void removed_dir_note(fuse_ino_t node, const struct vdfs_stat *before);
bool removed_dir_stat(fuse_ino_t node, struct vdfs_stat *st);
void removed_dir_forget(fuse_ino_t node);

int dir_snapshot_take(struct vdfs *fs, uint32_t dir, struct dir_snapshot **out);
/* Replaces the listing with the directory as it is now (rewinddir). */
int dir_snapshot_refresh(struct vdfs *fs, uint32_t dir, struct dir_snapshot *snap);
void dir_snapshot_free(struct dir_snapshot *snap);

#endif
