/* layout.c: being written */
