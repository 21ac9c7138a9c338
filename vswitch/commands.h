/* Control commands: one request line in, one response out.
 * Request:  COMMAND [key=value ...]   e.g. "portgroup.add name=web vlan=10 format=json"
 * Response: "OK\n" or "ERR <message>\n", then the body (text or JSON). */
#ifndef VDFS_VSWITCH_COMMANDS_H
#define VDFS_VSWITCH_COMMANDS_H

#include "output.h"
#include "vswitch.h"

void command_execute(struct vswitch *sw, char *line, struct output *response);

#endif
