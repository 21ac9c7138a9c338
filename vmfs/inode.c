/* inode.c: being written */
