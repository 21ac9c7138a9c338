/* Extended attributes, packed inside the descriptor:
 * u8 name_len, le16 value_len, name, value — back to back. */
#include <errno.h>
#include <string.h>
#include <sys/xattr.h>

#include "internal.h"

#define XATTR_FIXED 3u

/* No POSIX ACLs, as on VMFS: a file's permissions are its mode bits.  The
 * kernel enforces a FUSE file system's ACLs only when the daemon keeps
 * them in step with the mode and with default-ACL inheritance itself, so
 * an ACL stored here would grant or deny access on paper only.  Refused as
 * by a file system mounted noacl; other system. names are plain data. */
static bool namespace_ok(const char *name)
{
    if (strcmp(name, "system.posix_acl_access") == 0 || strcmp(name, "system.posix_acl_default") == 0)
        return false;
    return strncmp(name, "user.", 5) == 0 || strncmp(name, "trusted.", 8) == 0 ||
           strncmp(name, "security.", 9) == 0 || strncmp(name, "system.", 7) == 0;
}

static int find(const struct vdfs_fd *fd, const char *name, size_t len, uint32_t *at, uint32_t *vlen)
{
    for (uint32_t pos = 0; pos + XATTR_FIXED <= fd->xattr_len;) {
        uint8_t nl = fd->xattr[pos];
        uint16_t vl = (uint16_t)(fd->xattr[pos + 1] | fd->xattr[pos + 2] << 8);
        if (pos + XATTR_FIXED + nl + vl > fd->xattr_len)
            return -EIO;
        if (nl == len && memcmp(&fd->xattr[pos + XATTR_FIXED], name, len) == 0) {
            *at = pos;
            *vlen = vl;
            return 0;
        }
        pos += XATTR_FIXED + nl + vl;
    }
    return -ENODATA;
}

int xattr_remove(struct vdfs_fd *fd, const char *name)
{
    uint32_t at, vl;
    int rc = find(fd, name, strlen(name), &at, &vl);
    if (rc)
        return rc;
    uint32_t size = XATTR_FIXED + (uint32_t)strlen(name) + vl;
    memmove(&fd->xattr[at], &fd->xattr[at + size], fd->xattr_len - at - size);
    memset(&fd->xattr[fd->xattr_len - size], 0, size);
    fd->xattr_len -= size;
    return 0;
}

int xattr_set(struct vdfs_fd *fd, const char *name, const void *value, size_t size, int flags)
{
    size_t len = strlen(name);
    if (len == 0 || len > 255)
        return -ERANGE;
    if (!namespace_ok(name))
        return -EOPNOTSUPP;
    uint32_t at, vl;
    int rc = find(fd, name, len, &at, &vl);
    if (rc && rc != -ENODATA)
        return rc;
    bool exists = rc == 0;
    if (exists && (flags & XATTR_CREATE))
        return -EEXIST;
    if (!exists && (flags & XATTR_REPLACE))
        return -ENODATA;
    uint32_t need = XATTR_FIXED + (uint32_t)len + (uint32_t)size;
    uint32_t freed = exists ? XATTR_FIXED + (uint32_t)len + vl : 0;
    if (size > UINT16_MAX || fd->xattr_len - freed + need > VDFS_XATTR_BYTES)
        return -ENOSPC;
    if (exists)
        xattr_remove(fd, name);
    uint8_t *p = &fd->xattr[fd->xattr_len];
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)size;
    p[2] = (uint8_t)(size >> 8);
    memcpy(p + XATTR_FIXED, name, len);
    if (size)
        memcpy(p + XATTR_FIXED + len, value, size);
    fd->xattr_len += need;
    return 0;
}

ssize_t xattr_get(const struct vdfs_fd *fd, const char *name, void *value, size_t size)
{
    uint32_t at, vl;
    size_t len = strlen(name);
    int rc = find(fd, name, len, &at, &vl);
    if (rc)
        return rc;
    if (size == 0)
        return vl;
    if (size < vl)
        return -ERANGE;
    memcpy(value, &fd->xattr[at + XATTR_FIXED + len], vl);
    return vl;
}

ssize_t xattr_list(const struct vdfs_fd *fd, char *list, size_t size)
{
    size_t total = 0;
    for (uint32_t pos = 0; pos + XATTR_FIXED <= fd->xattr_len;) {
        uint8_t nl = fd->xattr[pos];
        uint16_t vl = (uint16_t)(fd->xattr[pos + 1] | fd->xattr[pos + 2] << 8);
        if (pos + XATTR_FIXED + nl + vl > fd->xattr_len)
            return -EIO;
        if (size) {
            if (total + nl + 1 > size)
                return -ERANGE;
            memcpy(list + total, &fd->xattr[pos + XATTR_FIXED], nl);
            list[total + nl] = 0;
        }
        total += nl + 1u;
        pos += XATTR_FIXED + nl + vl;
    }
    return (ssize_t)total;
}
