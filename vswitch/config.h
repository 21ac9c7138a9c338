/* The switch's configuration file (daemon --config): its settings as the
 * control requests that rebuild them, replayed at start and rewritten after
 * every change, so port groups, policies, MTU and uplink outlast a restart. */
#ifndef VDFS_VSWITCH_CONFIG_H
#define VDFS_VSWITCH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "vswitch.h"

/* Applies the settings in sw->config_path, skipping its uplink line when
 * skip_uplink (the command line names another). A missing file is an empty
 * one. Returns -1 with "PATH:LINE: reason" in err. */
int config_load(struct vswitch *sw, bool skip_uplink, char *err, size_t err_len);
/* Replaces sw->config_path with the current settings (a temporary file,
 * fsync, rename), so a crash leaves the old file or the new one. */
int config_save(const struct vswitch *sw, char *err, size_t err_len);

#endif
