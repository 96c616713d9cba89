#pragma once
// Everything in the test support library, for tests that use most of it.
#include "support/dps_emulator.hpp"
#include "support/files.hpp"
#include "support/loop_run.hpp"
#include "support/mqtt_client.hpp"
#include "support/net.hpp"
#include "support/notify_socket.hpp"
#include "support/private_bus.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "support/unix_broker.hpp"
#include "support/wait.hpp"
