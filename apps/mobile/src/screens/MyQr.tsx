// My QR, full screen, for the customer to scan. The last image (PNG from the qr
// service) is kept with its link, so the code shows with no network at all.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { useMutation, useTransport } from "@connectrpc/connect-query";
import { ImageFormat, OwnerKind, QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { settlesWrite, WriteKey } from "@ttip/web-lib/write-key";
import { plainError } from "../lib/errors";
import { useCallback, useEffect, useRef, useState } from "react";
import { Image, Text, useWindowDimensions } from "react-native";
import { useApp } from "../app-context";
import { when } from "../lib/format";
import { useI18n } from "../lib/i18n";
import { isUnreachable } from "../lib/offline";
import { Button, ErrorText, Field, Screen, Title, styles } from "../ui";
import { OfflineNotice } from "./OfflineNotice";

export interface SavedQr {
  savedAt: string;
  shortCode: string;
  url: string;
  /** data:image/png;base64,… */
  image: string;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function MyQr() {
  const { sessions, cache, share, newKey } = useApp();
  const { t, locale } = useI18n();
  const transport = useTransport();
  const { width } = useWindowDimensions();
  const userId = sessions.get()?.userId ?? "";
  const slot = `${userId}:qr`;
  const [qr, setQr] = useState<SavedQr>();
  const [state, setState] = useState<"loading" | "live" | "offline" | "none">("loading");
  const [error, setError] = useState("");
  // A code shows its owner's name: a worker who never gave one (a new sign-up) gives it with their first code.
  const [needsName, setNeedsName] = useState(false);
  const [name, setName] = useState("");
  const putProfile = useMutation(QrService.method.putProfile);
  const create = useMutation(QrService.method.createQrCode);
  // The code asked for, by one key until the service answers for it (write-key.ts): a double tap, or a tap again
  // after a lost answer, is the same code, not a second one (before, each tap sent a new key).
  const createKey = useRef<WriteKey>(undefined);
  createKey.current ??= new WriteKey(undefined, newKey);
  const creating = useRef(false);

  const load = useCallback(async () => {
    // A copy that cannot be read (storage failing, a copy cut short) is no copy: it threw before the call below,
    // and the screen said "loading" on every visit.
    const saved = await cache.get(slot).then((text) => (text ? (JSON.parse(text) as SavedQr) : undefined)).catch(() => undefined);
    if (saved) setQr(saved);
    try {
      const client = createClient(QrService, transport);
      const { qrCodes } = await client.listQrCodes({ ownerKind: OwnerKind.WORKER, ownerId: userId });
      const active = qrCodes.find((c) => c.status === QrCodeStatus.ACTIVE);
      if (!active) {
        // A saved copy of a code no longer active (revoked, replaced) would be shown offline as one that works:
        // forgotten first, whatever the next call answers.
        await cache.delete(slot);
        setQr(undefined);
        const named = await client.getProfile({ ownerKind: OwnerKind.WORKER, ownerId: userId }).then(() => true, (err: unknown) => {
          if (ConnectError.from(err).code === Code.NotFound) return false;
          throw err;
        });
        setNeedsName(!named);
        return setState("none");
      }
      if (saved && saved.shortCode !== active.shortCode) {
        await cache.delete(slot);
        setQr(undefined);
      }
      const png = await client.renderQrCode({ qrCodeId: active.qrCodeId, format: ImageFormat.PNG, size: 640 });
      const fresh: SavedQr = { savedAt: new Date().toISOString(), shortCode: active.shortCode, url: active.url, image: `data:${png.contentType};base64,${base64(png.content)}` };
      // The copy is for offline use: a phone that cannot keep it still shows the code.
      await cache.set(slot, JSON.stringify(fresh)).catch(() => undefined);
      setQr(fresh);
      setState("live");
    } catch (err) {
      if (isUnreachable(err)) setState("offline");
      else (setError(plainError(err, locale)), setState("live"));
    }
  }, [cache, slot, transport, userId, locale]);

  useEffect(() => void load(), [load]);

  const side = Math.min(width - 32, 480);
  return (
    <Screen testID="my-qr">
      <Title>{t("qrTitle")}</Title>
      {state === "offline" ? <OfflineNotice savedAt={qr ? new Date(qr.savedAt) : undefined} hasData={!!qr} /> : null}
      <ErrorText>{error}</ErrorText>
      {qr && state !== "none" ? (
        <>
          <Image testID="qr-image" accessibilityLabel={`QR ${qr.shortCode}`} source={{ uri: qr.image }} style={{ width: side, height: side, alignSelf: "center" }} resizeMode="contain" />
          <Text style={[styles.big, { textAlign: "center" }]}>{qr.shortCode}</Text>
          {state === "offline" ? <Text style={styles.muted}>{t("qrSaved", { time: when(new Date(qr.savedAt), locale) })}</Text> : null}
          <Button kind="secondary" title={t("shareLink")} onPress={() => share(t("shareMessage", { url: qr.url }), qr.url)} />
        </>
      ) : null}
      {state === "none" ? (
        <>
          <Text style={styles.text}>{t("qrNone")}</Text>
          {needsName ? <Field id="qr-name" label={t("yourName")} value={name} onChangeText={setName} maxLength={60} autoComplete="name" /> : null}
          <Button
            testID="qr-create"
            title={t("qrCreate")}
            disabled={create.isPending}
            onPress={async () => {
              if (creating.current) return;
              const displayName = name.trim();
              if (needsName && !displayName) return setError(t("nameInvalid"));
              creating.current = true;
              setError("");
              const keys = createKey.current!;
              const idempotencyKey = keys.use();
              try {
                if (needsName) {
                  await putProfile.mutateAsync({ ownerKind: OwnerKind.WORKER, ownerId: userId, displayName, photoUrl: "" });
                  setNeedsName(false);
                }
                await create.mutateAsync({ ownerKind: OwnerKind.WORKER, ownerId: userId, idempotencyKey });
                keys.settle(idempotencyKey);
                await load();
              } catch (err) {
                if (settlesWrite(ConnectError.from(err))) keys.settle(idempotencyKey);
                setError(plainError(err, locale));
              } finally {
                creating.current = false;
              }
            }}
          />
        </>
      ) : null}
    </Screen>
  );
}
