// Debian's chromium as every browser test launches it (never a browser download), and a context on
// the tests' clock: the web app's tests and the admin console's share these.
import { existsSync } from "node:fs";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions } from "playwright-core";

/**
 * Debian's chromium-headless-shell (the same engine without the full browser; what Playwright
 * itself runs headless): less than half the full browser's CPU in its headless mode (the card tip
 * file's chromium 9.6 → 4.3 s). The full browser where the shell is not installed.
 */
const HEADLESS_SHELL = "/usr/bin/chromium-headless-shell";
export const CHROMIUM = process.env.CHROMIUM_PATH ?? (existsSync(HEADLESS_SHELL) ? HEADLESS_SHELL : "/usr/bin/chromium");
export const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A browser context on the tests' clock. Date sweeps run node and PostgreSQL under libfaketime at a
 * chosen moment (a month's first minutes, a Sunday night); chromium under it is about 60 times slower
 * (a minute to launch, another per page), so it runs on the real clock (CHROMIUM_PATH naming a wrapper
 * that drops LD_PRELOAD) and TEST_BROWSER_CLOCK=node moves each context's pages to node's time, still flowing.
 */
export async function newBrowserContext(browser: Browser, options: BrowserContextOptions): Promise<BrowserContext> {
  const context = await browser.newContext(options);
  if (process.env.TEST_BROWSER_CLOCK === "node") await context.clock.install({ time: Date.now() });
  return context;
}
