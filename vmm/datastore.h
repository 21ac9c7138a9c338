/* The datastores this VMM has joined, and files read whole from them.
 * Names have the form "vdfs:IMAGE:/path/in/datastore".  Each IMAGE is
 * mounted once, as one cluster host, and shared by everything on it: the
 * VM's disks (disk_vdfs.c), its config file, kernel and initrd. */
#ifndef VDFS_VMM_DATASTORE_H
#define VDFS_VMM_DATASTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdfs.h"

struct datastore {
    char image[4096];
    struct vdfs *fs;
    bool readonly;
    unsigned users;
    struct datastore *next;
};

/* Whether `name` names a file in a datastore. */
bool datastore_is_name(const char *name);
/* Splits "vdfs:IMAGE:/path" into its parts.  0, or -1 if malformed. */
int datastore_parse(const char *name, char *image, size_t image_len, char *path, size_t path_len);

/* Joins IMAGE (or takes one more reference to the join); a read-only join
 * serves read-only users only.  NULL with a message in `err`. */
struct datastore *datastore_get(const char *image, bool readonly, char *err, size_t errlen);
/* Drops a reference; the last one unmounts. */
void datastore_put(struct datastore *ds);

/* Reads the whole regular file `name` (at most `max_len` bytes) into a
 * malloc'd buffer.  Its datastore stays joined, for the disks that may
 * follow, until datastore_leave_files().  0, or -1 with `err` filled. */
int datastore_read_file(const char *name, size_t max_len, uint8_t **data, size_t *len, char *err,
                        size_t errlen);
/* Drops the joins that only datastore_read_file() made. */
void datastore_leave_files(void);

/* Whether this process's host on some joined datastore has fenced itself
 * (docs/clustering.md); its image is copied to `image`.  Safe from any
 * thread while others join and leave. */
bool datastore_fenced(char *image, size_t image_len);

#endif
