#pragma once
// Everything a training program needs: config, distributed setup, communicator, engine.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>
#include <zerotrain/distributed.h>
#include <zerotrain/engine.h>
#include <zerotrain/estimate.h>
#include <zerotrain/monitor.h>
#include <zerotrain/sharded_init.h>
#include <zerotrain/unit_module.h>
#include <zerotrain/units.h>
