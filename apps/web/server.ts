// The web app as a request handler, for the gateway to serve on its one port
// (make run, tests) or for its own process in a cluster (main.ts).
import { readFileSync } from "node:fs";
import type http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import next from "next";
import { parseWebSettings, provideWebSettings } from "./src/lib/settings.js";

export { ensureWebBuild, webBuildIsCurrent } from "./build.js";

export const WEB_DIR = path.dirname(fileURLToPath(import.meta.url));

export interface WebAppOptions {
  /** Where the pages' server code calls the public API (the gateway), e.g. http://127.0.0.1:8080. */
  apiUrl: string;
  /** Where this handler is served (default apiUrl: the gateway serves it in make run). */
  selfUrl?: string;
  /** The folder holding next.config.mjs and the build in .next (default: this package). */
  dir?: string;
  /** Where the tip page loads Stripe.js from (default js.stripe.com; make run serves the simulator's double). */
  stripeJsUrl?: string;
}

export interface WebApp {
  handle(req: http.IncomingMessage, res: http.ServerResponse): void;
  close(): Promise<void>;
}

/** Loads the production build (never builds: see build.ts) and returns its request handler. */
export async function createWebApp(options: WebAppOptions): Promise<WebApp> {
  // Next's own switch (it reads only its environment); our settings are handed over below.
  process.env.NEXT_TELEMETRY_DISABLED = "1";
  // Next sets NODE_ENV=production for a production server when it is unset, but only after its
  // router has loaded react: that react was then the development build, under the production
  // react-dom, and renders failed with "dispatcher.getOwner is not a function". Set it first.
  (process.env as Record<string, string | undefined>).NODE_ENV ??= "production";
  // Read by the pages' server code at request time; checked before anything is served.
  provideWebSettings(parseWebSettings({ apiUrl: options.apiUrl, stripeJsUrl: options.stripeJsUrl }));
  const dir = options.dir ?? WEB_DIR;
  useBuildConfig(dir);
  // next is CommonJS; under ESM its factory may sit on .default.
  const factory = ((next as unknown as { default?: typeof next }).default ?? next) as typeof next;
  // Its own address: a server action's redirect is fetched from it (Next assumes port 3000 otherwise).
  const own = new URL(options.selfUrl ?? options.apiUrl);
  const app = factory({ dev: false, dir, quiet: true, hostname: own.hostname, port: Number(own.port || 80) });
  await app.prepare();
  const handler = app.getRequestHandler();
  return {
    handle: (req, res) => {
      handler(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(`web app error: ${(err as Error).message}\n`);
      });
    },
    close: () => app.close(),
  };
}

/**
 * Serves the build with the configuration it was built with, as the server Next writes for
 * `output: "standalone"` (the cluster's web image runs that one) starts it: the build's serialized
 * config (.next/required-server-files.json) in __NEXT_PRIVATE_STANDALONE_CONFIG, not next.config.mjs
 * read again. Without it Next takes this for `next start` of a standalone build and prints that it
 * does not work to whoever runs `make run`.
 */
function useBuildConfig(dir: string): void {
  const built = JSON.parse(readFileSync(path.join(dir, ".next", "required-server-files.json"), "utf8")) as { config: unknown };
  process.env.__NEXT_PRIVATE_STANDALONE_CONFIG = JSON.stringify(built.config);
}
