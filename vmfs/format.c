/* format.c: being written */
