/* alloc.c: being written */
