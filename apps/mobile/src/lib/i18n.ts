// English and Swahili. The phone's language picks one until the worker chooses in settings.
// The words both worker apps say are the web app's (SHARED), so a worker reads the same words, and the
// same Swahili, on the phone and in the browser; the rest are the phone's own.
import { createContext, useContext } from "react";
import { workerDictionaries, type WorkerKey } from "@ttip/web-lib/worker-i18n";

export type Locale = "en" | "sw";

/** This app's key -> the web app's, for the words both worker apps say: one catalogue, one Swahili. */
const SHARED = {
  // A card tip refunded or charged back (@ttip/web-lib/card-tip-state), keyed as there.
  cs_refunded: "cs_refunded",
  cs_partlyRefunded: "cs_partlyRefunded",
  cs_disputed: "cs_disputed",
  cs_reversed: "cs_reversed",
  // A withdrawal's outcome (@ttip/web-lib/payout-outcome), keyed as there.
  po_limit: "po_limit",
  po_unregistered: "po_unregistered",
  po_ourSide: "po_ourSide",
  po_balance: "po_balance",
  po_walletLimit: "po_walletLimit",
  po_nothingSent: "po_nothingSent",
  po_other: "po_other",
  po_onHold: "po_onHold",
  signInTitle: "signIn",
  phoneLabel: "yourPhone",
  phoneInvalid: "err_phone",
  sendCode: "sendCode",
  otpLabel: "otpLabel",
  otpInvalid: "err_otp",
  pinLabel: "pinLabel",
  pinInvalid: "err_pin",
  newPinIntro: "choosePin",
  newPinLabel: "newPin",
  newPinAgain: "samePin",
  newPinInvalid: "err_newPin",
  pinsDiffer: "err_pinsDiffer",
  otherNumber: "otherNumber",
  forgotPin: "forgotPin",
  resetPinIntro: "resetPinIntro",
  otpWrong: "err_otpWrong",
  otpSpent: "err_otpSpent",
  pinWrong: "err_pinWrong",
  pinLocked: "err_pinLocked",
  tooManyTries: "err_wait",
  seconds: "seconds",
  minutes: "minutes",
  changePin: "changePin",
  currentPin: "currentPin",
  pinUnchanged: "err_samePin",
  pinChanged: "pinChanged",
  continue: "continue",
  tabHome: "navHome",
  tabHistory: "navHistory",
  tabWithdraw: "navWithdraw",
  tabQr: "navQr",
  tabSettings: "navSettings",
  homeTitle: "yourTips",
  available: "available",
  held: "held",
  today: "today",
  thisWeek: "thisWeek",
  latestTips: "latestTips",
  noTips: "noTips",
  historyTitle: "navHistory",
  filterReceived: "received",
  filterFailed: "failed",
  filterWaiting: "waiting",
  older: "older",
  newer: "newer",
  withdrawTitle: "withdrawTitle",
  amountLabel: "amountLabel",
  mpesaLabel: "mpesaNumber",
  withdraw: "withdraw",
  overLimitLeft: "err_over_limit",
  availableUnderMinimum: "err_available_under_min",
  limitUnderMinimum: "err_limit_under_min",
  sending: "stepSend",
  limitLeft: "leftOf",
  limitPerWithdrawal: "limitPer",
  limitToday: "today",
  limitMonth: "thisMonth",
  limitMpesaPerTransaction: "limitMpesa",
  limitMpesaDaily: "limitMpesaDay",
  limitOther: "limitOther",
  mpesaFee: "mpesaFee",
  qrTitle: "myQr",
  qrCreate: "makeQr",
  settingsTitle: "navSettings",
  language: "language",
  notifications: "notifications",
  signOut: "signOutOne",
  signOutAll: "signOutAll",
  sessionEnded: "err_session",
  prefSaved: "saved",
  payoutNumberCooling: "payoutNumberCooling",
  autoPayout: "autoPayout",
  autoMinimum: "autoMinimum",
  savePayout: "savePayout",
  devices: "devices",
  devicesIntro: "devicesIntro",
  noDevices: "noDevices",
  browserOn: "browserOn",
  appOn: "appOn",
  unknownDevice: "unknownDevice",
  addedAt: "addedAt",
  usedAt: "usedAt",
  neverUsed: "neverUsed",
  removeDevice: "removeDevice",
  removeDeviceAsk: "removeDeviceAsk",
  removeDeviceYes: "removeDeviceYes",
  keepIt: "keepIt",
  sessions: "sessions",
  thisSession: "thisSession",
  signedInAt: "signedInAt",
  signOutOne: "signOutOne",
  signOutAsk: "signOutAsk",
  signOutYes: "signOutYes",
  statementsTitle: "navStatements",
  opening: "stmtOpening",
  closing: "stmtClosing",
} as const satisfies Record<string, WorkerKey>;

/** The phone's own words. */
const en = {
  appName: "TTIP",
  phoneHint: "0712 345 678",
  newTip: "New tip: {amount}",
  offline: "You are offline. Showing what was saved at {time}.",
  offlineNothing: "You are offline and nothing is saved yet.",
  filterAll: "All",
  amountInvalid: "Enter a whole number of shillings, for example 500.",
  mpesaInvalid: "Enter a Kenyan M-Pesa number, for example 0712 345 678, or leave it empty.",
  confirmWithdraw: "Send {amount} to {to} by M-Pesa?",
  toPayoutNumber: "your payout number",
  overPerWithdrawal: "That is more than the limit of {limit} per withdrawal. Enter {limit} or less.",
  underPayoutMinimum: "M-Pesa pays out at least {least}. Enter {least} or more.",
  overAvailable: "That is more than your available balance of {available}. Enter {available} or less.",
  confirm: "Confirm",
  cancel: "Cancel",
  biometricPrompt: "Confirm the withdrawal of {amount}",
  biometricFailed: "The withdrawal was not confirmed on this phone. Nothing was sent.",
  settingUpKey: "Setting up this phone's key…",
  signingKey: "Confirming with this phone's key…",
  payoutStatus: "Withdrawal of {amount}: {status}",
  receipt: "M-Pesa receipt {receipt}",
  another: "Make another withdrawal",
  qrSaved: "Saved copy from {time}: it works offline.",
  qrNone: "You have no QR code yet.",
  shareLink: "Share my tip link",
  shareMessage: "Tip me with TTIP: {url}",
  pushOn: "Tips arrive as notifications on this phone.",
  pushOff: "Notifications are off for this phone.",
  pushEnable: "Turn on notifications",
  savedAt: "as of {time}",
  inboxTitle: "Messages",
  inboxButton: "Messages",
  inboxButtonUnread: "Messages ({count} new)",
  inboxEmpty: "No messages yet.",
  back: "Back",
  tipSms: "Also tell me about tips by SMS",
  prefQueued: "Saved on this phone: it will be sent when you are back online.",
  payoutTitle: "Payouts",
  payoutNumber: "New payout M-Pesa number",
  payoutNumberNow: "Payouts go to {phone}.",
  payoutNumberNone: "No payout number yet: set one to pay out automatically.",
  payoutNumberPrompt: "Confirm payouts to {phone}",
  payoutNumberNotConfirmed: "The new number was not confirmed on this phone. Nothing changed.",
  minimumInvalid: "Enter the minimum in whole shillings, at least {least}.",
  thisPhone: "this phone",
  removeDeviceOwnAsk: "Remove this phone? It can no longer approve withdrawals; your next withdrawal here adds it again.",
  statementEmpty: "Nothing happened this month.",
  previousMonth: "Previous month",
  nextMonth: "Next month",
};

export type MessageKey = keyof typeof en | keyof typeof SHARED;

const sw: Record<keyof typeof en, string> = {
  appName: "TTIP",
  phoneHint: "0712 345 678",
  newTip: "Tip mpya: {amount}",
  offline: "Huna mtandao. Tunaonyesha kilichohifadhiwa saa {time}.",
  offlineNothing: "Huna mtandao na hakuna kilichohifadhiwa bado.",
  filterAll: "Zote",
  amountInvalid: "Weka idadi kamili ya shilingi, kwa mfano 500.",
  mpesaInvalid: "Weka nambari ya M-Pesa ya Kenya, kwa mfano 0712 345 678, au iache tupu.",
  confirmWithdraw: "Tuma {amount} kwenda {to} kwa M-Pesa?",
  toPayoutNumber: "nambari yako ya malipo",
  overPerWithdrawal: "Ni zaidi ya kikomo cha {limit} kwa kila utoaji. Weka {limit} au chini.",
  underPayoutMinimum: "M-Pesa hulipa angalau {least}. Weka {least} au zaidi.",
  overAvailable: "Ni zaidi ya salio lako la {available}. Weka {available} au chini.",
  confirm: "Thibitisha",
  cancel: "Ghairi",
  biometricPrompt: "Thibitisha utoaji wa {amount}",
  biometricFailed: "Utoaji haukuthibitishwa kwenye simu hii. Hakuna kilichotumwa.",
  settingUpKey: "Tunaandaa ufunguo wa simu hii…",
  signingKey: "Tunathibitisha kwa ufunguo wa simu hii…",
  payoutStatus: "Utoaji wa {amount}: {status}",
  receipt: "Risiti ya M-Pesa {receipt}",
  another: "Toa tena",
  qrSaved: "Nakala iliyohifadhiwa saa {time}: inafanya kazi bila mtandao.",
  qrNone: "Bado huna nambari ya QR.",
  shareLink: "Shiriki kiungo changu",
  shareMessage: "Nipe tip kwa TTIP: {url}",
  pushOn: "Tip zinafika kama arifa kwenye simu hii.",
  pushOff: "Arifa zimezimwa kwa simu hii.",
  pushEnable: "Washa arifa",
  savedAt: "kufikia {time}",
  inboxTitle: "Ujumbe",
  inboxButton: "Ujumbe",
  inboxButtonUnread: "Ujumbe ({count} mpya)",
  inboxEmpty: "Bado hakuna ujumbe.",
  back: "Rudi",
  tipSms: "Niambie pia kuhusu tip kwa SMS",
  prefQueued: "Imehifadhiwa kwenye simu hii: itatumwa ukirudi mtandaoni.",
  payoutTitle: "Malipo",
  payoutNumber: "Namba mpya ya M-Pesa ya malipo",
  payoutNumberNow: "Malipo yanaenda {phone}.",
  payoutNumberNone: "Bado hakuna namba ya malipo: weka moja ili ulipwe moja kwa moja.",
  payoutNumberPrompt: "Thibitisha malipo kwenda {phone}",
  payoutNumberNotConfirmed: "Namba mpya haikuthibitishwa kwenye simu hii. Hakuna kilichobadilika.",
  minimumInvalid: "Weka kiwango cha chini kwa shilingi kamili, angalau {least}.",
  thisPhone: "simu hii",
  removeDeviceOwnAsk: "Ondoa simu hii? Haitaweza tena kuidhinisha kutoa pesa; kutoa pesa kwako kunakofuata hapa kutaiongeza tena.",
  statementEmpty: "Hakuna kilichotokea mwezi huu.",
  previousMonth: "Mwezi uliopita",
  nextMonth: "Mwezi ujao",
};

/** A language's words: the phone's own and the shared ones from the web app's catalogue. */
function catalogue(locale: Locale, own: Record<keyof typeof en, string>): Record<MessageKey, string> {
  const shared = Object.fromEntries(Object.entries(SHARED).map(([key, webKey]) => [key, workerDictionaries[locale][webKey]]));
  return { ...own, ...shared } as Record<MessageKey, string>;
}

export const MESSAGES: Record<Locale, Record<MessageKey, string>> = { en: catalogue("en", en), sw: catalogue("sw", sw) };


export type Translate = (key: MessageKey, vars?: Record<string, string>) => string;

export function translator(locale: Locale): Translate {
  return (key, vars = {}) => MESSAGES[locale][key].replace(/\{(\w+)\}/g, (_, name: string) => vars[name] ?? `{${name}}`);
}

/** The phone's first language that we speak, else English. */
export function pickLocale(tags: readonly string[]): Locale {
  for (const tag of tags) {
    const t = tag.toLowerCase();
    if (t.startsWith("sw")) return "sw";
    if (t.startsWith("en")) return "en";
  }
  return "en";
}

export const I18nContext = createContext<{ locale: Locale; t: Translate; setLocale(l: Locale): void }>({
  locale: "en",
  t: translator("en"),
  setLocale: () => undefined,
});

export const useI18n = () => useContext(I18nContext);
