/* dir.c: being written */
