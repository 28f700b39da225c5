#ifndef MASSAGEFLEET_CMODBUS_SHIM_H
#define MASSAGEFLEET_CMODBUS_SHIM_H

// libmodbus (Debian's libmodbus-dev): modbus.h brings in the TCP and RTU
// back ends (modbus-tcp.h, modbus-rtu.h). Only Sources/MassagerLink sees it.
#include <modbus.h>

#endif
