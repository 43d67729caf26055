// Auth's refusals at sign-in as sentences in the screen's language: its own detail is English
// ("otp: wrong code; 4 tries left"), and a worker signing in in Swahili met it at the first step.
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import type { WorkerT } from "../../../lib/worker-i18n";

/** A wait of `seconds` in words: seconds up to two minutes, then whole minutes. */
function waitWords(t: WorkerT, seconds: number): string {
  return seconds < 120 ? t("seconds", { n: seconds }) : t("minutes", { n: Math.ceil(seconds / 60) });
}

/** The sentence for a refusal the sign-in steps expect, or undefined (the general sentence then). */
export function signInRefusal(err: unknown, t: WorkerT): string | undefined {
  const e = ConnectError.from(err);
  const tries = /(\d+) tries left/.exec(e.rawMessage)?.[1];
  if (e.code === Code.InvalidArgument && e.rawMessage.startsWith("otp:") && tries) return t("err_otpWrong", { n: tries });
  if (e.code === Code.PermissionDenied && /wrong PIN/.test(e.rawMessage) && tries) return t("err_pinWrong", { n: tries });
  if (e.code === Code.FailedPrecondition && /code has expired/.test(e.rawMessage)) return t("err_otpSpent");
  const wait = Number(e.findDetails(DomainErrorInfoSchema).find((d) => d.reason === "RATE_LIMITED")?.metadata.retry_after_seconds);
  if (e.code === Code.ResourceExhausted && wait > 0) return t(/PIN locked/.test(e.rawMessage) ? "err_pinLocked" : "err_wait", { wait: waitWords(t, wait) });
  return undefined;
}
