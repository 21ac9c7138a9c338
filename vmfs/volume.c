/* volume.c: being written */
