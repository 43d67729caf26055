import type { HandlerContext } from "@connectrpc/connect";
import { CLIENT_ADDRESS_HEADER, isUuid, SESSION_HEADER } from "@ttip/runtime";

type Ctx = Pick<HandlerContext, "requestHeader">;

export function sessionIdOf(ctx: Ctx): string | undefined {
  const sid = ctx.requestHeader.get(SESSION_HEADER);
  return sid && isUuid(sid) ? sid : undefined;
}

export function clientAddressOf(ctx: Ctx): string {
  return ctx.requestHeader.get(CLIENT_ADDRESS_HEADER) || "unknown";
}

export function userAgentOf(ctx: Ctx): string {
  return (ctx.requestHeader.get("user-agent") ?? "").slice(0, 256);
}
