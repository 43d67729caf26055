// Sign-in's steps and auth's refusals at them, shared by the web app and the phone app. Auth's own
// detail is English ("otp: wrong code; 4 tries left"), so each app words a refusal's kind itself.
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";

// The PIN steps keep the verified code: auth's ResetPin takes it (within its window) for a forgotten PIN.
export type SignInStep =
  | { kind: "phone" }
  | { kind: "otp"; challengeId: string }
  | { kind: "pin"; pinSessionId: string; challengeId: string; otp: string }
  | { kind: "resetPin"; challengeId: string; otp: string }
  | { kind: "newPin" };

export type SignInRefusal =
  | { kind: "otpWrong"; triesLeft: number }
  | { kind: "pinWrong"; triesLeft: number }
  | { kind: "otpSpent" }
  | { kind: "pinStepEnded" }
  | { kind: "pinLocked"; waitSeconds: number }
  | { kind: "wait"; waitSeconds: number };

/** The refusal the sign-in steps expect, or undefined (the app's general sentence then). */
export function signInRefusal(err: unknown): SignInRefusal | undefined {
  const e = ConnectError.from(err);
  const tries = Number(/(\d+) tries left/.exec(e.rawMessage)?.[1]);
  if (e.code === Code.InvalidArgument && e.rawMessage.startsWith("otp:") && tries >= 0) return { kind: "otpWrong", triesLeft: tries };
  if (e.code === Code.PermissionDenied && /wrong PIN/.test(e.rawMessage) && tries >= 0) return { kind: "pinWrong", triesLeft: tries };
  if (e.code === Code.FailedPrecondition && /code has expired/.test(e.rawMessage)) return { kind: "otpSpent" };
  // Five minutes after the code, or used by a sign-in whose answer was lost: only a new code goes on.
  if (e.code === Code.FailedPrecondition && /PIN step (has expired or was used|was already used)/.test(e.rawMessage)) return { kind: "pinStepEnded" };
  const wait = Number(e.findDetails(DomainErrorInfoSchema).find((d) => d.reason === "RATE_LIMITED")?.metadata.retry_after_seconds);
  if (e.code === Code.ResourceExhausted && wait > 0) return { kind: /PIN locked/.test(e.rawMessage) ? "pinLocked" : "wait", waitSeconds: wait };
  return undefined;
}
