// Browser pages reused across one file's tests. A new context costs chromium a renderer process
// and a cold load of the app's scripts (about a second of CPU on a busy 2-core machine); a page
// handed back after a test is reset to a new profile's state (no cookies, storage, routes or
// listeners; parked on a blank page of the app's origin) and lent to the next test asking for the
// same options. A page on which a test changed something a reset cannot undo (an init script,
// the clock, an exposed function, the viewport, emulation) is closed instead, never lent again.
import type { Browser, BrowserContext, BrowserContextOptions, Page } from "playwright-core";
import { newBrowserContext } from "./browser.js";

type StorageState = Exclude<BrowserContextOptions["storageState"], string | undefined>;

interface Lent {
  key: string;
  context: BrowserContext;
  page: Page;
  /** A test changed what a reset cannot undo. */
  tainted: boolean;
}

const PAGE_TAINTS = ["addInitScript", "exposeFunction", "exposeBinding", "setViewportSize", "emulateMedia", "setExtraHTTPHeaders", "setDefaultTimeout", "setDefaultNavigationTimeout"] as const;
const CONTEXT_TAINTS = ["addInitScript", "exposeFunction", "exposeBinding", "setExtraHTTPHeaders", "setOffline", "setGeolocation", "setHTTPCredentials", "setDefaultTimeout", "setDefaultNavigationTimeout"] as const;
const CLOCK_TAINTS = ["install", "fastForward", "pauseAt", "resume", "runFor", "setFixedTime", "setSystemTime"] as const;

/** Marks `entry` tainted when any of `names` is called on `target`. */
function taintOn(target: object, names: readonly string[], entry: Lent): void {
  const methods = target as Record<string, (...args: unknown[]) => unknown>;
  for (const name of names) {
    const original = methods[name];
    methods[name] = (...args: unknown[]) => ((entry.tainted = true), original.apply(target, args));
  }
}

export class PagePool {
  private readonly idle: Lent[] = [];
  private readonly lent: Lent[] = [];

  /**
   * `browser` is asked for on the first page; `blankUrl` is a page of the app's origin with no
   * scripts (the pages' storage is cleared and set there).
   */
  constructor(
    private readonly browser: () => Promise<Browser>,
    private readonly blankUrl: () => string,
  ) {}

  /** A page as a new context with `options` would give it (storageState's origins must be the app's). */
  async page(options: BrowserContextOptions): Promise<Page> {
    const { storageState, ...rest } = options;
    if (typeof storageState === "string") throw new Error("a storage state file is not supported here");
    const key = JSON.stringify(rest);
    const at = this.idle.findIndex((e) => e.key === key);
    const entry = at >= 0 ? this.idle.splice(at, 1)[0] : await this.open(key, rest);
    this.lent.push(entry);
    if (storageState) await this.restore(entry.page, storageState);
    return entry.page;
  }

  /** Resets every lent page for the next test (a test's afterEach); one that cannot be reset is closed. */
  async giveBack(): Promise<void> {
    const back = this.lent.splice(0);
    await Promise.all(back.map(async (e) => ((await this.reset(e)) ? this.idle.push(e) : await e.context.close().catch(() => undefined))));
  }

  async close(): Promise<void> {
    const all = [...this.lent.splice(0), ...this.idle.splice(0)];
    await Promise.all(all.map((e) => e.context.close().catch(() => undefined)));
  }

  private async open(key: string, options: BrowserContextOptions): Promise<Lent> {
    const context = await newBrowserContext(await this.browser(), options);
    const page = await context.newPage();
    const entry: Lent = { key, context, page, tainted: false };
    taintOn(page, PAGE_TAINTS, entry);
    taintOn(context, CONTEXT_TAINTS, entry);
    taintOn(context.clock, CLOCK_TAINTS, entry);
    return entry;
  }

  /**
   * Back to a new profile's state: the document replaced (its scripts and live streams end),
   * listeners and routes removed, then cookies, permissions and the origin's storage cleared.
   */
  private async reset(e: Lent): Promise<boolean> {
    if (e.tainted || e.page.isClosed()) return false;
    try {
      await e.page.removeAllListeners(undefined, { behavior: "ignoreErrors" });
      await e.page.unrouteAll({ behavior: "ignoreErrors" });
      await e.context.unrouteAll({ behavior: "ignoreErrors" });
      for (const p of e.context.pages()) if (p !== e.page) await p.close();
      await e.page.goto(this.blankUrl());
      await e.page.evaluate(clearOriginStorage);
      await e.context.clearCookies();
      await e.context.clearPermissions();
      return true;
    } catch {
      return false;
    }
  }

  /** Sets the origin's local storage from `state`, on the blank page (no page load of the app). */
  private async restore(page: Page, state: StorageState): Promise<void> {
    const origin = new URL(this.blankUrl()).origin;
    if (state.origins.some((o) => o.origin !== origin)) throw new Error(`storage state for an origin other than ${origin}`);
    if (page.url() !== this.blankUrl()) await page.goto(this.blankUrl());
    await page.context().addCookies(state.cookies);
    const items = state.origins.flatMap((o) => o.localStorage);
    await page.evaluate((all) => all.forEach(({ name, value }) => localStorage.setItem(name, value)), items);
  }
}

/** In the page: its origin's local and session storage, IndexedDB databases and caches, emptied. */
async function clearOriginStorage(): Promise<void> {
  localStorage.clear();
  sessionStorage.clear();
  const dbs = await indexedDB.databases();
  await Promise.all(
    dbs.map(
      (db) =>
        new Promise<void>((resolve, reject) => {
          const req = indexedDB.deleteDatabase(db.name!);
          req.onsuccess = () => resolve();
          req.onerror = () => reject(req.error);
          req.onblocked = () => reject(new Error(`IndexedDB ${db.name} is still open`));
        }),
    ),
  );
  if (typeof caches !== "undefined") for (const name of await caches.keys()) await caches.delete(name);
}
