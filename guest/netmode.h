/* What the network modes share: finding and opening the NIC (nic=, ip=). */
#ifndef GUEST_NETMODE_H
#define GUEST_NETMODE_H

#include "netstack.h"
#include "platform.h"

/* Opens virtio-net number nic= (default 0), takes ip= (optional unless
 * ip_required), waits for the link and prints
 * "RESULT nic=ready mac=.. ip=.." so that hosts know the guest listens.
 * Returns STATUS_PASS or the status to finish with. */
enum guest_status net_mode_start(struct net_dev *dev, struct net_host *host, bool ip_required);

#endif
