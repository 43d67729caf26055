// Settings: language, notifications on this phone, payouts, the devices that approve them and where the worker is signed in, the PIN, sign out (here or everywhere).
import { useMutation } from "@connectrpc/connect-query";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { useState } from "react";
import { Text, View } from "react-native";
import { useApp } from "../app-context";
import { useI18n } from "../lib/i18n";
import { plainError } from "../lib/errors";
import { Button, ErrorText, Notice, Screen, Title, styles } from "../ui";
import { usePushRegistration } from "./push-registration";
import { ChangePin } from "./ChangePin";
import { DeviceKeys, SignedIn } from "./AccessLists";
import { PayoutSettings } from "./PayoutSettings";
import { TipSmsSetting } from "./TipSmsSetting";

export function Settings() {
  const { sessions, keyring } = useApp();
  const { t, locale, setLocale } = useI18n();
  const push = usePushRegistration();
  const logout = useMutation(AuthService.method.logout);
  const revokeAll = useMutation(AuthService.method.revokeAllSessions);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  // The phone's key approves withdrawals: kept after a sign-out, whoever signed in next as this worker (a phone handed
  // on) would withdraw with it, without the PIN a new key needs and unannounced. The next sign-in adds a new one.
  const forgetKey = async (userId: string | undefined) => {
    if (userId) await (await keyring()).forget(userId).catch(() => undefined);
  };
  const signOut = async (everywhere: boolean) => {
    setBusy(true);
    setError("");
    // Read first: a call below refused for good clears the session, and the key must go all the same.
    const userId = sessions.get()?.userId;
    if (everywhere) {
      // Asked because another phone may be in a thief's hands: not done, the worker is told and stays signed in to
      // try again (before, the error was dropped and this phone signed out as if the others were). Done, auth's end
      // of the sessions removes their push tokens, this phone's too.
      try {
        await revokeAll.mutateAsync({});
      } catch (err) {
        setBusy(false);
        return setError(t("signOutAllFailed", { reason: plainError(err, locale) }));
      }
      await forgetKey(userId);
      return sessions.clear();
    }
    // The push token first, while the session may still ask: after Logout the gateway refuses it, and the phone
    // would go on showing this worker's tips to whoever holds it next. The server side may be unreachable: the
    // phone forgets the session anyway.
    await push.unregister().catch(() => undefined);
    await logout.mutateAsync({}).catch(() => undefined);
    await forgetKey(userId);
    await sessions.clear();
  };
  return (
    <Screen testID="settings">
      <Title>{t("settingsTitle")}</Title>
      <Text role="heading" style={styles.text}>{t("language")}</Text>
      <View style={{ flexDirection: "row", gap: 8 }}>
        <Button testID="lang-en" kind={locale === "en" ? "primary" : "secondary"} title="English" onPress={() => setLocale("en")} />
        <Button testID="lang-sw" kind={locale === "sw" ? "primary" : "secondary"} title="Kiswahili" onPress={() => setLocale("sw")} />
      </View>
      <Text role="heading" style={styles.text}>{t("notifications")}</Text>
      <Notice testID="push-state">
        <Text style={styles.text}>{push.registered ? t("pushOn") : t("pushOff")}</Text>
        {!push.registered ? <Button kind="secondary" title={t("pushEnable")} onPress={() => void push.register()} /> : null}
      </Notice>
      <TipSmsSetting />
      <PayoutSettings />
      <DeviceKeys />
      <SignedIn />
      <ChangePin />
      <Button testID="sign-out" kind="secondary" title={t("signOut")} disabled={busy} onPress={() => void signOut(false)} />
      <Button testID="sign-out-all" kind="secondary" title={t("signOutAll")} disabled={busy} onPress={() => void signOut(true)} />
      <ErrorText>{error}</ErrorText>
    </Screen>
  );
}
