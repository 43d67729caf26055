// A user agent as a person reads it ("Chrome on Android"). Device keys keep only
// the first 60 characters of it (the withdraw screen registers them so), which
// often ends before the browser's name: then the system alone is said.

// Order matters: Edge, Opera and Samsung's browser also say "Chrome", Chrome also says "Safari".
const BROWSERS: readonly [RegExp, string][] = [
  [/\bEdg(e|A|iOS)?\//, "Edge"],
  [/\bOPR\//, "Opera"],
  [/\bSamsungBrowser\//, "Samsung Internet"],
  [/\b(Chrome|CriOS|Chromium)\//, "Chrome"],
  [/\b(Firefox|FxiOS)\//, "Firefox"],
  [/\bVersion\/[\d.]+.*\bSafari\//, "Safari"],
];
// The phone app: its device keys are named "TTIP app (<platform>)", and its requests carry React Native's
// HTTP client's agent (okhttp on Android, CFNetwork on iOS), which would read as a library's name.
const APP_SYSTEMS: readonly [RegExp, string][] = [
  [/^TTIP app \(android\)$|^okhttp\//, "Android"],
  [/^TTIP app \(ios\)$|\bCFNetwork\/.*\bDarwin\//, "iPhone"],
];
const SYSTEMS: readonly [RegExp, string][] = [
  [/\bAndroid\b/, "Android"],
  [/\biPhone\b/, "iPhone"],
  [/\biPad\b/, "iPad"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bWindows\b/, "Windows"],
  [/\bMac OS X\b|\bMacintosh\b/, "Mac"],
  [/\bLinux\b/, "Linux"],
];
const RAW_MAX = 40;

export interface AgentWords {
  /** "{browser} on {os}" in the screen's language. */
  browserOn(browser: string, os: string): string;
  /** "TTIP app on {os}": the phone app. */
  appOn(os: string): string;
  unknown: string;
}

function first(list: readonly [RegExp, string][], ua: string): string | undefined {
  return list.find(([re]) => re.test(ua))?.[1];
}

/** The browser and system a user agent names, else the text itself, shortened; `words` for the joining and the empty case. */
export function readableAgent(ua: string, words: AgentWords): string {
  const text = ua.trim();
  if (!text) return words.unknown;
  const app = first(APP_SYSTEMS, text);
  if (app) return words.appOn(app);
  const browser = first(BROWSERS, text);
  const os = first(SYSTEMS, text);
  if (browser && os) return words.browserOn(browser, os);
  if (browser || os) return (browser ?? os)!;
  return text.length > RAW_MAX ? `${text.slice(0, RAW_MAX - 1)}…` : text;
}
