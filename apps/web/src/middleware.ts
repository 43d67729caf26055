// The tip page's key seed (lib/tip-seed.ts) in a cookie from the page's first answer, forgotten when a tip's page
// opens. The page's script keeps and forgets it too, but a browser without scripts (a proxy browser) never ran it: a
// page opened again after Pay's answer was lost rendered a new seed, so the same tip went under a new key, a second
// tip and a second M-Pesa prompt.
import { NextResponse, type NextRequest } from "next/server";
import { isSeed, REFRESHED, SCRIPTLESS_SEED_SECONDS, SEED_COOKIE, seedCookiePath } from "./lib/tip-seed";

export function middleware(request: NextRequest): NextResponse {
  const [, code, tip] = /^\/t\/([^/]+)(\/tips\/[^/]+)?$/.exec(request.nextUrl.pathname) ?? [];
  if (!code || request.method !== "GET") return NextResponse.next();
  const decoded = decodedCode(code);
  // Not a code (bad percent-encoding): the page answers it not found, where the middleware threw (a server error).
  if (decoded === undefined) return NextResponse.next();
  const path = seedCookiePath(decoded);
  const kept = isSeed(request.cookies.get(SEED_COOKIE)?.value);
  if (tip) {
    // A tip's page opened: a tip asked for after it is a new one (as the page's script forgets its seed there).
    const response = NextResponse.next();
    if (kept && !request.nextUrl.searchParams.has(REFRESHED)) response.cookies.set(SEED_COOKIE, "", { path, maxAge: 0 });
    return response;
  }
  if (kept) return NextResponse.next();
  const seed = crypto.randomUUID();
  // The page rendered for this request reads the seed from its cookies: the one set in the answer.
  request.cookies.set(SEED_COOKIE, seed);
  const response = NextResponse.next({ request: { headers: request.headers } });
  response.cookies.set(SEED_COOKIE, seed, { path, maxAge: SCRIPTLESS_SEED_SECONDS, sameSite: "lax" });
  return response;
}

function decodedCode(code: string): string | undefined {
  try {
    return decodeURIComponent(code);
  } catch {
    return undefined;
  }
}

export const config = { matcher: ["/t/:code", "/t/:code/tips/:tip"] };
