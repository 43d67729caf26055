// The app's browser build (react-native-web, `expo export -p web`), made once and
// reused until its sources change, and served on a free loopback port.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const app = fileURLToPath(new URL("..", import.meta.url));
const root = path.resolve(app, "../..");
export const DIST = path.join(app, "dist");
const STAMP = path.join(DIST, ".source-hash");
const SOURCES = ["src", "index.ts", "app.json", "babel.config.js", "metro.config.js", "package-lock.json"].map((p) => path.join(app, p));
const SHARED = [path.join(root, "proto/gen"), path.join(root, "apps/web/src/lib"), path.join(root, "services/runtime/src/mpesa-limits.ts")];

function files(p: string): string[] {
  if (!existsSync(p)) return [];
  if (!statSync(p).isDirectory()) return [p];
  return readdirSync(p).sort().flatMap((n) => (n === "__tests__" || n === "testing" ? [] : files(path.join(p, n))));
}

function sourceHash(): string {
  const h = createHash("sha256");
  for (const f of [...SOURCES, ...SHARED].flatMap(files)) h.update(path.relative(root, f)).update("\0").update(readFileSync(f)).update("\0");
  return h.digest("hex");
}

export async function ensureMobileWebBuild(log: (line: string) => void = () => undefined): Promise<string> {
  const hash = sourceHash();
  if (existsSync(STAMP) && readFileSync(STAMP, "utf8") === hash) return DIST;
  rmSync(DIST, { recursive: true, force: true });
  log("building the mobile app for the web (expo export -p web)…");
  const child = spawn(path.join(app, "scripts/with-node.sh"), ["npx", "expo", "export", "-p", "web", "--output-dir", "dist"], {
    cwd: app,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, CI: "1", EXPO_NO_TELEMETRY: "1" },
  });
  let out = "";
  const keep = (d: Buffer) => void (out = (out + d.toString()).slice(-20_000));
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0 || !existsSync(path.join(DIST, "index.html"))) throw new Error(`expo export -p web failed (${code}):\n${out}`);
  writeFileSync(STAMP, hash);
  return DIST;
}

const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon", ".ttf": "font/ttf" };

/** Serves the build (index.html for any path that is not a file) on 127.0.0.1. */
export async function serveMobileWeb(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    let file = path.normalize(path.join(dir, decodeURIComponent(url.pathname)));
    if (!file.startsWith(dir) || !existsSync(file) || statSync(file).isDirectory()) file = path.join(dir, "index.html");
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}
