/* filemap.c: being written */
