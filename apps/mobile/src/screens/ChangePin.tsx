// Change PIN in settings: the current PIN, the new one twice (the web app's checks, before any call).
import { useMutation } from "@connectrpc/connect-query";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { checkPinChange } from "@ttip/web-lib/forms";
import { useState } from "react";
import { Text, View } from "react-native";
import { plainError } from "../lib/errors";
import { useI18n, type MessageKey } from "../lib/i18n";
import { useOneAtATime } from "../lib/one-at-a-time";
import { refusalWords } from "../lib/pin-refusals";
import { Button, ErrorText, Field, styles } from "../ui";

// checkPinChange's problems (the web app's message keys) in this app's words.
const PROBLEM: Record<string, MessageKey> = { err_newPin: "newPinInvalid", err_pinsDiffer: "pinsDiffer", err_samePin: "pinUnchanged" };

export function ChangePin() {
  const { t, locale } = useI18n();
  const changePin = useMutation(AuthService.method.changePin);
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState("");
  const [done, setDone] = useState(false);
  // A double tap sent two changes: the second refused (the PIN changed meanwhile) or counted a wrong PIN, beside "changed".
  const submit = useOneAtATime(async () => {
    setError("");
    setDone(false);
    const c = checkPinChange(current, next, again);
    if (!c.ok) return setError(t(PROBLEM[c.problem] ?? "newPinInvalid"));
    try {
      await changePin.mutateAsync(c.value);
      setCurrent("");
      setNext("");
      setAgain("");
      setDone(true);
    } catch (err) {
      setError(refusalWords(err, t, "settings") ?? plainError(err, locale));
    }
  });
  return (
    <View style={{ gap: 4 }}>
      <Text role="heading" style={styles.text}>{t("changePin")}</Text>
      <Field id="current-pin" label={t("currentPin")} value={current} onChangeText={setCurrent} keyboardType="number-pad" secureTextEntry maxLength={6} inputMode="numeric" />
      <Field id="new-pin" label={t("newPinLabel")} value={next} onChangeText={setNext} keyboardType="number-pad" secureTextEntry maxLength={6} inputMode="numeric" />
      <Field id="new-pin2" label={t("newPinAgain")} value={again} onChangeText={setAgain} keyboardType="number-pad" secureTextEntry maxLength={6} inputMode="numeric" />
      <ErrorText>{error}</ErrorText>
      {done ? <Text testID="pin-changed" role="status" style={styles.muted}>{t("pinChanged")}</Text> : null}
      <Button testID="change-pin" kind="secondary" title={t("changePin")} onPress={() => void submit()} disabled={changePin.isPending} />
    </View>
  );
}
