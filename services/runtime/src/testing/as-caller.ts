import type { Interceptor } from "@connectrpc/connect";
import { callerHeaders, type Role } from "../caller.js";
import { stepUpHeaders } from "../step-up.js";

/** Sets the caller's identity headers as the gateway would (then sign them), with a fresh step-up when asked. */
export function asCaller(as: { subject: string; roles: Role[]; stepUp?: boolean }): Interceptor {
  return (next) => (req) => {
    const headers = { ...callerHeaders(as.subject, ...as.roles), ...(as.stepUp ? stepUpHeaders() : {}) };
    for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    return next(req);
  };
}
