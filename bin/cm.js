#!/usr/bin/env node
// onnxruntime writes a device id and a database under ~/.cache unless this is set before its first session.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
// A command that runs a model starts its inference worker first: it boots while the CLI itself loads.
const { prestartWorker } = await import('../dist/runtime/worker-process.js');
prestartWorker(process.argv.slice(2));
const { main } = await import('../dist/cli.js');
process.exitCode = await main();
