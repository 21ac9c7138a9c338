/* device.c: being written */
