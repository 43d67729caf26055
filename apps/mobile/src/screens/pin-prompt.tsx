// The PIN asked for when this phone's key is added (auth adds one only with the PIN itself), shown on the screen
// while the step-up waits for it.
import { PIN } from "@ttip/web-lib/forms";
import { PinRequest, type AskPin } from "@ttip/web-lib/step-up-flow";
import { useEffect, useState, type ReactNode } from "react";
import { Text } from "react-native";
import { useI18n } from "../lib/i18n";
import { Button, ErrorText, Field, Notice, styles } from "../ui";

export function usePinPrompt(): { askPin: AskPin; pinPrompt: ReactNode } {
  const { t } = useI18n();
  const [asking, setAsking] = useState(false);
  const [pin, setPin] = useState("");
  const [problem, setProblem] = useState("");
  const [request] = useState(() => new PinRequest((shown) => (setAsking(shown), setPin(""), setProblem(""))));
  useEffect(() => () => request.decline(), [request]);

  const pinPrompt = asking ? (
    <Notice testID="key-pin">
      <Text style={styles.text}>{t("keyPinAsk")}</Text>
      <Field id="key-pin-input" label={t("keyPinLabel")} value={pin} onChangeText={setPin} secureTextEntry keyboardType="number-pad" inputMode="numeric" maxLength={6} autoFocus />
      <ErrorText>{problem}</ErrorText>
      <Button testID="key-pin-continue" title={t("keyPinContinue")} onPress={() => (PIN.test(pin) ? request.answer(pin) : setProblem(t("keyPinInvalid")))} />
      <Button kind="secondary" title={t("keyPinCancel")} onPress={() => request.decline()} />
    </Notice>
  ) : null;
  return { askPin: request.ask, pinPrompt };
}
