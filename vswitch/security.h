/* Security policies: promiscuous mode, MAC changes, forged transmits. */
#ifndef VDFS_VSWITCH_SECURITY_H
#define VDFS_VSWITCH_SECURITY_H

#include "vswitch.h"

/* The port group's settings with inherited values filled from the switch. */
struct security_policy security_effective(const struct vswitch *sw, const struct portgroup *pg);
/* Admits or rejects a frame's source MAC on a VM port.  Returns
 * DROP_REASONS to admit.  May register a changed MAC for the port. */
enum drop_reason security_check_source(struct vswitch *sw, struct port *port, const uint8_t *src);
/* Drops a port's changed MAC, e.g. when it detaches or MAC changes are rejected again. */
void security_forget_changed_mac(struct vswitch *sw, struct port *port);
/* "on|accept|off|reject" (and "inherit" when allowed) into a policy value. */
bool policy_value_parse(const char *text, bool allow_inherit, int8_t *out);
const char *policy_value_name(int8_t value);

#endif
