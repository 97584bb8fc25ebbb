// A worker for BenchmarkVersusTypeScript (modal/tsbench_test.go): it makes
// sandboxes with TypeScript ComputeSDK's Modal provider (@computesdk/modal,
// on Modal's own JS SDK), one per "run" line read from stdin, and answers
// each with one JSON line: the milliseconds from create to the first
// command's output, and that output. The sandbox is destroyed after the
// answer (not timed). The Modal server, credentials and config file come
// from the environment (MODAL_SERVER_URL, MODAL_TOKEN_ID, ...), as for any
// program on Modal's SDK. With --no-ports the sandboxes expose no port (the
// provider exposes its daemon's port 38989 by default).
import { createInterface } from "node:readline";
import { modal } from "@computesdk/modal";

const noPorts = process.argv.includes("--no-ports");
const compute = modal({});
const opts = noPorts ? { daemonSsePort: false } : undefined;

async function run() {
  const t0 = performance.now();
  const sandbox = await compute.sandbox.create(opts);
  const t1 = performance.now();
  const res = await sandbox.runCommand("echo ready");
  const t2 = performance.now();
  await sandbox.destroy();
  if (res.exitCode !== 0 || res.stdout !== "ready\n") {
    throw new Error(`echo ready gave exit ${res.exitCode}, stdout ${JSON.stringify(res.stdout)}, stderr ${JSON.stringify(res.stderr)}`);
  }
  return { ms: t2 - t0, createMs: t1 - t0, stdout: res.stdout };
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line === "quit") break;
  try {
    console.log(JSON.stringify(await run()));
  } catch (err) {
    console.log(JSON.stringify({ error: String(err && err.stack || err) }));
  }
}
process.exit(0);
