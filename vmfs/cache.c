/* cache.c: being written */
