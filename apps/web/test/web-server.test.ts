// The web app's request handler as make run and the browser tests load it (server.ts): the build
// served with the configuration it was built with, and nothing printed about how it was started.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { createWebApp, ensureWebBuild } from "../server.js";

// One app a process: Next keeps state past an app's close.
let app: Awaited<ReturnType<typeof createWebApp>>;
let server: http.Server;
let url: string;
const said: string[] = [];

before(async () => {
  await ensureWebBuild();
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void said.push(args.map(String).join(" "));
  app = await createWebApp({ apiUrl: "http://127.0.0.1:9" }).finally(() => (console.warn = warn));
  server = http.createServer(app.handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await app?.close();
});

test("loading the build prints no warning from Next (\"next start\" does not work with \"output: standalone\") and serves it", async () => {
  const res = await fetch(`${url}/healthz`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "ok\n");
  assert.deepEqual(said, [], "Next said nothing on start");
});

test("the language switch goes back to a page of this site only: a backslash path (another host to a browser) goes home", async () => {
  const back = async (to: string) => (await fetch(`${url}/lang?to=sw&back=${encodeURIComponent(to)}`, { redirect: "manual" })).headers.get("location");
  assert.equal(await back("/w/withdraw?tab=limits"), "/w/withdraw?tab=limits");
  // Before, "/\evil.com" passed the check (a "/", not "//"), and browsers read it as //evil.com.
  assert.equal(await back("/\\evil.com"), "/");
  assert.equal(await back("//evil.com/x"), "/");
  assert.equal(await back("https://evil.com/"), "/");
});
