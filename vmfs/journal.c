/* journal.c: being written */
