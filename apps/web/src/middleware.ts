// The tip page's key seed (lib/tip-seed.ts) in a cookie from the page's first answer. The page's script keeps
// it too, but a browser without scripts (a proxy browser) never ran it: a page opened again after Pay's answer
// was lost rendered a new seed, so the same tip went under a new key, a second tip and a second M-Pesa prompt.
import { NextResponse, type NextRequest } from "next/server";
import { isSeed, SEED_COOKIE, SEED_KEPT_SECONDS, seedCookiePath } from "./lib/tip-seed";

export function middleware(request: NextRequest): NextResponse {
  const code = /^\/t\/([^/]+)$/.exec(request.nextUrl.pathname)?.[1];
  if (!code || request.method !== "GET" || isSeed(request.cookies.get(SEED_COOKIE)?.value)) return NextResponse.next();
  const seed = crypto.randomUUID();
  // The page rendered for this request reads the seed from its cookies: the one set in the answer.
  request.cookies.set(SEED_COOKIE, seed);
  const response = NextResponse.next({ request: { headers: request.headers } });
  response.cookies.set(SEED_COOKIE, seed, { path: seedCookiePath(decodeURIComponent(code)), maxAge: SEED_KEPT_SECONDS, sameSite: "lax" });
  return response;
}

export const config = { matcher: "/t/:code" };
