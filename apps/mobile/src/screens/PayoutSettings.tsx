// Where payouts go and when they go by themselves: the payout number and automatic payout with its
// minimum balance, checked as the web app checks them before any call. Replacing the number payouts
// go to needs this phone's proof: payment asks for it (FAILED_PRECONDITION naming step_up_token),
// the biometric prompt names the new number, and the same change goes again with the step-up token.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { asksForStepUp } from "@ttip/web-lib/errors";
import { checkPayout } from "@ttip/web-lib/forms";
import { PAYOUT_MIN_UNITS, unitsText, WALLET_CURRENCY } from "@ttip/web-lib/money";
import { nairobiDateTime } from "@ttip/web-lib/nairobi-time";
import { useState } from "react";
import { Switch, Text, View } from "react-native";
import { useApp } from "../app-context";
import { useDeviceStepUp } from "../lib/device-step-up";
import { usePinPrompt } from "./pin-prompt";
import { plainError } from "../lib/errors";
import { useOneAtATime } from "../lib/one-at-a-time";
import { localPhone } from "../lib/format";
import { useI18n } from "../lib/i18n";
import { Button, ErrorText, Field, styles } from "../ui";

/** The worker declined the biometric prompt: nothing was sent with a proof, nothing changed. */
class NotConfirmed extends Error {}

export function PayoutSettings() {
  const { sessions, biometric } = useApp();
  const { t, locale } = useI18n();
  const settings = useQuery(PaymentService.method.getPayoutSettings, {});
  const update = useMutation(PaymentService.method.updatePayoutSettings);
  const { askPin, pinPrompt } = usePinPrompt();
  const stepUp = useDeviceStepUp(askPin);
  const [phone, setPhone] = useState("");
  // Undefined: as saved. What the worker typed or switched wins over what the server sends.
  const [auto, setAuto] = useState<boolean>();
  const [minimum, setMinimum] = useState<string>();
  const [note, setNote] = useState("");
  const [error, setError] = useState("");
  const [saving, setSaving] = useState(false);
  const saved = settings.data?.settings;
  const autoOn = auto ?? saved?.autoPayout ?? false;
  const savedMinimum = saved?.autoPayoutMinimum ? unitsText(saved.autoPayoutMinimum.amountMinor, WALLET_CURRENCY).replace(/,/g, "") : "";
  const minimumText = minimum ?? savedMinimum;

  const proved = async (payoutPhone: string) => {
    const session = sessions.get();
    if (!session) throw new NotConfirmed(t("sessionEnded"));
    if (!(await biometric.confirm(t("payoutNumberPrompt", { phone: localPhone(payoutPhone) })))) throw new NotConfirmed(t("payoutNumberNotConfirmed"));
    return stepUp(session.userId, "payout_number", (stage) => setNote(t(stage === "key" ? "settingUpKey" : "signingKey")));
  };

  // One save at a time: a double tap sent two changes, each asking for the fingerprint and the device's step-up.
  const save = useOneAtATime(() => saveOnce());
  const saveOnce = async () => {
    setError("");
    setNote("");
    const c = checkPayout(phone, autoOn, minimumText);
    if (!c.ok) return setError(c.problem === "err_phone" ? t("phoneInvalid") : t("minimumInvalid", { least: String(PAYOUT_MIN_UNITS) }));
    const change = {
      payoutPhone: c.value.payoutPhone,
      autoPayout: c.value.autoPayout,
      autoPayoutMinimum: c.value.minimumMinor ? { amountMinor: c.value.minimumMinor, currency: WALLET_CURRENCY } : undefined,
    };
    setSaving(true);
    try {
      await update.mutateAsync(change).catch(async (err: unknown) => {
        if (!asksForStepUp(err)) throw err;
        return update.mutateAsync({ ...change, stepUpToken: await proved(c.value.payoutPhone) });
      });
      setPhone("");
      setAuto(undefined);
      setMinimum(undefined);
      await settings.refetch();
      setNote(t("prefSaved"));
    } catch (err) {
      setNote("");
      setError(err instanceof NotConfirmed ? err.message : plainError(err, locale));
    } finally {
      setSaving(false);
    }
  };

  return (
    <View testID="payout-settings" style={{ gap: 4 }}>
      <Text role="heading" style={styles.text}>{t("payoutTitle")}</Text>
      {settings.data ? (
        <Text testID="payout-phone" style={styles.muted}>{saved?.payoutPhoneMasked ? t("payoutNumberNow", { phone: saved.payoutPhoneMasked }) : t("payoutNumberNone")}</Text>
      ) : null}
      {saved?.automaticPayoutsFrom ? (
        <Text testID="payout-cooling" role="note" style={styles.text}>{t("payoutNumberCooling", { when: nairobiDateTime(timestampDate(saved.automaticPayoutsFrom)).slice(0, 16) })}</Text>
      ) : null}
      <Field id="payout-phone-new" label={t("payoutNumber")} value={phone} onChangeText={setPhone} keyboardType="phone-pad" inputMode="tel" />
      <View style={{ flexDirection: "row", alignItems: "center", justifyContent: "space-between", gap: 8 }}>
        <Text style={[styles.text, { flex: 1 }]}>{t("autoPayout")}</Text>
        <Switch testID="auto-payout" accessibilityLabel={t("autoPayout")} disabled={!settings.data} value={autoOn} onValueChange={setAuto} />
      </View>
      <Field id="auto-minimum" label={t("autoMinimum")} value={minimumText} onChangeText={setMinimum} keyboardType="number-pad" inputMode="numeric" />
      {note ? <Text testID="payout-note" role="status" style={styles.muted}>{note}</Text> : null}
      <ErrorText>{error}</ErrorText>
      <Button testID="save-payout" kind="secondary" title={t("savePayout")} onPress={() => void save()} disabled={saving || !settings.data} />
      {pinPrompt}
    </View>
  );
}
