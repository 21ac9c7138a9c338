/* Directories removed through this mount that the kernel still knows:
 * an open handle or a working directory keeps the node, and fstat or
 * stat(".") on it must answer as on a local file system (the attributes,
 * with no links) instead of ESTALE.  The library frees a directory at
 * rmdir, so the attributes it had are kept here until the kernel forgets
 * the node; the oldest go first when the table is full. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "vdfs_fuse.h"

#define REMOVED_SLOTS 256u

struct removed_dir {
    fuse_ino_t node; /* 0: a free slot */
    struct vdfs_stat st;
};

static struct removed_dir removed[REMOVED_SLOTS];
static unsigned next_slot;
static pthread_mutex_t removed_lock = PTHREAD_MUTEX_INITIALIZER;

void removed_dir_note(fuse_ino_t node, const struct vdfs_stat *before)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&removed_lock);
    struct removed_dir *r = &removed[next_slot++ % REMOVED_SLOTS];
    r->node = node;
    r->st = *before;
    r->st.nlink = 0;
    r->st.size = 0;
    r->st.ctime = now;
    pthread_mutex_unlock(&removed_lock);
}

bool removed_dir_stat(fuse_ino_t node, struct vdfs_stat *st)
{
    bool found = false;
    pthread_mutex_lock(&removed_lock);
    for (unsigned i = 0; i < REMOVED_SLOTS && !found; i++) {
        if (removed[i].node == node) {
            *st = removed[i].st;
            found = true;
        }
    }
    pthread_mutex_unlock(&removed_lock);
    return found;
}

void removed_dir_forget(fuse_ino_t node)
{
    pthread_mutex_lock(&removed_lock);
    for (unsigned i = 0; i < REMOVED_SLOTS; i++)
        if (removed[i].node == node)
            removed[i].node = 0;
    pthread_mutex_unlock(&removed_lock);
}
