#ifndef MASSAGEFLEET_CMODBUS_SHIM_H
#define MASSAGEFLEET_CMODBUS_SHIM_H

// libmodbus (Debian's libmodbus-dev): modbus.h brings in the TCP and RTU
// back ends (modbus-tcp.h, modbus-rtu.h). Only Sources/MassagerLink sees it.
#include <modbus.h>
#include <stddef.h>
#include <stdlib.h>

// Pseudo-terminals (POSIX), for the reference controller's serial line
// (PseudoSerialLine): the Glibc module declares these only with
// _XOPEN_SOURCE, so they are declared here as glibc defines them.
extern int posix_openpt(int flags);
extern int grantpt(int fd);
extern int unlockpt(int fd);
extern int ptsname_r(int fd, char *buf, size_t buflen);

#endif
