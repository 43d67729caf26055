// Auth's refusals of a code or a PIN (lib/sign-in in the web app reads them) in the app's language.
import { signInRefusal } from "@ttip/web-lib/sign-in";
import type { Translate } from "./i18n";

/**
 * The sentence for a refusal sign-in or Change PIN expects; undefined: the general sentence. A locked PIN
 * names sign-in's "Forgot your PIN?" only where that button is.
 */
export function refusalWords(err: unknown, t: Translate, screen: "signIn" | "settings"): string | undefined {
  const r = signInRefusal(err);
  const wait = (seconds: number) => (seconds < 120 ? t("seconds", { n: String(seconds) }) : t("minutes", { n: String(Math.ceil(seconds / 60)) }));
  switch (r?.kind) {
    case "otpWrong": return t("otpWrong", { n: String(r.triesLeft) });
    case "pinWrong": return t("pinWrong", { n: String(r.triesLeft) });
    case "otpSpent": return t("otpSpent");
    case "pinStepEnded": return t("pinStepEnded");
    case "pinLocked": return t(screen === "signIn" ? "pinLocked" : "tooManyTries", { wait: wait(r.waitSeconds) });
    case "wait": return t("tooManyTries", { wait: wait(r.waitSeconds) });
    default: return undefined;
  }
}
