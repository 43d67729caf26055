// Where a link may send a visitor back to: a path on this site, never another host.

/**
 * `back` as a path on this site (with its query and fragment), read as a browser reads it: "/\evil.example" is
 * "//evil.example" to one, another host; anything that leaves the site gives `fallback`.
 */
export function sitePath(back: string | null | undefined, fallback: string): string {
  const SITE = "http://site.invalid";
  const read = back?.startsWith("/") ? new URL(back, SITE) : undefined;
  return read?.origin === SITE ? read.pathname + read.search + read.hash : fallback;
}
