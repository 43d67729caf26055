import { NextResponse, type NextRequest } from "next/server";
import { sitePath } from "../../lib/site-path";

// The language switch: a plain link (works without scripts) that remembers the
// choice in a cookie and goes back to the page it came from.
export function GET(req: NextRequest) {
  const to = req.nextUrl.searchParams.get("to") === "sw" ? "sw" : "en";
  const safe = sitePath(req.nextUrl.searchParams.get("back"), "/");
  const res = new NextResponse(null, { status: 303, headers: { location: safe } });
  res.cookies.set("ttip_lang", to, { path: "/", maxAge: 365 * 86400, sameSite: "lax" });
  return res;
}
