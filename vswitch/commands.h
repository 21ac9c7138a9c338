/* Control commands: one request line in, one response out.
 * Request:  COMMAND [key=value ...]   e.g. "portgroup.add name=web vlan=10 format=json"
 * Response: "OK\n" or "ERR <message>\n", then the body (text or JSON). */
#ifndef VDFS_VSWITCH_COMMANDS_H
#define VDFS_VSWITCH_COMMANDS_H

#include "output.h"
#include "vswitch.h"

/* Runs a control request; a setting that succeeds is saved to the
 * configuration file, if the switch has one. */
void command_execute(struct vswitch *sw, char *line, struct output *response);
/* Runs one line of a configuration file: a setting, never saved. Returns -1
 * with the reason in err. */
int command_apply_setting(struct vswitch *sw, char *line, char *err, size_t err_len);
/* The settings requests that rebuild the switch's configuration from its
 * defaults, one per line. */
void commands_write_settings(const struct vswitch *sw, struct output *o);

#endif
