//! firmware-sim: a simulated fleet of field devices (recorders, solar water
//! heaters, LED displays, lighting controllers) that speak aftercare's MQTT
//! convention. It knows the wire protocol only, never the gateway's code, so
//! it is an honest oracle for tests and a demo fleet for newcomers.
//!
//! Each device is a physical model stepped on a simulated clock that can run
//! faster than real time (`speed`), publishes telemetry with that clock's
//! timestamps, keeps its own MQTT connection with a last will, and takes
//! faults by command or from a scenario file.

pub mod fleet;
pub mod load;
pub mod modbus;
pub mod models;
pub mod scenario;

pub use fleet::{Command, DeviceSpec, ModbusMode, SimOptions, run};
pub use models::Kind;
