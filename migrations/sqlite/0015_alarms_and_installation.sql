-- Device-reported alarm codes that are active: a device sends `{"code": "SD_ERR",
-- "active": true}` once, so a restart during its rule's hold must not forget it.
CREATE TABLE device_alarms (
    device TEXT    NOT NULL,
    code   TEXT    NOT NULL,
    since  INTEGER NOT NULL,
    PRIMARY KEY (device, code)
);
-- Facts about this installation, such as the id its MQTT client goes by.
CREATE TABLE installation (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
