// The admin console's request handler for /admin: reads a build, never makes one, so a
// host that serves a build made elsewhere (the cluster's gateway, from its image) loads
// nothing of the build tooling.
import { readFileSync } from "node:fs";
import type http from "node:http";
import path from "node:path";

export const ADMIN_PATH = "/admin";

const TYPES: Record<string, string> = { ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8" };
// Only our own scripts and our own API; no frames (clickjacking on money buttons), no referrer leaks.
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** True for the paths this handler answers. */
export const isAdminPath = (url: string | undefined): boolean => {
  const p = (url ?? "").split("?")[0];
  return p === ADMIN_PATH || p.startsWith(`${ADMIN_PATH}/`);
};

/** A request handler for /admin and below, reading the build from `dist` (read once, it is small). */
export function createAdminHandler(dist: string): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const cache = new Map<string, Buffer>();
  const read = (file: string) => {
    let body = cache.get(file);
    if (!body) cache.set(file, (body = readFileSync(file)));
    return body;
  };
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    // Not decoded: asset names need no escapes, and a broken one threw here, outside any handler, ending the process.
    const p = (req.url ?? "").split("?")[0];
    const asset = /^\/admin\/assets\/([A-Za-z0-9_.-]+)$/.exec(p)?.[1];
    try {
      if (asset) {
        const body = read(path.join(dist, "assets", asset));
        // Names carry a content hash: cache for good.
        res.writeHead(200, { "content-type": TYPES[path.extname(asset)] ?? "application/octet-stream", "cache-control": "public, max-age=31536000, immutable", ...SECURITY_HEADERS });
        res.end(req.method === "HEAD" ? undefined : body);
        return;
      }
      const page = read(path.join(dist, "index.html"));
      res.writeHead(200, { "content-type": TYPES[".html"], "cache-control": "no-cache", ...SECURITY_HEADERS });
      res.end(req.method === "HEAD" ? undefined : page);
    } catch {
      res.writeHead(asset ? 404 : 503, { "content-type": "text/plain" });
      res.end(asset ? "not found\n" : "the admin console is not built: run make run (or node --import tsx apps/admin/build.ts)\n");
    }
  };
}
