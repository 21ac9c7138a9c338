/* heartbeat.c: being written */
