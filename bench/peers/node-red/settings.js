// Node-RED settings for the benchmark peer: the defaults a fresh install writes, less what
// would reach outside 127.0.0.1 (update checks) or ask questions at start (the welcome tour).
// The bench passes NODE_RED_PORT, MQTT_PORT and RECEIVER_URL in the environment; the flow
// (flow.json beside this file) reads the last two as ${MQTT_PORT} and ${RECEIVER_URL}.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.NODE_RED_PORT || "1880", 10),
    credentialSecret: false,
    flowFilePretty: true,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false },
    editorTheme: { tours: false, projects: { enabled: false } },
    logging: { console: { level: "info", metrics: false, audit: false } },
    functionExternalModules: false,
    exportGlobalContextKeys: false
};
