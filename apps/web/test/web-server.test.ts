// The web app's request handler as make run and the browser tests load it (server.ts): the build
// served with the configuration it was built with, and nothing printed about how it was started.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { createWebApp, ensureWebBuild } from "../server.js";

test("loading the build prints no warning from Next (\"next start\" does not work with \"output: standalone\") and serves it", async () => {
  await ensureWebBuild();
  const said: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void said.push(args.map(String).join(" "));
  const app = await createWebApp({ apiUrl: "http://127.0.0.1:9" }).finally(() => (console.warn = warn));
  const server = http.createServer(app.handle);
  try {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok\n");
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await app.close();
  }
  assert.deepEqual(said, [], "Next said nothing on start");
});
