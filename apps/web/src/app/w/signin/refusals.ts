// Auth's refusals at sign-in as sentences in the screen's language (lib/sign-in reads them).
import { signInRefusal as refusalOf } from "../../../lib/sign-in";
import type { WorkerT } from "../../../lib/worker-i18n";

/** A wait of `seconds` in words: seconds up to two minutes, then whole minutes. */
function waitWords(t: WorkerT, seconds: number): string {
  return seconds < 120 ? t("seconds", { n: seconds }) : t("minutes", { n: Math.ceil(seconds / 60) });
}

/** The sentence for a refusal the sign-in steps expect, or undefined (the general sentence then). */
export function signInRefusal(err: unknown, t: WorkerT): string | undefined {
  const r = refusalOf(err);
  switch (r?.kind) {
    case "otpWrong": return t("err_otpWrong", { n: r.triesLeft });
    case "pinWrong": return t("err_pinWrong", { n: r.triesLeft });
    case "otpSpent": return t("err_otpSpent");
    case "pinStepEnded": return t("err_pinStepEnded");
    case "pinLocked": return t("err_pinLocked", { wait: waitWords(t, r.waitSeconds) });
    case "wait": return t("err_wait", { wait: waitWords(t, r.waitSeconds) });
    default: return undefined;
  }
}
