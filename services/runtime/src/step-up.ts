// A money action, or one that grants access, declares step_up in its contract (ttip.common.v1.access).
// The gateway verifies and spends the admin's device step-up token and says
// when in a signed header; every service refuses such an RPC without a fresh
// one, so a call that reaches it some other way (a peer, a leaked internal
// route) cannot move money on a bearer token alone.
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { declaredAccess } from "./access.js";
import { STEP_UP_AT_HEADER } from "./headers.js";

/** How long after the gateway verified it a step-up still counts (the signature's own bound too). */
export const STEP_UP_MAX_AGE_SECONDS = 60;

/** True when the RPC's contract demands the admin's device step-up. */
export function needsStepUp(method: DescMethod): boolean {
  const declared = declaredAccess(method);
  return declared?.access === "admin" && declared.stepUp === true;
}

/** The header value for a step-up verified at `now` (the gateway sets it; tests too). */
export function stepUpHeaderValue(now = Date.now()): string {
  return String(Math.floor(now / 1000));
}

/** The header of a step-up verified now, beside callerHeaders (trusted callers, tests). */
export function stepUpHeaders(now = Date.now()): Record<string, string> {
  return { [STEP_UP_AT_HEADER]: stepUpHeaderValue(now) };
}

/** Why the call's step-up does not count, or undefined when it does. */
export function stepUpProblem(value: string | null, now = Date.now()): string | undefined {
  if (value === null) return "the caller's identity carries no device step-up";
  if (!/^\d{1,12}$/.test(value)) return `${STEP_UP_AT_HEADER} is not a time in unix seconds`;
  const age = now / 1000 - Number(value);
  if (age > STEP_UP_MAX_AGE_SECONDS || age < -STEP_UP_MAX_AGE_SECONDS) return `the device step-up is ${Math.round(age)} s old (at most ${STEP_UP_MAX_AGE_SECONDS} s)`;
  return undefined;
}

/**
 * For services, after internalAuthInterceptor (which proved the headers are
 * the gateway's or a peer's) and accessInterceptor (which checked the caller's
 * roles): an RPC declaring step_up needs a fresh step-up, else
 * PERMISSION_DENIED naming what is missing, and nothing runs.
 */
export function stepUpInterceptor(): Interceptor {
  return (next) => (req) => {
    if (!needsStepUp(req.method)) return next(req);
    const problem = stepUpProblem(req.header.get(STEP_UP_AT_HEADER));
    if (problem) {
      const rpc = `${req.service.typeName}/${req.method.name}`;
      throw new ConnectError(`${rpc} moves money or grants access and needs the admin's device step-up: ${problem}; confirm with your device and call through the gateway`, Code.PermissionDenied);
    }
    return next(req);
  };
}
