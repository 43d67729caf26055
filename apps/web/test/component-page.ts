// Components tried in chromium with nothing around them (no platform, no server): an entry bundled
// here with esbuild and served by Playwright's request routing, so no port is opened.
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Browser, BrowserContextOptions, Page } from "playwright-core";
import { newBrowserContext } from "./browser.js";

/** The entry (a file beside the tests) bundled for the browser, as one script. */
export async function bundleComponents(entry: URL): Promise<string> {
  const out = await build({
    entryPoints: [fileURLToPath(entry)],
    bundle: true,
    write: false,
    format: "iife",
    platform: "browser",
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"production"' },
    logLevel: "silent",
  });
  return out.outputFiles[0].text;
}

/** A page in a new context showing an empty `<main id="root">` and the bundle, at `origin` (never fetched). */
export async function componentPage(browser: Browser, bundle: string, origin: string, lang: string, options: BrowserContextOptions): Promise<Page> {
  const context = await newBrowserContext(browser, options);
  const page = await context.newPage();
  const script = bundle.replace(/<\/script/g, "<\\/script");
  await page.route(`${origin}/**`, (route) =>
    route.fulfill({ contentType: "text/html", body: `<!DOCTYPE html><html lang="${lang}"><body><main id="root"></main><script>${script}</script></body></html>` }),
  );
  await page.goto(`${origin}/`);
  return page;
}
