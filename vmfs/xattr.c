/* xattr.c: being written */
