// The harness's PostgreSQL is handed over only once it runs queries: its port
// opens while it still refuses sessions ("the database system is starting up").
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import net from "node:net";
import { test } from "node:test";
import pg from "pg";
import { acceptingSessions, testEnv } from "../src/testing/index.js";

/** A FATAL ErrorResponse as PostgreSQL sends it to a session opened while it starts up. */
function startingUp(): Buffer {
  const fields = Buffer.from("SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0");
  const head = Buffer.alloc(5);
  head.write("E", 0);
  head.writeUInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

test("a server whose port is open but which refuses sessions is waited for, then given up on", async () => {
  let sessions = 0;
  const server = net.createServer((socket) => {
    sessions++;
    socket.once("data", () => socket.end(startingUp()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const running = { exitCode: null } as ChildProcess;
  try {
    // 2 s and "at least twice": on a loaded CI machine a session can take most of a second,
    // and a second session is what shows it waited rather than gave up at the first refusal.
    await assert.rejects(acceptingSessions(`postgres://postgres@127.0.0.1:${port}/postgres`, running, 2_000), /did not accept sessions within 2000 ms: the database system is starting up/);
    assert.ok(sessions >= 2, `tried again while it was starting up (${sessions} sessions)`);
  } finally {
    server.close();
  }
});

test("a server that runs queries is accepted at once", async () => {
  const { databaseUrl } = testEnv();
  await acceptingSessions(databaseUrl, { exitCode: null } as ChildProcess, 5_000);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    assert.equal((await client.query("SELECT 1 AS one")).rows[0].one, 1);
  } finally {
    await client.end();
  }
});
