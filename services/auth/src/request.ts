import type { HandlerContext } from "@connectrpc/connect";

/**
 * Headers the gateway sets from the verified token and the connection (it
 * drops callers' own copies): the session id (the token's `sid` claim) and
 * the client's network address.
 */
export const SESSION_HEADER = "x-ttip-session";
export const CLIENT_ADDRESS_HEADER = "x-ttip-client-address";

type Ctx = Pick<HandlerContext, "requestHeader">;

export function sessionIdOf(ctx: Ctx): string | undefined {
  const sid = ctx.requestHeader.get(SESSION_HEADER);
  return sid && /^[0-9a-f-]{36}$/i.test(sid) ? sid : undefined;
}

export function clientAddressOf(ctx: Ctx): string {
  return ctx.requestHeader.get(CLIENT_ADDRESS_HEADER) || "unknown";
}

export function userAgentOf(ctx: Ctx): string {
  return (ctx.requestHeader.get("user-agent") ?? "").slice(0, 256);
}

/** Kenyan and international numbers as E.164 digits without the plus: 0712… and +254712… are the same person. */
export function normalizePhone(raw: string): string {
  const digits = raw.replace(/^\+/, "");
  if (/^0[17]\d{8}$/.test(digits)) return `254${digits.slice(1)}`;
  return digits;
}

/** e.g. 2547******78: enough to recognise, not enough to call. */
export function maskPhone(phone: string): string {
  return phone.length <= 6 ? "*".repeat(phone.length) : `${phone.slice(0, 4)}${"*".repeat(phone.length - 6)}${phone.slice(-2)}`;
}
