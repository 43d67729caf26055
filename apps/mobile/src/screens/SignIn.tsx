// Sign in with the phone's OTP, then the PIN (chosen at the first sign-in).
import { useMutation } from "@connectrpc/connect-query";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { plainError } from "../lib/errors";
import { useOneAtATime } from "../lib/one-at-a-time";
import { normaliseKenyanPhone } from "@ttip/web-lib/phone";
import { signInRefusal, type SignInStep as Step } from "@ttip/web-lib/sign-in";
import { useState } from "react";
import { Text } from "react-native";
import { useApp } from "../app-context";
import { useI18n } from "../lib/i18n";
import { refusalWords } from "../lib/pin-refusals";
import { Button, ErrorText, Field, Screen, Title, styles } from "../ui";


const PIN = /^[0-9]{4,6}$/;

export function SignIn() {
  const { sessions } = useApp();
  const { t, locale } = useI18n();
  const [step, setStep] = useState<Step>({ kind: "phone" });
  const [phone, setPhone] = useState("");
  const [otp, setOtp] = useState("");
  const [pin, setPin] = useState("");
  const [pin2, setPin2] = useState("");
  const [error, setError] = useState("");
  const start = useMutation(AuthService.method.startPhoneVerification);
  const verifyOtp = useMutation(AuthService.method.verifyPhoneOtp);
  const verifyPin = useMutation(AuthService.method.verifyPin);
  const setNewPin = useMutation(AuthService.method.setPin);
  const resetPin = useMutation(AuthService.method.resetPin);
  const busy = start.isPending || verifyOtp.isPending || verifyPin.isPending || setNewPin.isPending || resetPin.isPending;
  const goTo = (next: Step) => {
    setError("");
    setOtp("");
    setPin("");
    setPin2("");
    setStep(next);
  };

  // One submission at a time: a double tap sent two sign-in codes (the second replacing the first) or counted one
  // wrong PIN twice.
  const submit = useOneAtATime(() => submitOnce());
  const submitOnce = async () => {
    setError("");
    try {
      if (step.kind === "phone") {
        const normalised = normaliseKenyanPhone(phone);
        if (!normalised) return setError(t("phoneInvalid"));
        const { challengeId } = await start.mutateAsync({ phone: normalised });
        setStep({ kind: "otp", challengeId });
      } else if (step.kind === "otp") {
        if (!/^[0-9]{6}$/.test(otp.trim())) return setError(t("otpInvalid"));
        const res = await verifyOtp.mutateAsync({ challengeId: step.challengeId, otp: otp.trim(), role: Role.WORKER });
        if (res.pinRequired) setStep({ kind: "pin", pinSessionId: res.pinSessionId, challengeId: step.challengeId, otp: otp.trim() });
        else if (res.tokens) {
          // A new worker: signed in by the OTP; the session is kept as "PIN pending"
          // (SetPin needs it) and the app opens only once the PIN is set.
          await sessions.save(res.tokens, { pinPending: true });
          setStep({ kind: "newPin" });
        }
      } else if (step.kind === "pin") {
        if (!PIN.test(pin)) return setError(t("pinInvalid"));
        const { tokens } = await verifyPin.mutateAsync({ pinSessionId: step.pinSessionId, pin });
        if (tokens) await sessions.save(tokens, { pinPending: false });
      } else if (step.kind === "resetPin") {
        if (!PIN.test(pin)) return setError(t("newPinInvalid"));
        if (pin !== pin2) return setError(t("pinsDiffer"));
        const { tokens } = await resetPin.mutateAsync({ challengeId: step.challengeId, otp: step.otp, newPin: pin });
        if (tokens) await sessions.save(tokens, { pinPending: false });
      } else {
        if (!PIN.test(pin)) return setError(t("newPinInvalid"));
        if (pin !== pin2) return setError(t("pinsDiffer"));
        await setNewPin.mutateAsync({ pin });
        await sessions.pinWasSet();
      }
    } catch (err) {
      // The PIN step ended (timed out, or used by a sign-in whose answer was lost): back to the number, said why.
      if (signInRefusal(err)?.kind === "pinStepEnded") goTo({ kind: "phone" });
      setError(refusalWords(err, t, "signIn") ?? plainError(err, locale));
    }
  };

  return (
    <Screen testID="signin">
      <Title>{t("signInTitle")}</Title>
      {step.kind === "phone" ? (
        <Field id="phone" label={t("phoneLabel")} placeholder={t("phoneHint")} value={phone} onChangeText={setPhone} keyboardType="phone-pad" autoComplete="tel" inputMode="tel" />
      ) : step.kind === "otp" ? (
        <Field id="otp" label={t("otpLabel")} value={otp} onChangeText={setOtp} keyboardType="number-pad" autoComplete="one-time-code" maxLength={6} inputMode="numeric" />
      ) : step.kind === "pin" ? (
        <Field id="pin" label={t("pinLabel")} value={pin} onChangeText={setPin} keyboardType="number-pad" secureTextEntry maxLength={6} inputMode="numeric" />
      ) : (
        <>
          <Text style={styles.text}>{t(step.kind === "resetPin" ? "resetPinIntro" : "newPinIntro")}</Text>
          <Field id="pin" label={t("newPinLabel")} value={pin} onChangeText={setPin} keyboardType="number-pad" secureTextEntry maxLength={6} inputMode="numeric" />
          <Field id="pin2" label={t("newPinAgain")} value={pin2} onChangeText={setPin2} keyboardType="number-pad" secureTextEntry maxLength={6} inputMode="numeric" />
        </>
      )}
      <ErrorText>{error}</ErrorText>
      <Button testID="signin-submit" title={step.kind === "phone" ? t("sendCode") : t("continue")} onPress={submit} disabled={busy} />
      {/* A mistyped number, or a code that never came or can no longer be used: back to the first step. */}
      {step.kind === "otp" || step.kind === "pin" || step.kind === "resetPin" ? <Button testID="signin-other-number" kind="secondary" title={t("otherNumber")} onPress={() => goTo({ kind: "phone" })} disabled={busy} /> : null}
      {/* A forgotten or locked PIN: a new one on the code just verified (auth signs out every other session). */}
      {step.kind === "pin" ? <Button testID="signin-forgot-pin" kind="secondary" title={t("forgotPin")} onPress={() => goTo({ kind: "resetPin", challengeId: step.challengeId, otp: step.otp })} disabled={busy} /> : null}
    </Screen>
  );
}
