"use client";
import { useMutation } from "@connectrpc/connect-query";
import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { plainError } from "../../../lib/errors";
import { normaliseKenyanPhone } from "../../../lib/phone";
import { saveSession } from "../../../lib/session";

type Step = { kind: "phone" } | { kind: "otp"; challengeId: string } | { kind: "pin"; pinSessionId: string } | { kind: "newPin" };

/** Sign in with the phone's OTP, then the PIN (set at the first sign-in). */
export default function SignIn() {
  const router = useRouter();
  const [step, setStep] = useState<Step>({ kind: "phone" });
  const [error, setError] = useState("");
  const start = useMutation(AuthService.method.startPhoneVerification);
  const verifyOtp = useMutation(AuthService.method.verifyPhoneOtp);
  const verifyPin = useMutation(AuthService.method.verifyPin);
  const setPin = useMutation(AuthService.method.setPin);
  const busy = start.isPending || verifyOtp.isPending || verifyPin.isPending || setPin.isPending;

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    setError("");
    const f = new FormData(e.currentTarget);
    try {
      if (step.kind === "phone") {
        const phone = normaliseKenyanPhone(String(f.get("phone") ?? ""));
        if (!phone) return setError("Enter a Kenyan mobile number, for example 0712 345 678.");
        const { challengeId } = await start.mutateAsync({ phone });
        setStep({ kind: "otp", challengeId });
      } else if (step.kind === "otp") {
        const otp = String(f.get("otp") ?? "").trim();
        if (!/^[0-9]{6}$/.test(otp)) return setError("Enter the 6-digit code from the SMS.");
        const res = await verifyOtp.mutateAsync({ challengeId: step.challengeId, otp, role: Role.WORKER });
        if (res.pinRequired) setStep({ kind: "pin", pinSessionId: res.pinSessionId });
        else if (res.tokens) {
          saveSession(res.tokens);
          setStep({ kind: "newPin" });
        }
      } else if (step.kind === "pin") {
        const pin = String(f.get("pin") ?? "");
        if (!/^[0-9]{4,6}$/.test(pin)) return setError("Your PIN is 4 to 6 digits.");
        const { tokens } = await verifyPin.mutateAsync({ pinSessionId: step.pinSessionId, pin });
        saveSession(tokens!);
        router.replace("/w");
      } else {
        const pin = String(f.get("pin") ?? "");
        if (!/^[0-9]{4,6}$/.test(pin)) return setError("Choose a PIN of 4 to 6 digits.");
        if (pin !== String(f.get("pin2") ?? "")) return setError("The two PINs are not the same.");
        await setPin.mutateAsync({ pin });
        router.replace("/w");
      }
    } catch (err) {
      setError(plainError(err));
    }
  };

  return (
    <form onSubmit={submit} noValidate>
      <h1>Sign in</h1>
      {step.kind === "phone" ? (
        <>
          <label className="field" htmlFor="phone">Your phone number</label>
          <input id="phone" name="phone" type="tel" autoComplete="tel" inputMode="tel" placeholder="0712 345 678" />
        </>
      ) : step.kind === "otp" ? (
        <>
          <label className="field" htmlFor="otp">The 6-digit code we sent by SMS</label>
          <input id="otp" name="otp" type="text" inputMode="numeric" autoComplete="one-time-code" maxLength={6} />
        </>
      ) : step.kind === "pin" ? (
        <>
          <label className="field" htmlFor="pin">Your PIN</label>
          <input id="pin" name="pin" type="password" inputMode="numeric" autoComplete="current-password" maxLength={6} />
        </>
      ) : (
        <>
          <p>Choose a PIN: you will use it each time you sign in.</p>
          <label className="field" htmlFor="pin">New PIN (4 to 6 digits)</label>
          <input id="pin" name="pin" type="password" inputMode="numeric" autoComplete="new-password" maxLength={6} />
          <label className="field" htmlFor="pin2">The same PIN again</label>
          <input id="pin2" name="pin2" type="password" inputMode="numeric" autoComplete="new-password" maxLength={6} />
        </>
      )}
      {error ? <p className="error" role="alert">{error}</p> : null}
      <button type="submit" disabled={busy}>{step.kind === "phone" ? "Send me a code" : "Continue"}</button>
    </form>
  );
}
