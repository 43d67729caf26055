"use client";
import { useMutation } from "@connectrpc/connect-query";
import { useRouter } from "next/navigation";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { useT } from "../use-t";
import { normaliseKenyanPhone } from "../../../lib/phone";
import { saveSession } from "../../../lib/session";
import { useWrite } from "../../../lib/use-write";
import { sitePath } from "../../../lib/site-path";
import { signInRefusal } from "./refusals";
import { signInRefusal as refusalOf } from "../../../lib/sign-in";
import type { SignInStep as Step } from "../../../lib/sign-in";


/** Sign in with the phone's OTP, then the PIN (set at the first sign-in). */
export default function SignIn() {
  const router = useRouter();
  const { t, err } = useT();
  // A venue manager signs in here too (?as=manager) and lands on the venue screens.
  const [asManager] = useState(() => new URLSearchParams(window.location.search).get("as") === "manager");
  // Back to where sign-in was asked for (an invitation link), a path on this site only ("/\evil.example" is not).
  const [home] = useState(() => sitePath(new URLSearchParams(window.location.search).get("next"), asManager ? "/v" : "/w"));
  // What the screens read for the worker signed in before (a venue's shared phone) is dropped, not shown to the next
  // one under the same query (their balance, their tips) until a fetch of their own answers.
  const queries = useQueryClient();
  const signedIn = (tokens: Parameters<typeof saveSession>[0]) => (queries.clear(), saveSession(tokens));
  const [step, setStep] = useState<Step>({ kind: "phone" });
  const [error, setError] = useState("");
  const start = useMutation(AuthService.method.startPhoneVerification);
  const verifyOtp = useMutation(AuthService.method.verifyPhoneOtp);
  const verifyPin = useMutation(AuthService.method.verifyPin);
  const setPin = useMutation(AuthService.method.setPin);
  const resetPin = useMutation(AuthService.method.resetPin);

  const write = useWrite();
  const busy = write.busy;
  const onSubmit = write.onSubmit(async (f) => {
    setError("");
    if (step.kind === "phone") {
      const phone = normaliseKenyanPhone(String(f.get("phone") ?? ""));
      if (!phone) return setError(t("err_phone"));
      const { challengeId } = await start.mutateAsync({ phone });
      setStep({ kind: "otp", challengeId });
    } else if (step.kind === "otp") {
      const otp = String(f.get("otp") ?? "").trim();
      if (!/^[0-9]{6}$/.test(otp)) return setError(t("err_otp"));
      const res = await verifyOtp.mutateAsync({ challengeId: step.challengeId, otp, role: asManager ? Role.VENUE_MANAGER : Role.WORKER });
      if (res.pinRequired) setStep({ kind: "pin", pinSessionId: res.pinSessionId, challengeId: step.challengeId, otp });
      else if (res.tokens) {
        signedIn(res.tokens);
        setStep({ kind: "newPin" });
      }
    } else if (step.kind === "pin") {
      const pin = String(f.get("pin") ?? "");
      if (!/^[0-9]{4,6}$/.test(pin)) return setError(t("err_pin"));
      const { tokens } = await verifyPin.mutateAsync({ pinSessionId: step.pinSessionId, pin });
      signedIn(tokens!);
      router.replace(home);
    } else if (step.kind === "resetPin") {
      const newPin = String(f.get("pin") ?? "");
      if (!/^[0-9]{4,6}$/.test(newPin)) return setError(t("err_newPin"));
      if (newPin !== String(f.get("pin2") ?? "")) return setError(t("err_pinsDiffer"));
      const { tokens } = await resetPin.mutateAsync({ challengeId: step.challengeId, otp: step.otp, newPin });
      signedIn(tokens!);
      router.replace(home);
    } else {
      const pin = String(f.get("pin") ?? "");
      if (!/^[0-9]{4,6}$/.test(pin)) return setError(t("err_newPin"));
      if (pin !== String(f.get("pin2") ?? "")) return setError(t("err_pinsDiffer"));
      await setPin.mutateAsync({ pin });
      router.replace(home);
    }
  }, (x) => {
    // The PIN step ended (timed out, or used by a sign-in whose answer was lost): back to the number, said why.
    if (refusalOf(x)?.kind === "pinStepEnded") setStep({ kind: "phone" });
    setError(signInRefusal(x, t) ?? err(x));
  });

  return (
    <form onSubmit={onSubmit} noValidate>
      <h1>{t("signIn")}</h1>
      {step.kind === "phone" ? (
        <>
          <label className="field" htmlFor="phone">{t("yourPhone")}</label>
          <input key="phone" id="phone" name="phone" type="tel" autoComplete="tel" inputMode="tel" placeholder="0712 345 678" />
        </>
      ) : step.kind === "otp" ? (
        <>
          <label className="field" htmlFor="otp">{t("otpLabel")}</label>
          <input key="otp" id="otp" name="otp" type="text" inputMode="numeric" autoComplete="one-time-code" maxLength={6} />
        </>
      ) : step.kind === "pin" ? (
        <>
          <label className="field" htmlFor="pin">{t("pinLabel")}</label>
          <input key="pin" id="pin" name="pin" type="password" inputMode="numeric" autoComplete="current-password" maxLength={6} />
        </>
      ) : (
        <>
          <p>{t(step.kind === "resetPin" ? "resetPinIntro" : "choosePin")}</p>
          <label className="field" htmlFor="pin">{t("newPin")}</label>
          <input id="pin" name="pin" type="password" inputMode="numeric" autoComplete="new-password" maxLength={6} />
          <label className="field" htmlFor="pin2">{t("samePin")}</label>
          <input id="pin2" name="pin2" type="password" inputMode="numeric" autoComplete="new-password" maxLength={6} />
        </>
      )}
      {error ? <p className="error" role="alert">{error}</p> : null}
      <button type="submit" disabled={busy}>{step.kind === "phone" ? t("sendCode") : t("continue")}</button>
      {/* A mistyped number, or a code that never came or can no longer be used: back to the first step. */}
      {step.kind === "otp" || step.kind === "pin" || step.kind === "resetPin" ? <button type="button" className="secondary" disabled={busy} onClick={() => (setError(""), setStep({ kind: "phone" }))}>{t("otherNumber")}</button> : null}
      {/* A forgotten or locked PIN: a new one on the code just verified (auth signs out every other session). */}
      {step.kind === "pin" ? <button type="button" className="secondary" disabled={busy} onClick={() => (setError(""), setStep({ kind: "resetPin", challengeId: step.challengeId, otp: step.otp }))}>{t("forgotPin")}</button> : null}
    </form>
  );
}
