// The peak memory of a CLI run: the CLI process and its inference workers, each one's peak resident set size.
//
// The CLI runs under /usr/bin/time, whose %M is the largest peak RSS of the process tree (the kernel folds a reaped
// child's peak into its parent's as a maximum, not a sum); meanwhile /proc is polled every few milliseconds for the
// CLI's descendants (the worker), whose VmHWM (peak RSS so far) and VmRSS are read. The worker's peak comes early and
// stays (the model and one call's activations); the CLI's is exact from %M whenever %M is above the worker's, which is
// so for every image of a megapixel or more.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const kb = (status, key) => {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) * 1024 : 0;
};

/** pid -> parent pid, for every process now. */
function parents() {
  const out = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.set(Number(name), ppid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function descendants(root, map) {
  const out = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop();
    for (const [child, parent] of map) {
      if (parent === p) {
        out.push(child);
        todo.push(child);
      }
    }
  }
  return out;
}

/**
 * Run `node cliPath ...args`; resolves with code, stdout, stderr, seconds and memory: { cli, worker, total,
 * simultaneous } in bytes (total = cli + worker, each at its own peak: an upper bound of the two together;
 * simultaneous = the largest sum of their current RSS seen while polling).
 */
export function runWithPeak(cliPath, args, { cwd, env = {}, pollMs = 5 } = {}) {
  if (!existsSync('/usr/bin/time')) throw new Error('/usr/bin/time is needed (GNU time: apt-get install time)');
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('/usr/bin/time', ['-f', 'cm-maxrss-kb %M', process.execPath, cliPath, ...args], { cwd, env: { ...process.env, ORT_DISABLE_TELEMETRY: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const hwm = new Map(); // pid -> peak bytes seen
    let cliPid;
    let simultaneous = 0;
    const poll = () => {
      const map = parents();
      const tree = descendants(child.pid, map);
      if (tree.length === 0) return;
      cliPid ??= tree.find((p) => map.get(p) === child.pid);
      let now = 0;
      for (const pid of tree) {
        try {
          const status = readFileSync(`/proc/${pid}/status`, 'utf8');
          hwm.set(pid, Math.max(hwm.get(pid) ?? 0, kb(status, 'VmHWM')));
          now += kb(status, 'VmRSS');
        } catch {
          // exited meanwhile
        }
      }
      simultaneous = Math.max(simultaneous, now);
    };
    const timer = setInterval(poll, pollMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      const m = /cm-maxrss-kb (\d+)\n?/.exec(stderr);
      const treeMax = m ? Number(m[1]) * 1024 : 0;
      stderr = stderr.replace(/cm-maxrss-kb \d+\n?/, '');
      // The inference workers (two on a CPU of two or more cores: runtime/processes.ts), each at its own peak, added.
      const worker = [...hwm].filter(([pid]) => pid !== cliPid).reduce((a, [, v]) => a + v, 0);
      const cliPolled = hwm.get(cliPid) ?? 0;
      // %M is the larger of the two peaks: the CLI's when it is above what the worker reached.
      const cli = treeMax > worker ? Math.max(treeMax, cliPolled) : cliPolled;
      resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000, memory: { cli, worker, total: cli + worker, simultaneous, treeMax } });
    });
  });
}
