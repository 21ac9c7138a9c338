/* lock.c: being written */
