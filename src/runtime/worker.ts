/**
 * The inference worker: a child process, forked by model.ts, that owns the onnxruntime session. The CLI's own process
 * stays free while a model call runs (the spinner moves, Ctrl-C is handled at once: the CLI kills this process).
 *
 * A process rather than a worker thread, for two reasons measured here (onnxruntime-node 1.30, Node 20):
 * `session.run` is a synchronous native call, and process.exit() with a worker thread inside it waits for the call to
 * end (13 s for a long call) and then aborts with SIGABRT; and Dawn (WebGPU) and the Vulkan loader print warnings
 * straight to file descriptor 2, which only a separate process's stderr lets the CLI keep from the user.
 */
import { CmError } from '../errors.js';
import { DeviceUnavailable, openSession, type StartedSession } from './session.js';
import { STDERR_MARK, type WireError, type WorkerReply, type WorkerRequest } from './worker-protocol.js';

// Signals are the CLI's to handle (a Ctrl-C on a terminal reaches the whole process group): it kills this process.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);

let session: StartedSession | undefined;
let queue: Promise<void> = Promise.resolve();

function send(reply: WorkerReply): void {
  process.send?.(reply);
}

function wire(e: unknown): WireError {
  if (e instanceof DeviceUnavailable) return { name: 'DeviceUnavailable', message: e.message, unavailable: e.skip };
  if (e instanceof CmError) return { name: e.name, message: e.message, exitCode: e.exitCode };
  return { name: 'Error', message: e instanceof Error ? e.message : String(e) };
}

async function handle(msg: WorkerRequest): Promise<void> {
  if (msg.op === 'open') {
    try {
      session = await openSession(msg.req);
      send({ op: 'opened', device: session.device, skipped: session.skipped, check: session.check });
    } catch (e) {
      send({ op: 'failed', id: null, error: wire(e) });
    }
    process.stderr.write(`${STDERR_MARK}\n`);
  } else if (msg.op === 'run') {
    try {
      if (!session) throw new Error('run before open');
      const data = await session.run(msg.x, msg.shape, msg.sigma);
      send({ op: 'result', id: msg.id, data });
    } catch (e) {
      send({ op: 'failed', id: msg.id, error: wire(e) });
    }
  } else if (msg.op === 'close') {
    await session?.release().catch(() => undefined);
    session = undefined;
    process.disconnect?.();
  }
}

process.on('message', (msg: WorkerRequest) => {
  queue = queue.then(() => handle(msg));
});
// The CLI went away (killed without killing us): nothing left to answer.
process.on('disconnect', () => process.exit(0));
