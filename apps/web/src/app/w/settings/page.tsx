"use client";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useState } from "react";
import { Locale as AuthLocale } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { Channel, TemplateKey, type Preferences } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { useDeviceStepUp } from "../../../lib/device-step-up";
import { usePinPrompt } from "../pin-prompt";
import { asksForStepUp } from "../../../lib/errors";
import { refusedField } from "../../../lib/focus";
import { checkNotifications, checkPayout, checkPinChange, checkProfile } from "../../../lib/forms";
import { pickedPhoto } from "../../../lib/photo";
import { isWorkerRole, roleLabel, WORKER_ROLES } from "../../../lib/roles";
import { unitsText, WALLET_CURRENCY } from "../../../lib/money";
import { nairobiDateTime } from "../../../lib/nairobi-time";
import { loadSession } from "../../../lib/session";
import type { WorkerKey } from "../../../lib/worker-i18n";
import { WorkerNav } from "../nav";
import { useT } from "../use-t";
import { DeviceKeys, SignedIn, useAccessLists } from "./access";
import { Section, type Refusal } from "./section";

// The kinds a worker may tune (sign-in codes and fraud holds always go out;
// notification does not take preferences for venue invitations and pool shares yet).
const KINDS = [TemplateKey.TIP_RECEIVED, TemplateKey.POOL_SHARE, TemplateKey.PAYOUT_SENT, TemplateKey.PAYOUT_FAILED, TemplateKey.WEEKLY_SUMMARY];
const CHANNELS = [Channel.SMS, Channel.EMAIL, Channel.PUSH, Channel.IN_APP];

// Each form's inputs by the problem a check or a refusal names: the focus goes there after it.
type Inputs = Readonly<Record<string, string>>;
const PROFILE: Inputs = { err_name: "name", err_photo: "photo", err_role: "ownRole", display_name: "name", photo_url: "photo", role: "ownRole" };
const PHOTO: Inputs = { err_photoNone: "photoFile", err_photoBig: "photoFile", err_photoType: "photoFile", err_photoRead: "photoFile", image: "photoFile" };
const PAYOUT: Inputs = { err_phone: "payoutPhone", err_minimum: "minimum", payout_phone: "payoutPhone", "auto_payout_minimum.amount_minor": "minimum" };
const PIN: Inputs = { err_newPin: "newPin", err_pinsDiffer: "newPin2", err_samePin: "newPin", current_pin: "currentPin", new_pin: "newPin" };
const NOTIFY: Inputs = {
  err_quiet: "quietStart", err_email: "email",
  "preferences.quiet_hours_start": "quietStart", "preferences.quiet_hours_end": "quietEnd", "preferences.email": "email",
};

/**
 * Settings: profile (name, role and photo link, as the tip page shows them),
 * an uploaded photo (scaled down here, kept by qr, served by this app),
 * language (the app, auth's profile and notification's messages), payout
 * number and automatic payout, PIN change, and notification channels per
 * kind with quiet hours and an e-mail address; the devices that can approve
 * withdrawals and the places signed in, each removable.
 */
export default function Settings() {
  const { t, err, locale } = useT();
  const [session] = useState(() => loadSession());
  const me = useQuery(AuthService.method.getMe, {});
  const qrProfile = useQuery(QrService.method.getProfile, { ownerKind: OwnerKind.WORKER, ownerId: session?.userId ?? "" }, { enabled: !!session, retry: false });
  const payout = useQuery(PaymentService.method.getPayoutSettings, {});
  const prefs = useQuery(NotificationService.method.getPreferences, {});
  const updateProfile = useMutation(AuthService.method.updateProfile);
  const putProfile = useMutation(QrService.method.putProfile);
  const putPhoto = useMutation(QrService.method.putProfilePhoto);
  const [ownRole, setOwnRole] = useState<boolean>();
  const changePin = useMutation(AuthService.method.changePin);
  const updatePayout = useMutation(PaymentService.method.updatePayoutSettings);
  const { askPin, pinPrompt } = usePinPrompt();
  const stepUp = useDeviceStepUp(askPin);
  const updatePrefs = useMutation(NotificationService.method.updatePreferences);
  const access = useAccessLists();
  const user = me.data?.user;
  const shown = qrProfile.data?.profile;
  // The tip page's profile as qr has it now, undefined only when it has none. A read that failed is tried again and its
  // error stops the save: read as none, a save replaced the worker's photo and city with nothing.
  const currentProfile = async () => {
    if (!qrProfile.error) return shown;
    const again = await qrProfile.refetch();
    if (again.error && ConnectError.from(again.error).code !== Code.NotFound) throw again.error;
    return again.data?.profile;
  };
  const p = payout.data?.settings;
  const loaded = me.isFetched && payout.isFetched && prefs.isFetched && (qrProfile.isFetched || !session) && access.loaded;
  const attempt = async (f: () => Promise<unknown>, inputs: Inputs = {}): Promise<Refusal | undefined> => {
    try {
      await f();
      return undefined;
    } catch (x) {
      const field = refusedField(x);
      return { text: err(x), input: field && inputs[field] };
    }
  };
  const refused = (problem: string, inputs: Inputs): Refusal => ({ text: t(problem as WorkerKey), input: inputs[problem] });

  if (!loaded) return (<><WorkerNav /><p>{t("loading")}</p></>);
  const name = user?.displayName || shown?.displayName || "";
  const role = shown?.role ?? "";
  const roleChoice = !role || isWorkerRole(role) ? role : "other";
  const channelsOf = (pr: Preferences | undefined, key: TemplateKey) => pr?.kinds.find((k) => k.key === key)?.channels ?? [];
  return (
    <>
      <WorkerNav />
      <h1>{t("settings")}</h1>
      {me.error ? <p className="error" role="alert">{err(me.error)}</p> : null}

      <Section
        title={t("profile")}
        id="profile"
        button={t("saveProfile")}
        onSubmit={async (f) => {
          const chosen = String(f.get("role") ?? "");
          const c = checkProfile(String(f.get("name") ?? ""), String(f.get("photo") ?? ""), chosen === "other" ? String(f.get("ownRole") ?? "") : chosen);
          if (!c.ok) return refused(c.problem, PROFILE);
          return attempt(async () => {
            const now = await currentProfile();
            await updateProfile.mutateAsync({ displayName: c.value.displayName, photoUrl: c.value.photoUrl });
            // The tip page shows qr's profile: keep it the same, with its currency and city.
            await putProfile.mutateAsync({ ownerKind: OwnerKind.WORKER, ownerId: session!.userId, displayName: c.value.displayName, photoUrl: c.value.photoUrl, currency: now?.currency ?? "", city: now?.city ?? "", role: c.value.role });
            await Promise.all([me.refetch(), qrProfile.refetch()]);
          }, PROFILE);
        }}
      >
        <label className="field" htmlFor="name">{t("name")}</label>
        <input id="name" name="name" type="text" maxLength={60} autoComplete="name" defaultValue={name} />
        <label className="field" htmlFor="role">{t("role")}</label>
        <select id="role" name="role" defaultValue={roleChoice} onChange={(e) => setOwnRole(e.target.value === "other")}>
          <option value="">{t("roleNone")}</option>
          {WORKER_ROLES.map((r) => <option key={r} value={r}>{roleLabel(r, locale)}</option>)}
          <option value="other">{t("roleOther")}</option>
        </select>
        {(ownRole ?? roleChoice === "other") ? (
          <>
            <label className="field" htmlFor="ownRole">{t("roleOwnWords")}</label>
            <input id="ownRole" name="ownRole" type="text" maxLength={40} defaultValue={roleChoice === "other" ? role : ""} />
          </>
        ) : null}
        <label className="field" htmlFor="photo">{t("photoUrl")}</label>
        <input id="photo" name="photo" type="url" inputMode="url" defaultValue={user?.photoUrl || shown?.photoUrl || ""} />
      </Section>

      <Section
        title={t("photoHeading")}
        id="photo-upload"
        button={t("savePhoto")}
        onSubmit={async (f) => {
          const remove = f.get("removePhoto") === "on";
          const file = f.get("photoFile");
          let image: Uint8Array = new Uint8Array();
          if (!remove) {
            const picked = await pickedPhoto(file instanceof File ? file : undefined);
            if (!picked.ok) return refused(picked.problem, PHOTO);
            image = picked.value;
          }
          return attempt(async () => {
            // A photo belongs to a profile: a worker who never saved one gets it now, under their name.
            if (!(await currentProfile())) await putProfile.mutateAsync({ ownerKind: OwnerKind.WORKER, ownerId: session!.userId, displayName: name || "-", photoUrl: "" });
            await putPhoto.mutateAsync({ ownerKind: OwnerKind.WORKER, ownerId: session!.userId, image });
            await qrProfile.refetch();
          }, PHOTO);
        }}
      >
        {shown?.uploadedPhotoUrl ? (
          <figure>
            {/* eslint-disable-next-line @next/next/no-img-element */}
            <img src={shown.uploadedPhotoUrl} alt={t("photoNow")} width={72} height={72} data-testid="photo-now" />
            <figcaption className="muted">{t("photoNow")}</figcaption>
          </figure>
        ) : null}
        <label className="field" htmlFor="photoFile">{t("photoFile")}</label>
        <input id="photoFile" name="photoFile" type="file" accept="image/jpeg,image/png,image/webp" />
        {shown?.uploadedPhotoUrl ? <label className="check"><input type="checkbox" name="removePhoto" /> {t("removePhoto")}</label> : null}
      </Section>

      <Section
        title={t("language")}
        read={me.data === undefined ? me : prefs}
        id="language"
        button={t("saveLanguage")}
        onSubmit={async (f) => {
          const to = f.get("language") === "sw" ? "sw" : "en";
          const problem = await attempt(async () => {
            if (name) await updateProfile.mutateAsync({ displayName: name, photoUrl: user?.photoUrl ?? "", locale: to === "sw" ? AuthLocale.SW : AuthLocale.EN });
            await updatePrefs.mutateAsync({ preferences: { locale: to, quietHoursStart: prefs.data?.preferences?.quietHoursStart ?? "", quietHoursEnd: prefs.data?.preferences?.quietHoursEnd ?? "" } });
          });
          if (problem) return problem;
          // The screens follow at once: the same cookie the tip page's switch sets.
          document.cookie = `ttip_lang=${to}; path=/; max-age=${365 * 86400}; samesite=lax`;
          window.location.reload();
          return undefined;
        }}
      >
        <label className="field" htmlFor="language-select">{t("languageLabel")}</label>
        <select id="language-select" name="language" defaultValue={locale}>
          <option value="en">English</option>
          <option value="sw">Kiswahili</option>
        </select>
      </Section>

      <Section
        title={t("payout")}
        read={payout}
        id="payout"
        button={t("savePayout")}
        onSubmit={async (f) => {
          const c = checkPayout(String(f.get("payoutPhone") ?? ""), f.get("auto") === "on", String(f.get("minimum") ?? ""));
          if (!c.ok) return refused(c.problem, PAYOUT);
          return attempt(async () => {
            const change = {
              payoutPhone: c.value.payoutPhone,
              autoPayout: c.value.autoPayout,
              autoPayoutMinimum: c.value.minimumMinor ? { amountMinor: c.value.minimumMinor, currency: "KES" } : undefined,
            };
            // Replacing the number payouts go to needs this device's proof: asked for only then, and the change sent again with it.
            await updatePayout.mutateAsync(change).catch(async (x: unknown) => {
              if (!asksForStepUp(x) || !session) throw x;
              await updatePayout.mutateAsync({ ...change, stepUpToken: await stepUp(session.userId, "payout_number") });
            });
            await payout.refetch();
          }, PAYOUT);
        }}
      >
        <label className="field" htmlFor="payoutPhone">{t("payoutNumber")}</label>
        <input id="payoutPhone" name="payoutPhone" type="tel" inputMode="tel" autoComplete="tel" />
        {p?.payoutPhoneMasked ? <p className="muted" data-testid="payout-phone">{t("payoutNumberNow", { phone: p.payoutPhoneMasked })}</p> : null}
        {p?.automaticPayoutsFrom ? <p role="note" data-testid="payout-cooling">{t("payoutNumberCooling", { when: nairobiDateTime(timestampDate(p.automaticPayoutsFrom)).slice(0, 16) })}</p> : null}
        <label className="check"><input type="checkbox" name="auto" defaultChecked={p?.autoPayout ?? false} /> {t("autoPayout")}</label>
        <label className="field" htmlFor="minimum">{t("autoMinimum")}</label>
        <input id="minimum" name="minimum" type="text" inputMode="numeric" defaultValue={p?.autoPayoutMinimum ? unitsText(p.autoPayoutMinimum.amountMinor, p.autoPayoutMinimum.currency || WALLET_CURRENCY).replace(/,/g, "") : ""} />
      </Section>
      {pinPrompt}

      <Section
        title={t("changePin")}
        id="pin"
        button={t("savePin")}
        onSubmit={async (f) => {
          const c = checkPinChange(String(f.get("currentPin") ?? ""), String(f.get("newPin") ?? ""), String(f.get("newPin2") ?? ""));
          if (!c.ok) return refused(c.problem, PIN);
          return attempt(() => changePin.mutateAsync(c.value), PIN);
        }}
      >
        <label className="field" htmlFor="currentPin">{t("currentPin")}</label>
        <input id="currentPin" name="currentPin" type="password" inputMode="numeric" autoComplete="current-password" maxLength={6} />
        <label className="field" htmlFor="newPin">{t("newPin")}</label>
        <input id="newPin" name="newPin" type="password" inputMode="numeric" autoComplete="new-password" maxLength={6} />
        <label className="field" htmlFor="newPin2">{t("samePin")}</label>
        <input id="newPin2" name="newPin2" type="password" inputMode="numeric" autoComplete="new-password" maxLength={6} />
      </Section>

      <Section
        title={t("notifications")}
        read={prefs}
        id="notifications"
        button={t("saveNotifications")}
        onSubmit={async (f) => {
          const c = checkNotifications(String(f.get("quietStart") ?? ""), String(f.get("quietEnd") ?? ""), String(f.get("email") ?? ""));
          if (!c.ok) return refused(c.problem, NOTIFY);
          const kinds = KINDS.map((key) => ({ key, channels: CHANNELS.filter((ch) => f.get(`k${key}-c${ch}`) === "on") }));
          return attempt(async () => {
            // An emptied field removes the address kept: an empty e-mail alone keeps it.
            const removeEmail = !c.value.email && !!prefs.data?.preferences?.email;
            await updatePrefs.mutateAsync({ preferences: { kinds, ...c.value, locale: "" }, removeEmail });
            await prefs.refetch();
          }, NOTIFY);
        }}
      >
        <div className="table-box"><table>
          <thead>
            <tr><th></th>{CHANNELS.map((ch) => <th key={ch}>{t(`ch_${Channel[ch]}` as WorkerKey)}</th>)}</tr>
          </thead>
          <tbody>
            {KINDS.map((key) => (
              <tr key={key}>
                <th>{t(`k_${TemplateKey[key]}` as WorkerKey)}</th>
                {CHANNELS.map((ch) => (
                  <td key={ch}>
                    <input
                      type="checkbox"
                      name={`k${key}-c${ch}`}
                      aria-label={`${t(`k_${TemplateKey[key]}` as WorkerKey)}: ${t(`ch_${Channel[ch]}` as WorkerKey)}`}
                      defaultChecked={channelsOf(prefs.data?.preferences, key).includes(ch)}
                    />
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table></div>
        <label className="field" htmlFor="quietStart">{t("quietFrom")}</label>
        <input id="quietStart" name="quietStart" type="text" inputMode="numeric" placeholder="22:00" defaultValue={prefs.data?.preferences?.quietHoursStart ?? ""} />
        <label className="field" htmlFor="quietEnd">{t("quietTo")}</label>
        <input id="quietEnd" name="quietEnd" type="text" inputMode="numeric" placeholder="07:00" defaultValue={prefs.data?.preferences?.quietHoursEnd ?? ""} />
        <label className="field" htmlFor="email">{t("email")}</label>
        <input id="email" name="email" type="email" autoComplete="email" defaultValue={prefs.data?.preferences?.email ?? ""} />
      </Section>

      <DeviceKeys devices={access.devices} sessions={access.sessions} />
      <SignedIn sessions={access.sessions} />
    </>
  );
}
