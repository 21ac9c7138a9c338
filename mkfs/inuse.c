/* Is the target in use?  A mounted filesystem, an active swap area, a
 * device-mapper or md holder, or (for an image file) a loop device over the
 * image that is itself in use.  Formatting any of these would destroy live
 * data, so mkfs refuses them even with -f. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "departing.h"
#include "mkfs.h"

/* The mount point of the first mount whose device number is `devnum` or
 * whose source resolves to `real` (either may be 0/NULL).  1 found, 0 not. */
static int find_mount(dev_t devnum, const char *real, char *mnt, size_t mnt_len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    while (!found && getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        char point[PATH_MAX], source[PATH_MAX];
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, point) != 3)
            continue;
        char *sep = strstr(line, " - ");
        if (sep == NULL || sscanf(sep + 3, "%*s %4095s", source) != 1)
            continue;
        vdfs_unescape_octal(point);
        vdfs_unescape_octal(source);
        if (devnum != 0 && makedev(maj, min) == devnum)
            found = 1;
        if (!found && real != NULL && source[0] == '/') {
            char source_real[PATH_MAX];
            if (realpath(source, source_real) != NULL && strcmp(source_real, real) == 0)
                found = 1;
        }
        if (found)
            snprintf(mnt, mnt_len, "%s", point);
    }
    free(line);
    fclose(f);
    return found;
}

static int find_swap(dev_t devnum, const char *real)
{
    FILE *f = fopen("/proc/swaps", "re");
    if (f == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    bool header = true;
    while (!found && getline(&line, &cap, f) > 0) {
        char name[PATH_MAX];
        if (header) {
            header = false;
            continue;
        }
        if (sscanf(line, "%4095s", name) != 1)
            continue;
        vdfs_unescape_octal(name);
        struct stat st;
        char name_real[PATH_MAX];
        if (devnum != 0 && stat(name, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == devnum)
            found = 1;
        if (real != NULL && realpath(name, name_real) != NULL && strcmp(name_real, real) == 0)
            found = 1;
    }
    free(line);
    fclose(f);
    return found;
}

static int read_devnum(const char *path, dev_t *out)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    unsigned maj, min;
    int n = fscanf(f, "%u:%u", &maj, &min);
    fclose(f);
    if (n != 2)
        return -EINVAL;
    *out = makedev(maj, min);
    return 0;
}

/* Checks one block device number: mounted, swap, a holder stacked on it,
 * or a partition of it that is mounted.  `name` names it in messages. */
static int check_devnum(dev_t devnum, const char *name, char *why, size_t why_len)
{
    char mnt[PATH_MAX], sys[PATH_MAX];
    if (find_mount(devnum, NULL, mnt, sizeof(mnt))) {
        snprintf(why, why_len, "%s is mounted on %s", name, mnt);
        return 1;
    }
    if (find_swap(devnum, NULL)) {
        snprintf(why, why_len, "%s is an active swap area", name);
        return 1;
    }
    snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/holders", major(devnum), minor(devnum));
    DIR *d = opendir(sys);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(why, why_len, "%s is held by %s", name, e->d_name);
            closedir(d);
            return 1;
        }
        closedir(d);
    }
    snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(devnum), minor(devnum));
    d = opendir(sys);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int busy = 0;
    while (!busy && (e = readdir(d)) != NULL) {
        char part[PATH_MAX + 300];
        dev_t partnum;
        if (e->d_name[0] == '.')
            continue;
        snprintf(part, sizeof(part), "%s/%s/partition", sys, e->d_name);
        if (access(part, F_OK) != 0)
            continue;
        snprintf(part, sizeof(part), "%s/%s/dev", sys, e->d_name);
        if (read_devnum(part, &partnum) != 0)
            continue;
        char partname[300];
        snprintf(partname, sizeof(partname), "partition %s of %s", e->d_name, name);
        busy = check_devnum(partnum, partname, why, why_len);
    }
    closedir(d);
    return busy;
}

/* Loop devices whose backing file is this image, and whether one of them
 * is in use. */
static int check_loop_backing(const struct stat *st, char *why, size_t why_len)
{
    DIR *d = opendir("/sys/block");
    if (d == NULL)
        return 0;
    struct dirent *e;
    int busy = 0;
    while (!busy && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "loop", 4) != 0)
            continue;
        char sys[PATH_MAX], backing[PATH_MAX];
        snprintf(sys, sizeof(sys), "/sys/block/%s/loop/backing_file", e->d_name);
        FILE *f = fopen(sys, "re");
        if (f == NULL)
            continue;
        bool got = fgets(backing, sizeof(backing), f) != NULL;
        fclose(f);
        if (!got)
            continue;
        backing[strcspn(backing, "\n")] = '\0';
        struct stat bst;
        if (stat(backing, &bst) != 0 || bst.st_dev != st->st_dev || bst.st_ino != st->st_ino)
            continue;
        dev_t loopnum;
        snprintf(sys, sizeof(sys), "/sys/block/%s/dev", e->d_name);
        if (read_devnum(sys, &loopnum) != 0)
            continue;
        char name[PATH_MAX];
        snprintf(name, sizeof(name), "/dev/%s (a loop device over this image)", e->d_name);
        busy = check_devnum(loopnum, name, why, why_len);
    }
    closedir(d);
    return busy;
}

int mkfs_check_in_use(const char *path, const struct stat *st, char *why, size_t why_len)
{
    char real[PATH_MAX], mnt[PATH_MAX];
    if (realpath(path, real) == NULL)
        return -errno;
    if (S_ISBLK(st->st_mode)) {
        int busy = check_devnum(st->st_rdev, path, why, why_len);
        if (busy != 0)
            return busy;
    }
    if (find_mount(0, real, mnt, sizeof(mnt))) {
        snprintf(why, why_len, "%s is mounted on %s", path, mnt);
        return 1;
    }
    if (find_swap(0, real)) {
        snprintf(why, why_len, "%s is an active swap area", path);
        return 1;
    }
    if (S_ISREG(st->st_mode))
        return check_loop_backing(st, why, why_len);
    return 0;
}

int mkfs_claim_blockdev(const char *path, const struct stat *st)
{
    if (!S_ISBLK(st->st_mode))
        return -1;
    int fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return fd;
}
