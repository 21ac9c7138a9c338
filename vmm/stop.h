/* `vdfs-vm stop NAME|PID [--force] [--timeout SECONDS]`. */
#ifndef VDFS_VMM_STOP_H
#define VDFS_VMM_STOP_H

/* argv[0] is "stop". Returns the process exit status. */
int vm_stop_command(int argc, char **argv);

#endif
