/* The guest's modes (mode= on the command line); each returns the status
 * guest_finish reports. */
#ifndef GUEST_MODES_H
#define GUEST_MODES_H

#include "platform.h"

enum guest_status mode_pci(void);
enum guest_status mode_blktest(void);
enum guest_status mode_blkbench(void);
enum guest_status mode_net_responder(void);
enum guest_status mode_net_ping(void);
enum guest_status mode_net_blast(void);
enum guest_status mode_wait(void);

#endif
