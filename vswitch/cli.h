/* The esxcli-like client side of vdfs-switch: turns subcommands into control
 * requests and prints the switch's answer. */
#ifndef VDFS_VSWITCH_CLI_H
#define VDFS_VSWITCH_CLI_H

#include <stdio.h>

/* argv starts at the first word after the program name.  Returns the exit code. */
int cli_run(int argc, char **argv);
void cli_usage(FILE *out);

#endif
