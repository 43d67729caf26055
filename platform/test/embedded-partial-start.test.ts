// `make run` with its port already taken (another one running, say) fails at
// the gateway, the last server it starts: everything started before it
// (PGlite and its socket server, the simulators, the services) is stopped,
// so the error is all that is left and the process exits on its own.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { initializedPgliteFolder, sourceLoaderFlags, type PgliteFolder } from "@ttip/runtime/testing";

const child = fileURLToPath(new URL("./embedded-partial-start.child.ts", import.meta.url));
/** From the report to the exit: closing is immediate; PGlite's start alone takes seconds on a busy machine. */
const EXIT_WITHIN_MS = 20_000;

interface Report {
  error: string;
  servers: Array<{ port: number; listening: boolean; accepts: boolean }>;
}

/** Runs the child; resolves with its report and whether it exited by itself (it is killed otherwise). */
function runChild(busyPort: number, dataDir: string): Promise<{ report?: Report; exited: boolean; code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [...sourceLoaderFlags(), child, String(busyPort), dataDir], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let report: Report | undefined;
    let killer: NodeJS.Timeout | undefined;
    let exited = true;
    proc.stderr.on("data", (d) => (stderr += d));
    proc.stdout.on("data", (d) => {
      stdout += d;
      const line = stdout.split("\n").find((l) => l.startsWith("{"));
      if (report || !line) return;
      report = JSON.parse(line) as Report;
      killer = setTimeout(() => ((exited = false), proc.kill("SIGKILL")), EXIT_WITHIN_MS);
    });
    // Before any report: a start that hangs instead of failing.
    const hung = setTimeout(() => ((exited = false), proc.kill("SIGKILL")), 180_000);
    proc.on("exit", (code) => {
      clearTimeout(killer);
      clearTimeout(hung);
      resolve({ report, exited, code, stderr });
    });
  });
}

describe("the embedded platform's start failing late (its port taken)", () => {
  const taken = net.createServer();
  let port = 0;
  // A copy of a data folder PGlite initialized once: the child's PGlite opens it without initdb.
  let data: PgliteFolder | undefined;
  before(async () => {
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    port = (taken.address() as net.AddressInfo).port;
    data = await initializedPgliteFolder();
  });
  after(async () => {
    data?.remove();
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  });

  test("stops what it started: every earlier server's port is closed and the process exits by itself", async () => {
    const run = await runChild(port, data!.dir);
    assert.ok(run.report, `the child reports (stderr: ${run.stderr.slice(-2000)})`);
    assert.match(run.report.error, new RegExp(`Port ${port} on 127.0.0.1 is already in use`));
    const others = run.report.servers.filter((s) => s.port !== port);
    // PGlite's socket server, four simulators and seven services listened before the gateway failed.
    assert.ok(others.length >= 12, `servers that listened: ${JSON.stringify(run.report.servers)}`);
    assert.deepEqual(others.filter((s) => s.listening || s.accepts), [], "every one closed");
    assert.ok(run.exited, `the process exits on its own (${run.stderr.slice(-2000)})`);
    assert.equal(run.code, 0);
  });
});
