/* The .vmx-like VM configuration: `key = value` lines, '#' comments,
 * values optionally in double quotes.  Relative paths in a file are taken
 * relative to the file's own directory, as a VM folder on a datastore.
 * The file may be in a datastore itself (vdfs:IMAGE:/dir/vm.vmx, read
 * through libvdfs); its relative disk, kernel and initrd paths then name
 * files in that datastore's folder. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../vswitch/protocol.h"
#include "datastore.h"

#define MAX_CONFIG_BYTES (1u << 20)
#define MIN_MEMORY (UINT64_C(4) << 20)
#define MAX_CMDLINE 4095

void config_defaults(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->name, sizeof(cfg->name), "vm");
    cfg->cpus = 1;
    cfg->memory_bytes = UINT64_C(256) << 20;
    cfg->serial = SERIAL_STDOUT;
    cfg->cpu_overcommit_ratio = 4.0;
}

int config_parse_size(const char *text, uint64_t *bytes)
{
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    errno = 0;
    char *end;
    unsigned long long value = strtoull(p, &end, 10);
    if (errno)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case '\0': break;
    case 'B': shift = 0; end++; break;
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: return -1;
    }
    if (shift && (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0))
        end += strlen(end);
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return -1;
    if (shift && value > (UINT64_MAX >> shift))
        return -1;
    *bytes = (uint64_t)value << shift;
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
    snprintf(err, errlen, fmt, arg);
    return -1;
}

static int copy_string(char *dst, size_t size, const char *value, const char *key, char *err,
                       size_t errlen)
{
    if (strlen(value) >= size) {
        snprintf(err, errlen, "%s: value is longer than %zu bytes", key, size - 1);
        return -1;
    }
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

static int parse_unsigned(const char *value, unsigned long max, unsigned long *out)
{
    if (!isdigit((unsigned char)*value))
        return -1;
    errno = 0;
    char *end;
    unsigned long v = strtoul(value, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_mac(const char *text, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(text, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) !=
        6)
        return -1;
    for (int i = 0; i < 6; i++) {
        if (v[i] > 0xff)
            return -1;
        mac[i] = (uint8_t)v[i];
    }
    return (mac[0] & 1) ? -1 : 0; /* a multicast address cannot be a NIC's */
}

static int parse_disk(struct vm_config *cfg, const char *value, char *err, size_t errlen)
{
    if (cfg->ndisks == CONFIG_MAX_DISKS) {
        snprintf(err, errlen, "disk: at most %d disks", CONFIG_MAX_DISKS);
        return -1;
    }
    struct disk_config d = { 0 };
    char buf[CONFIG_PATH_MAX + 64];
    if (strlen(value) >= sizeof(buf))
        return fail(err, errlen, "disk: value too long: %.64s...", value);
    strcpy(buf, value);
    char *save = NULL;
    /* strtok_r skips leading commas: ",ro" would make "ro" the path. */
    char *part = buf[0] == ',' ? NULL : strtok_r(buf, ",", &save);
    if (!part || !*part)
        return fail(err, errlen, "disk: missing path in '%s'", value);
    if (copy_string(d.path, sizeof(d.path), part, "disk", err, errlen) < 0)
        return -1;
    while ((part = strtok_r(NULL, ",", &save))) {
        if (strcmp(part, "ro") == 0 || strcmp(part, "readonly") == 0) {
            d.readonly = true;
        } else if (strcmp(part, "rw") == 0) {
            d.readonly = false;
        } else if (strcmp(part, "cache=none") == 0) {
            d.direct = true;
        } else if (strcmp(part, "cache=writeback") == 0) {
            d.direct = false;
        } else if (strncmp(part, "serial=", 7) == 0) {
            if (strlen(part + 7) > 20)
                return fail(err, errlen, "disk: serial '%s' is longer than 20 bytes", part + 7);
            strcpy(d.serial, part + 7);
        } else {
            return fail(err, errlen, "disk: unknown option '%s' (ro, rw, cache=none, cache=writeback, serial=X)",
                        part);
        }
    }
    cfg->disks[cfg->ndisks++] = d;
    return 0;
}

static int parse_nic(struct vm_config *cfg, const char *value, char *err, size_t errlen)
{
    if (cfg->nnics == CONFIG_MAX_NICS) {
        snprintf(err, errlen, "nic: at most %d NICs", CONFIG_MAX_NICS);
        return -1;
    }
    struct nic_config n = { 0 };
    char buf[256];
    if (strlen(value) >= sizeof(buf))
        return fail(err, errlen, "nic: value too long: %.64s...", value);
    strcpy(buf, value);
    char *save = NULL;
    char *part = buf[0] == ',' ? NULL : strtok_r(buf, ",", &save);
    if (!part || !*part)
        return fail(err, errlen, "nic: missing port group in '%s'", value);
    if (copy_string(n.portgroup, sizeof(n.portgroup), part, "nic port group", err, errlen) < 0)
        return -1;
    while ((part = strtok_r(NULL, ",", &save))) {
        if (strncmp(part, "mac=", 4) == 0) {
            if (parse_mac(part + 4, n.mac) < 0)
                return fail(err, errlen, "nic: '%s' is not a unicast MAC address", part + 4);
            n.mac_set = true;
        } else {
            return fail(err, errlen, "nic: unknown option '%s' (mac=XX:XX:XX:XX:XX:XX)", part);
        }
    }
    memcpy(n.switch_socket, cfg->switch_socket, sizeof(n.switch_socket));
    cfg->nics[cfg->nnics++] = n;
    return 0;
}

int config_set(struct vm_config *cfg, const char *key, const char *value, char *err,
               size_t errlen)
{
    unsigned long n;
    if (strcmp(key, "name") == 0) {
        if (!*value || strchr(value, '/') || strchr(value, '"'))
            return fail(err, errlen, "name: '%s' must be non-empty, without '/' or '\"'", value);
        return copy_string(cfg->name, sizeof(cfg->name), value, key, err, errlen);
    }
    if (strcmp(key, "cpus") == 0) {
        if (parse_unsigned(value, 1000000, &n) < 0 || n == 0 || n > CONFIG_MAX_CPUS) {
            snprintf(err, errlen, "cpus: '%s' is not a count between 1 and %d", value,
                     CONFIG_MAX_CPUS);
            return -1;
        }
        cfg->cpus = (unsigned)n;
        return 0;
    }
    if (strcmp(key, "memory") == 0) {
        uint64_t bytes;
        if (config_parse_size(value, &bytes) < 0)
            return fail(err, errlen, "memory: '%s' is not a size (e.g. 256M, 2G)", value);
        cfg->memory_bytes = bytes;
        return 0;
    }
    if (strcmp(key, "kernel") == 0)
        return copy_string(cfg->kernel, sizeof(cfg->kernel), value, key, err, errlen);
    if (strcmp(key, "initrd") == 0)
        return copy_string(cfg->initrd, sizeof(cfg->initrd), value, key, err, errlen);
    if (strcmp(key, "cmdline") == 0) {
        if (strlen(value) > MAX_CMDLINE)
            return fail(err, errlen, "cmdline: longer than 4095 bytes%s", "");
        return copy_string(cfg->cmdline, sizeof(cfg->cmdline), value, key, err, errlen);
    }
    if (strcmp(key, "disk") == 0)
        return parse_disk(cfg, value, err, errlen);
    if (strcmp(key, "nic") == 0)
        return parse_nic(cfg, value, err, errlen);
    if (strcmp(key, "serial") == 0) {
        if (strcmp(value, "stdout") == 0) {
            cfg->serial = SERIAL_STDOUT;
            return 0;
        }
        if (strncmp(value, "file:", 5) == 0 && value[5]) {
            cfg->serial = SERIAL_FILE;
            return copy_string(cfg->serial_path, sizeof(cfg->serial_path), value + 5, key, err,
                               errlen);
        }
        return fail(err, errlen, "serial: '%s' is neither 'stdout' nor 'file:PATH'", value);
    }
    if (strcmp(key, "switch") == 0) {
        if (strchr(value, '/')) {
            if (copy_string(cfg->switch_socket, sizeof(cfg->switch_socket), value, key, err,
                            errlen) < 0)
                return -1;
        } else if (vdsw_name_is_valid(value)) {
            snprintf(cfg->switch_socket, sizeof(cfg->switch_socket), "%s/%s.sock",
                     VDSW_SOCKET_DIR, value);
        } else {
            return fail(err, errlen,
                        "switch: '%s' is neither a switch name (1-31 of A-Z a-z 0-9 _ . -) "
                        "nor a path to a switch's port socket",
                        value);
        }
        for (unsigned i = 0; i < cfg->nnics; i++)
            memcpy(cfg->nics[i].switch_socket, cfg->switch_socket, sizeof(cfg->switch_socket));
        return 0;
    }
    if (strcmp(key, "cpu_overcommit_ratio") == 0) {
        char *end;
        errno = 0;
        double r = strtod(value, &end);
        if (errno || end == value || *end || !(r > 0.0) || r > 1000.0)
            return fail(err, errlen, "cpu_overcommit_ratio: '%s' is not a ratio in (0, 1000]",
                        value);
        cfg->cpu_overcommit_ratio = r;
        return 0;
    }
    return fail(err, errlen, "unknown key '%s'", key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* Rewrites a relative path value to be relative to `dir`; for a
 * `vdfs:IMAGE:/path` disk, its IMAGE. */
static int resolve_path(const char *dir, const char *value, char *out, size_t outlen)
{
    const char *prefix = datastore_is_name(value) ? "vdfs:" : "";
    const char *path = value + strlen(prefix);
    if (path[0] == '/' || !dir[0])
        return snprintf(out, outlen, "%s", value) < (int)outlen ? 0 : -1;
    return snprintf(out, outlen, "%s%s/%s", prefix, dir, path) < (int)outlen ? 0 : -1;
}

/* A switch is named by its port socket, or by a bare switch name. */
static bool is_path(const char *key, const char *value)
{
    return strcmp(key, "kernel") == 0 || strcmp(key, "initrd") == 0 ||
           strcmp(key, "disk") == 0 || (strcmp(key, "switch") == 0 && strchr(value, '/'));
}

/* In a config read from a datastore, a relative path can only name a
 * file in the datastore: the disk, kernel and initrd keys, whose readers
 * take datastore names. */
static const char *relative_unusable(bool in_datastore, const char *key, const char *value)
{
    if (!in_datastore)
        return NULL;
    if (strcmp(key, "serial") == 0)
        return strncmp(value, "file:", 5) == 0 && value[5] && value[5] != '/'
                   ? "a console file of a config in a datastore must be an absolute host path"
                   : NULL;
    if (!is_path(key, value) || !*value || value[0] == '/')
        return NULL;
    if (strcmp(key, "switch") == 0)
        return "a switch socket of a config in a datastore must be an absolute host path";
    if (datastore_is_name(value) && value[5] != '/')
        return "a datastore IMAGE of a config in a datastore must be an absolute host path";
    return NULL;
}

static FILE *open_config(const char *path, char **text, char *err, size_t errlen)
{
    *text = NULL;
    if (!datastore_is_name(path)) {
        FILE *f = fopen(path, "r");
        if (!f)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return f;
    }
    uint8_t *data;
    size_t len;
    if (datastore_read_file(path, MAX_CONFIG_BYTES, &data, &len, err, errlen) < 0)
        return NULL;
    FILE *f = len ? fmemopen(data, len, "r") : fopen("/dev/null", "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(data);
        return NULL;
    }
    *text = (char *)data;
    return f;
}

int config_load(struct vm_config *cfg, const char *path, char *err, size_t errlen)
{
    char *text;
    FILE *f = open_config(path, &text, err, errlen);
    if (!f)
        return -1;
    bool in_datastore = datastore_is_name(path);
    char dir[CONFIG_PATH_MAX] = "";
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) < sizeof(dir)) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        if (!dir[0])
            strcpy(dir, "/");
    }
    char line[8192];
    unsigned lineno = 0;
    char msg[512];
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        char resolved[CONFIG_PATH_MAX + 64];
        const char *unusable = relative_unusable(in_datastore, key, value);
        if (unusable) {
            snprintf(err, errlen, "%s:%u: %s: %s", path, lineno, key, unusable);
            rc = -1;
            break;
        }
        /* A value with no path before its options (",ro") is left for
         * config_set to refuse, not made into "DIR/,ro". */
        if (is_path(key, value) && *value && *value != ',') {
            if (resolve_path(dir, value, resolved, sizeof(resolved)) < 0) {
                snprintf(err, errlen, "%s:%u: %s: path too long", path, lineno, key);
                rc = -1;
                break;
            }
            value = resolved;
        } else if (strcmp(key, "serial") == 0 && strncmp(value, "file:", 5) == 0 &&
                   value[5] && value[5] != '/' && dir[0]) {
            snprintf(resolved, sizeof(resolved), "file:%s/%s", dir, value + 5);
            value = resolved;
        }
        if (config_set(cfg, key, value, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, msg);
            rc = -1;
            break;
        }
    }
    fclose(f);
    free(text);
    return rc;
}

static uint64_t host_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

static int check_readable_file(const char *what, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        snprintf(err, errlen, "%s %s: not a regular file", what, path);
        return -1;
    }
    if (access(path, R_OK) < 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    return 0;
}

int config_validate(const struct vm_config *cfg, char *err, size_t errlen)
{
    if (cfg->memory_bytes < MIN_MEMORY) {
        snprintf(err, errlen, "memory: %" PRIu64 " bytes is too small (minimum 4M)",
                 cfg->memory_bytes);
        return -1;
    }
    uint64_t host = host_memory_bytes();
    if (host && cfg->memory_bytes / 4 > host) {
        snprintf(err, errlen,
                 "memory: %" PRIu64 " MiB is more than 4x this host's %" PRIu64 " MiB of RAM",
                 cfg->memory_bytes >> 20, host >> 20);
        return -1;
    }
    if (cfg->memory_bytes & 0xfff) {
        snprintf(err, errlen, "memory: %" PRIu64 " bytes is not a multiple of 4 KiB",
                 cfg->memory_bytes);
        return -1;
    }
    if (!cfg->kernel[0]) {
        snprintf(err, errlen, "no kernel given (kernel = PATH or --kernel PATH)");
        return -1;
    }
    /* Files in a datastore are checked when they are read. */
    if (!datastore_is_name(cfg->kernel) && check_readable_file("kernel", cfg->kernel, err, errlen) < 0)
        return -1;
    if (cfg->initrd[0] && !datastore_is_name(cfg->initrd) &&
        check_readable_file("initrd", cfg->initrd, err, errlen) < 0)
        return -1;
    for (unsigned i = 0; i < cfg->ndisks; i++) {
        const char *p = cfg->disks[i].path;
        if (datastore_is_name(p))
            continue; /* opened through libvdfs by the disk device */
        if (check_readable_file("disk", p, err, errlen) < 0)
            return -1;
    }
    return 0;
}
