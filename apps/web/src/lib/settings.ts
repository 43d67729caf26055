// The web app's settings, typed and parsed once. A host running the app in its
// own process (make run's gateway, the tests: createWebApp) hands them over
// here instead of writing process.env; a standalone server (the cluster's web
// image) reads them from its environment. Next compiles this module into its
// own bundles, so the hand-over goes through one process-wide slot.

export interface WebSettings {
  /** Where the pages' server code calls the public API (the gateway). */
  apiUrl: string;
  /** Where the tip page loads Stripe.js from (make run and the tests serve the simulator's double). */
  stripeJsUrl: string;
}

const HANDED_OVER = Symbol.for("ttip.web.settings");
const DEFAULTS: WebSettings = { apiUrl: "http://127.0.0.1:8080", stripeJsUrl: "https://js.stripe.com/v3/" };

type Slot = { [HANDED_OVER]?: WebSettings };

function url(name: string, value: string): string {
  try {
    const u = new URL(value);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http(s)");
    return value;
  } catch {
    throw new Error(`${name}: "${value}" is not an http(s) URL`);
  }
}

/** Checked settings from what is given; the rest from the defaults. Throws naming a bad field. */
export function parseWebSettings(given: { apiUrl?: string; stripeJsUrl?: string }): WebSettings {
  return Object.freeze({
    apiUrl: url("apiUrl (TTIP_API_URL)", given.apiUrl || DEFAULTS.apiUrl),
    stripeJsUrl: url("stripeJsUrl (STRIPE_JS_URL)", given.stripeJsUrl || DEFAULTS.stripeJsUrl),
  });
}

/** For the host process: the settings every page reads from now on. */
export function provideWebSettings(settings: WebSettings): void {
  (globalThis as Slot)[HANDED_OVER] = settings;
}

let fromEnvironment: WebSettings | undefined;

/** The settings handed over by the host, else those of this process's environment (read once). */
export function webSettings(): WebSettings {
  return (globalThis as Slot)[HANDED_OVER] ?? (fromEnvironment ??= parseWebSettings({ apiUrl: process.env.TTIP_API_URL, stripeJsUrl: process.env.STRIPE_JS_URL }));
}
