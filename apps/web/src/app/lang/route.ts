import { NextResponse, type NextRequest } from "next/server";

// The language switch: a plain link (works without scripts) that remembers the
// choice in a cookie and goes back to the page it came from.
export function GET(req: NextRequest) {
  const to = req.nextUrl.searchParams.get("to") === "sw" ? "sw" : "en";
  const back = req.nextUrl.searchParams.get("back") ?? "/";
  // Only a path on this site, never another host: read as a browser reads it ("/\evil.com" is //evil.com to one).
  const SITE = "http://site.invalid";
  const read = back.startsWith("/") ? new URL(back, SITE) : undefined;
  const safe = read?.origin === SITE ? read.pathname + read.search + read.hash : "/";
  const res = new NextResponse(null, { status: 303, headers: { location: safe } });
  res.cookies.set("ttip_lang", to, { path: "/", maxAge: 365 * 86400, sameSite: "lax" });
  return res;
}
