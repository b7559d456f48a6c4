#!/usr/bin/env node
// onnxruntime writes a device id and a database under ~/.cache unless this is set before its first session.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
const { main } = await import('../dist/cli.js');
process.exitCode = await main();
