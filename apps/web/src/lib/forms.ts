// What the worker's forms check before calling the API: the same rules as
// the contracts (protovalidate on the services), so a mistake is named at
// once and no call is made. Each returns the message key of the first
// problem, or the clean values.
import { normaliseKenyanPhone } from "./phone";
import { MPESA_MAX_UNITS, parseWholeUnits, PAYOUT_MIN_UNITS } from "./money";

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };
const bad = <T>(problem: string): Checked<T> => ({ ok: false, problem });
const good = <T>(value: T): Checked<T> => ({ ok: true, value });

const HHMM = /^([01][0-9]|2[0-3]):[0-5][0-9]$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** A PIN as auth takes it: 4 to 6 digits. */
export const PIN = /^[0-9]{4,6}$/;

/** UpdateProfile: display_name 1..60, photo_url empty or an http(s) URL (qr refuses others); PutProfile: role at most 40 characters, one line. */
export function checkProfile(name: string, photo: string, role = ""): Checked<{ displayName: string; photoUrl: string; role: string }> {
  const displayName = name.trim();
  if (displayName.length < 1 || displayName.length > 60) return bad("err_name");
  const photoUrl = photo.trim();
  if (photoUrl && (!/^https:\/\/[^\s]+$/i.test(photoUrl) || photoUrl.length > 2048)) return bad("err_photo");
  const cleanRole = role.trim();
  if ([...cleanRole].length > 40 || /[\u0000-\u001f]/.test(cleanRole)) return bad("err_role");
  return good({ displayName, photoUrl, role: cleanRole });
}

/** The most a worker may pick; the app scales it down before PutProfilePhoto (at most 512 KiB). */
export const MAX_PHOTO_FILE_BYTES = 2 * 1024 * 1024;
const PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];

/** A picked photo: present, at most 2 MB, and a JPEG, PNG or WebP as the browser typed it (qr checks its bytes). */
export function checkPhotoFile(file: { size: number; type: string } | undefined): Checked<true> {
  if (!file || file.size === 0) return bad("err_photoNone");
  if (file.size > MAX_PHOTO_FILE_BYTES) return bad("err_photoBig");
  if (!PHOTO_TYPES.includes(file.type)) return bad("err_photoType");
  return good(true);
}

/** ChangePin: both 4 to 6 digits, and different (change_pin.different). */
export function checkPinChange(current: string, next: string, again: string): Checked<{ currentPin: string; newPin: string }> {
  if (!PIN.test(current) || !PIN.test(next)) return bad("err_newPin");
  if (next !== again) return bad("err_pinsDiffer");
  if (current === next) return bad("err_samePin");
  return good({ currentPin: current, newPin: next });
}

/** UpdatePayoutSettings: a Kenyan number (or empty: unchanged); auto payout needs a minimum of at least PAYOUT_MIN_UNITS. */
export function checkPayout(phone: string, auto: boolean, minimum: string): Checked<{ payoutPhone: string; autoPayout: boolean; minimumMinor: bigint }> {
  const typed = phone.trim();
  const payoutPhone = typed ? normaliseKenyanPhone(typed) : "";
  if (payoutPhone === undefined) return bad("err_phone");
  let minimumMinor = 0n;
  if (auto || minimum.trim()) {
    const m = parseWholeUnits(minimum);
    if (!m || m < BigInt(PAYOUT_MIN_UNITS) * 100n) return bad("err_minimum");
    minimumMinor = m;
  }
  return good({ payoutPhone, autoPayout: auto, minimumMinor });
}

/** UpdatePreferences: quiet hours both "HH:MM" or both empty; e-mail empty or an address. */
export function checkNotifications(quietStart: string, quietEnd: string, email: string): Checked<{ quietHoursStart: string; quietHoursEnd: string; email: string }> {
  const s = quietStart.trim();
  const e = quietEnd.trim();
  if (!s !== !e || (s && !HHMM.test(s)) || (e && !HHMM.test(e))) return bad("err_quiet");
  const mail = email.trim();
  if (mail && !EMAIL.test(mail)) return bad("err_email");
  return good({ quietHoursStart: s, quietHoursEnd: e, email: mail });
}

/**
 * RequestPayout: whole shillings from PAYOUT_MIN_UNITS to `maxUnits` (the per-withdrawal limit the wallet reports;
 * M-Pesa's most per transaction until it is known); the number empty (payout number) or Kenyan.
 */
export function checkWithdrawal(amount: string, phone: string, maxUnits = MPESA_MAX_UNITS): Checked<{ amountMinor: bigint; mpesaPhone: string }> {
  const amountMinor = parseWholeUnits(amount, maxUnits);
  if (!amountMinor || amountMinor < BigInt(PAYOUT_MIN_UNITS) * 100n) return bad("err_amount");
  const typed = phone.trim();
  const mpesaPhone = typed ? normaliseKenyanPhone(typed) : "";
  if (mpesaPhone === undefined) return bad("err_mpesa");
  return good({ amountMinor, mpesaPhone });
}
