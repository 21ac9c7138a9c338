#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "output.h"

#define CONFIG_LINE_MAX VSW_CONTROL_LINE_MAX

static bool is_blank_or_comment(const char *line)
{
    line += strspn(line, " \t");
    return *line == '\0' || *line == '#';
}

int config_load(struct vswitch *sw, bool skip_uplink, char *err, size_t err_len)
{
    FILE *f = fopen(sw->config_path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, err_len, "%s: %s", sw->config_path, strerror(errno));
        return -1;
    }
    char line[CONFIG_LINE_MAX + 2];
    unsigned number = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        number++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        else if (!feof(f)) {
            snprintf(err, err_len, "%s:%u: line longer than %d bytes", sw->config_path, number, CONFIG_LINE_MAX);
            rc = -1;
            break;
        }
        if (is_blank_or_comment(line))
            continue;
        if (skip_uplink && strncmp(line + strspn(line, " \t"), "uplink.set", 10) == 0)
            continue;
        char reason[200];
        if (command_apply_setting(sw, line, reason, sizeof(reason))) {
            snprintf(err, err_len, "%s:%u: %s", sw->config_path, number, reason);
            rc = -1;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, err_len, "%s: %s", sw->config_path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    return rc;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void sync_directory_of(const char *path)
{
    char copy[sizeof(((struct vswitch *)0)->config_path)];
    snprintf(copy, sizeof(copy), "%s", path);
    int dir = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
}

int config_save(const struct vswitch *sw, char *err, size_t err_len)
{
    struct output text = {0};
    out_printf(&text,
               "# vdfs-switch %s: its settings, rewritten by the switch after each change.\n"
               "# Each line is a control request (docs/switch.md, CONFIGURATION FILE).\n",
               sw->name);
    commands_write_settings(sw, &text);
    if (text.failed) {
        out_free(&text);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    char temp[sizeof(sw->config_path) + 8];
    bool saved = false;
    int n = snprintf(temp, sizeof(temp), "%s.new", sw->config_path);
    int fd = -1, saved_errno = ENAMETOOLONG;
    if (n > 0 && (size_t)n < sizeof(temp)) {
        /* A fresh file, never one a symlink left in the directory points to. */
        unlink(temp);
        fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        saved_errno = errno;
    }
    if (fd >= 0) {
        if (write_all(fd, text.data, text.len) || fsync(fd)) {
            saved_errno = errno;
            close(fd);
        } else if (close(fd) || rename(temp, sw->config_path)) {
            saved_errno = errno;
        } else {
            saved = true;
        }
        if (!saved)
            unlink(temp);
    }
    out_free(&text);
    if (!saved) {
        snprintf(err, err_len, "cannot write %s: %s", sw->config_path, strerror(saved_errno));
        return -1;
    }
    sync_directory_of(sw->config_path);
    return 0;
}
