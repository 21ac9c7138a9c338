#include "datastore.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t datastores_lock = PTHREAD_MUTEX_INITIALIZER;
static struct datastore *datastores;

/* The references datastore_read_file() keeps, one per datastore. */
#define MAX_FILE_JOINS 8
static struct datastore *file_joins[MAX_FILE_JOINS];
static unsigned nfile_joins;

bool datastore_is_name(const char *name) { return strncmp(name, "vdfs:", 5) == 0; }

int datastore_parse(const char *name, char *image, size_t image_len, char *path, size_t path_len)
{
    if (!datastore_is_name(name))
        return -1;
    const char *rest = name + 5;
    const char *sep = strstr(rest, ":/");
    if (!sep || sep == rest)
        return -1;
    size_t ilen = (size_t)(sep - rest);
    if (ilen >= image_len || strlen(sep + 1) >= path_len)
        return -1;
    memcpy(image, rest, ilen);
    image[ilen] = '\0';
    strcpy(path, sep + 1);
    return 0;
}

struct datastore *datastore_get(const char *image, bool readonly, char *err, size_t errlen)
{
    pthread_mutex_lock(&datastores_lock);
    struct datastore *ds = datastores;
    while (ds && strcmp(ds->image, image) != 0)
        ds = ds->next;
    if (ds && ds->readonly && !readonly) {
        snprintf(err, errlen, "datastore %s is already joined read-only", image);
        ds = NULL;
        goto out;
    }
    if (!ds) {
        ds = calloc(1, sizeof(*ds));
        if (!ds) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        snprintf(ds->image, sizeof(ds->image), "%s", image);
        struct vdfs_mount_opts opts = { .readonly = readonly, .own_host = true };
        int rc = vdfs_mount(image, &opts, &ds->fs);
        if (rc < 0) {
            snprintf(err, errlen, "cannot join datastore %s: %s", image, vdfs_strerror(rc));
            free(ds);
            ds = NULL;
            goto out;
        }
        ds->readonly = readonly;
        ds->next = datastores;
        datastores = ds;
    }
    ds->users++;
out:
    pthread_mutex_unlock(&datastores_lock);
    return ds;
}

void datastore_put(struct datastore *ds)
{
    pthread_mutex_lock(&datastores_lock);
    if (--ds->users == 0) {
        struct datastore **pp = &datastores;
        while (*pp != ds)
            pp = &(*pp)->next;
        *pp = ds->next;
        vdfs_unmount(ds->fs);
        free(ds);
    }
    pthread_mutex_unlock(&datastores_lock);
}

/* Joined read-write if this process may write the image, so that the
 * VM's writable disks can share the join; else read-only. */
static struct datastore *join_for_files(const char *image, char *err, size_t errlen)
{
    for (unsigned i = 0; i < nfile_joins; i++)
        if (strcmp(file_joins[i]->image, image) == 0)
            return file_joins[i];
    if (nfile_joins == MAX_FILE_JOINS) {
        snprintf(err, errlen, "files from more than %d datastores", MAX_FILE_JOINS);
        return NULL;
    }
    struct datastore *ds = datastore_get(image, access(image, W_OK) != 0, err, errlen);
    if (ds)
        file_joins[nfile_joins++] = ds;
    return ds;
}

static int read_whole(struct vdfs *fs, uint32_t ino, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = vdfs_pread(fs, ino, buf + done, len - done, (uint64_t)done);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO; /* shorter than its size said: changed meanwhile */
        done += (size_t)n;
    }
    return 0;
}

int datastore_read_file(const char *name, size_t max_len, uint8_t **data, size_t *len, char *err,
                        size_t errlen)
{
    char image[4096], path[4096], why[4096 + 256];
    if (datastore_parse(name, image, sizeof(image), path, sizeof(path)) < 0) {
        snprintf(err, errlen, "%s: expected vdfs:IMAGE:/path/in/datastore", name);
        return -1;
    }
    struct datastore *ds = join_for_files(image, why, sizeof(why));
    if (!ds) {
        snprintf(err, errlen, "%s: %s", name, why);
        return -1;
    }
    struct vdfs_stat st;
    int rc = vdfs_resolve(ds->fs, path, true, &st);
    if (rc == 0 && !S_ISREG(st.mode))
        rc = -EISDIR;
    if (rc == 0 && st.size > max_len) {
        snprintf(err, errlen, "%s: %llu bytes is larger than %zu", name, (unsigned long long)st.size, max_len);
        return -1;
    }
    if (rc == 0)
        rc = vdfs_open(ds->fs, st.ino, O_RDONLY);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", name, rc == -EISDIR ? "not a regular file" : vdfs_strerror(rc));
        return -1;
    }
    *len = (size_t)st.size;
    *data = malloc(*len ? *len : 1);
    rc = *data ? read_whole(ds->fs, st.ino, *data, *len) : -ENOMEM;
    vdfs_release(ds->fs, st.ino, O_RDONLY);
    if (rc < 0) {
        snprintf(err, errlen, "%s: read: %s", name, vdfs_strerror(rc));
        free(*data);
        *data = NULL;
        return -1;
    }
    return 0;
}

void datastore_leave_files(void)
{
    while (nfile_joins)
        datastore_put(file_joins[--nfile_joins]);
}

bool datastore_fenced(char *image, size_t image_len)
{
    pthread_mutex_lock(&datastores_lock);
    struct datastore *ds = datastores;
    while (ds && !vdfs_is_fenced(ds->fs))
        ds = ds->next;
    if (ds)
        snprintf(image, image_len, "%s", ds->image);
    pthread_mutex_unlock(&datastores_lock);
    return ds != NULL;
}
