#ifndef MASSAGEFLEET_CMOSQUITTO_SHIM_H
#define MASSAGEFLEET_CMOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

#endif
