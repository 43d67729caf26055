import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import net from "node:net";
import { test } from "node:test";
import { startEmbeddedPostgres } from "../src/embedded.js";
import { Metrics, startServer, StartupError } from "../src/index.js";
import { captureLogger, initializedPgliteFolder } from "../src/testing/index.js";

test("item 14: a second embedded Postgres on the same data folder is refused with a sentence; a stale lock is taken over", async () => {
  // Already through PGlite's initdb (4 s of CPU): what is tested is the folder's lock.
  const data = await initializedPgliteFolder();
  const dataDir = data.dir;
  try {
    const first = await startEmbeddedPostgres(dataDir);
    try {
      // Another process holds it (this test stands in for that process with a live PID that is not ours).
      const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"]);
      try {
        await first.close();
        await writeFile(`${dataDir}.lock`, `${other.pid}\n`);
        await assert.rejects(startEmbeddedPostgres(dataDir), (err: Error) =>
          err instanceof StartupError && err.message.includes(`process ${other.pid}`) && err.message.includes("DATA_DIR"),
        );
      } finally {
        other.kill("SIGKILL");
        await new Promise((r) => other.once("exit", r));
      }
      // Its process is gone: the lock is stale and the next start takes it over.
      const again = await startEmbeddedPostgres(dataDir);
      await again.close();
    } finally {
      await first.close().catch(() => undefined);
    }
  } finally {
    data.remove();
  }
});

test("item 14: a port in use is a sentence, not an EADDRINUSE stack", async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    await assert.rejects(
      startServer({ name: "second", logger: captureLogger("silent").logger, metrics: new Metrics(), services: [], routes: () => undefined, port }),
      (err: Error) => err instanceof StartupError && err.message.includes(`Port ${port}`) && err.message.includes("PORT="),
    );
  } finally {
    blocker.close();
  }
});
