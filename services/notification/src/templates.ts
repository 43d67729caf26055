import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { BoundedMap } from "@ttip/runtime";

export const LOCALES = ["en", "sw"] as const;
export const FALLBACK_LOCALE = "en";

/** The variables each kind of message may use; every one must be given when rendering. */
export const TEMPLATE_VARIABLES: Record<TemplateKey, readonly string[]> = {
  [TemplateKey.UNSPECIFIED]: [],
  [TemplateKey.OTP]: ["code", "minutes"],
  [TemplateKey.TIP_RECEIVED]: ["amount", "net", "from", "message"],
  [TemplateKey.RECEIPT]: ["amount", "worker", "reference"],
  [TemplateKey.PAYOUT_SENT]: ["amount", "phone", "reference"],
  [TemplateKey.PAYOUT_FAILED]: ["amount", "reason"],
  [TemplateKey.FRAUD_HOLD]: ["reference", "reason"],
  [TemplateKey.WEEKLY_SUMMARY]: ["week", "count", "total"],
  [TemplateKey.STAFF_INVITE]: ["venue", "link"],
  [TemplateKey.MANAGER_INVITE]: ["venue", "link"],
  [TemplateKey.MANAGER_JOINED]: ["name", "venue"],
  [TemplateKey.MANAGER_REMOVED]: ["name", "venue"],
  [TemplateKey.REMOVED_AS_MANAGER]: ["venue"],
  [TemplateKey.STAFF_JOINED]: ["name", "venue"],
  [TemplateKey.REMOVED_FROM_STAFF]: ["venue"],
  [TemplateKey.POOL_SHARE]: ["amount", "venue", "period", "rule"],
  [TemplateKey.POOL_SHARE_REVERSED]: ["amount", "venue", "reason"],
  [TemplateKey.ADMIN_TIP_HELD]: ["amount", "worker", "reason", "link"],
  [TemplateKey.PAYOUT_NUMBER_CHANGED]: ["phone"],
  [TemplateKey.DEVICE_ADDED]: [],
  [TemplateKey.TIP_REVERSED]: ["amount", "reference"],
  [TemplateKey.TIP_REVERSAL_UNDONE]: ["amount", "reference"],
  [TemplateKey.POOL_TIP_REVERSED]: ["amount", "reference", "venue"],
  [TemplateKey.POOL_TIP_REVERSAL_UNDONE]: ["amount", "reference", "venue"],
  [TemplateKey.MPESA_TIP_REVERSED]: ["amount", "reference"],
  [TemplateKey.MPESA_TIP_REVERSAL_UNDONE]: ["amount", "reference"],
  [TemplateKey.POOL_MPESA_TIP_REVERSED]: ["amount", "reference", "venue"],
  [TemplateKey.POOL_MPESA_TIP_REVERSAL_UNDONE]: ["amount", "reference", "venue"],
};

/**
 * The variables a version must use (in its subject or text), or the message fails what it is sent for:
 * an OTP without its code signs nobody in, an invitation without its link joins nobody.
 */
export const TEMPLATE_REQUIRED: Partial<Record<TemplateKey, readonly string[]>> = {
  [TemplateKey.OTP]: ["code"],
  [TemplateKey.STAFF_INVITE]: ["link"],
  [TemplateKey.MANAGER_INVITE]: ["link"],
};

/** The required variables the texts leave out; empty when all are used. */
export function missingRequired(key: TemplateKey, ...texts: string[]): string[] {
  const used = new Set(texts.flatMap(placeholders));
  return (TEMPLATE_REQUIRED[key] ?? []).filter((v) => !used.has(v));
}

/** Values used when a caller leaves a variable out (auth's OTP sender gives the code only). */
export const TEMPLATE_DEFAULTS: Partial<Record<TemplateKey, Record<string, string>>> = {
  [TemplateKey.OTP]: { minutes: "5" },
};

/** The caller's variables over the kind's defaults. */
export function withDefaults(key: TemplateKey, variables: Record<string, string>): Record<string, string> {
  return { ...TEMPLATE_DEFAULTS[key], ...variables };
}

interface DefaultText {
  title: string;
  text: string;
}

// Version 1 of every template, seeded at start. SMS, push and in-app use the
// text as is; e-mail wraps it in a greeting.
const DEFAULTS: Record<Exclude<TemplateKey, TemplateKey.UNSPECIFIED>, Record<(typeof LOCALES)[number], DefaultText>> = {
  [TemplateKey.OTP]: {
    en: { title: "Your TTIP code", text: "Your TTIP code is {{code}}. It expires in {{minutes}} minutes. Never share it." },
    sw: { title: "Nambari yako ya TTIP", text: "Nambari yako ya TTIP ni {{code}}. Itaisha baada ya dakika {{minutes}}. Usimpe mtu yeyote." },
  },
  [TemplateKey.TIP_RECEIVED]: {
    en: { title: "You received a tip", text: "You received a tip of {{amount}} from {{from}}. {{net}} is yours after fees. {{message}}" },
    sw: { title: "Umepokea bakshishi", text: "Umepokea bakshishi ya {{amount}} kutoka kwa {{from}}. Unapata {{net}} baada ya ada. {{message}}" },
  },
  [TemplateKey.RECEIPT]: {
    en: { title: "Your TTIP receipt", text: "TTIP receipt: you tipped {{worker}} {{amount}}. Ref {{reference}}. Thank you!" },
    sw: { title: "Risiti yako ya TTIP", text: "Risiti ya TTIP: umetoa bakshishi ya {{amount}} kwa {{worker}}. Kumb. {{reference}}. Asante!" },
  },
  [TemplateKey.PAYOUT_SENT]: {
    en: { title: "Withdrawal sent", text: "{{amount}} has been sent to your M-Pesa {{phone}}. Ref {{reference}}." },
    sw: { title: "Pesa imetumwa", text: "{{amount}} imetumwa kwa M-Pesa yako {{phone}}. Kumb. {{reference}}." },
  },
  [TemplateKey.PAYOUT_FAILED]: {
    en: { title: "Withdrawal failed", text: "Your withdrawal of {{amount}} failed: {{reason}}. The money has not left your TTIP account." },
    sw: { title: "Utoaji haukufaulu", text: "Utoaji wako wa {{amount}} haukufaulu: {{reason}}. Pesa haijatoka kwenye akaunti yako ya TTIP." },
  },
  [TemplateKey.FRAUD_HOLD]: {
    en: { title: "Transaction under review", text: "For your safety we paused {{reference}} for a review ({{reason}}). We will contact you soon." },
    sw: { title: "Muamala unakaguliwa", text: "Kwa usalama wako tumesimamisha {{reference}} ili ukaguliwe ({{reason}}). Tutawasiliana nawe hivi karibuni." },
  },
  [TemplateKey.WEEKLY_SUMMARY]: {
    en: { title: "Your week on TTIP", text: "Your TTIP week ({{week}}): {{count}} tips, {{total}} in total. Keep it up!" },
    sw: { title: "Wiki yako kwenye TTIP", text: "Wiki yako ya TTIP ({{week}}): bakshishi {{count}}, jumla {{total}}. Endelea hivyo!" },
  },
  [TemplateKey.STAFF_INVITE]: {
    en: { title: "Join your team on TTIP", text: "{{venue}} added you to its team on TTIP, to share its tips. Accept: {{link}}" },
    sw: { title: "Jiunge na timu yako kwenye TTIP", text: "{{venue}} imekuongeza kwenye timu yake ya TTIP, mgawane bakshishi. Kubali: {{link}}" },
  },
  [TemplateKey.MANAGER_INVITE]: {
    en: { title: "Manage a venue on TTIP", text: "{{venue}} invites you to manage it on TTIP. Accept, signed in with this number: {{link}}" },
    sw: { title: "Simamia biashara kwenye TTIP", text: "{{venue}} inakualika uisimamie kwenye TTIP. Kubali kwa kuingia na namba hii: {{link}}" },
  },
  [TemplateKey.MANAGER_JOINED]: {
    en: { title: "A new manager", text: "{{name}} now manages {{venue}} on TTIP. If you did not expect this, remove them on the venue's Managers page." },
    sw: { title: "Meneja mpya", text: "{{name}} sasa anasimamia {{venue}} kwenye TTIP. Kama hukutarajia hili, mwondoe kwenye ukurasa wa Mameneja." },
  },
  [TemplateKey.MANAGER_REMOVED]: {
    en: { title: "A manager left", text: "{{name}} no longer manages {{venue}} on TTIP." },
    sw: { title: "Meneja ameondoka", text: "{{name}} hasimamii tena {{venue}} kwenye TTIP." },
  },
  [TemplateKey.REMOVED_AS_MANAGER]: {
    en: { title: "You no longer manage a venue", text: "You no longer manage {{venue}} on TTIP: another manager removed you. Ask them if you did not expect this." },
    sw: { title: "Husimamii biashara tena", text: "Husimamii tena {{venue}} kwenye TTIP: meneja mwingine amekuondoa. Waulize kama hukutarajia hili." },
  },
  [TemplateKey.STAFF_JOINED]: {
    en: { title: "Invitation accepted", text: "{{name}} accepted your invitation and is now on {{venue}}'s staff on TTIP." },
    sw: { title: "Mwaliko umekubaliwa", text: "{{name}} amekubali mwaliko wako na sasa yuko kwenye wafanyakazi wa {{venue}} kwenye TTIP." },
  },
  [TemplateKey.REMOVED_FROM_STAFF]: {
    en: { title: "No longer on a venue's staff", text: "{{venue}} ended your place on its staff on TTIP: its codes no longer tip you. Shares paid stay yours; tips to your own code still reach you." },
    sw: { title: "Haupo tena kwenye wafanyakazi", text: "{{venue}} imemaliza nafasi yako kwa wafanyakazi wa TTIP; misimbo yake haikuletei bakshishi tena. Mgao uliolipwa na msimbo wako binafsi ni vyako." },
  },
  [TemplateKey.POOL_SHARE]: {
    en: { title: "Your share of the team's tips", text: "Your share of {{venue}}'s tips for {{period}} is {{amount}} ({{rule}})." },
    sw: { title: "Sehemu yako ya bakshishi za timu", text: "Sehemu yako ya bakshishi za {{venue}} kwa {{period}} ni {{amount}} ({{rule}})." },
  },
  [TemplateKey.POOL_SHARE_REVERSED]: {
    en: { title: "Share of the team's tips taken back", text: "{{venue}} reversed a split of its tips: your share of {{amount}} was taken from your TTIP balance. Reason: {{reason}}" },
    sw: { title: "Mgao wa bakshishi za timu umerudishwa", text: "{{venue}} imebatilisha mgao wa bakshishi zake: sehemu yako ya {{amount}} imetolewa kwenye salio lako la TTIP. Sababu: {{reason}}" },
  },
  [TemplateKey.ADMIN_TIP_HELD]: {
    en: { title: "Tip held for review", text: "A tip of {{amount}} to {{worker}} was held for review: {{reason}}. Open the console: {{link}}" },
    sw: { title: "Bakshishi imezuiliwa ikaguliwe", text: "Bakshishi ya {{amount}} kwa {{worker}} imezuiliwa ikaguliwe: {{reason}}. Fungua konsoli: {{link}}" },
  },
  [TemplateKey.PAYOUT_NUMBER_CHANGED]: {
    en: { title: "Payout number changed", text: "Your TTIP withdrawals now go to M-Pesa {{phone}}. If you did not make this change, contact TTIP support at once." },
    sw: { title: "Namba ya kutoa pesa imebadilishwa", text: "Pesa zako za TTIP sasa zitatumwa kwa M-Pesa {{phone}}. Kama hukufanya badiliko hili, wasiliana na TTIP mara moja." },
  },
  [TemplateKey.DEVICE_ADDED]: {
    en: { title: "New device added", text: "A new device can now approve withdrawals from your TTIP account. If you did not add it, contact TTIP support at once." },
    sw: { title: "Kifaa kipya kimeongezwa", text: "Kifaa kipya sasa kinaweza kuidhinisha utoaji wa pesa kwenye akaunti yako ya TTIP. Kama hukukiongeza, wasiliana na TTIP mara moja." },
  },
  [TemplateKey.TIP_REVERSED]: {
    en: { title: "Card tip returned", text: "{{amount}} of a card tip (ref {{reference}}) went back to the customer's card and was taken from your TTIP balance." },
    sw: { title: "Bakshishi ya kadi imerudishwa", text: "{{amount}} ya bakshishi ya kadi (kumb. {{reference}}) imerudishwa kwa kadi ya mteja na kutolewa kwenye salio lako la TTIP." },
  },
  [TemplateKey.TIP_REVERSAL_UNDONE]: {
    en: { title: "Refund not made", text: "The refund of {{amount}} of a card tip (ref {{reference}}) was not made: the money is back in your TTIP balance." },
    sw: { title: "Marejesho hayakufanyika", text: "Marejesho ya {{amount}} ya bakshishi ya kadi (kumb. {{reference}}) hayakufanyika: pesa imerudi kwenye salio lako la TTIP." },
  },
  [TemplateKey.POOL_TIP_REVERSED]: {
    en: { title: "Pool card tip returned", text: "{{amount}} of a card tip to {{venue}}'s pool (ref {{reference}}) went back to the customer's card and was taken from the pool." },
    sw: { title: "Bakshishi ya kadi ya mfuko imerudishwa", text: "{{amount}} ya bakshishi ya kadi kwa mfuko wa {{venue}} (kumb. {{reference}}) imerudishwa kwa kadi ya mteja na kutolewa kwenye mfuko." },
  },
  [TemplateKey.POOL_TIP_REVERSAL_UNDONE]: {
    en: { title: "Pool refund not made", text: "The refund of {{amount}} of a card tip to {{venue}}'s pool (ref {{reference}}) was not made: the money is back in the pool." },
    sw: { title: "Marejesho ya mfuko hayakufanyika", text: "Marejesho ya {{amount}} ya bakshishi ya kadi kwa mfuko wa {{venue}} (kumb. {{reference}}) hayakufanyika: pesa imerudi kwenye mfuko." },
  },
  [TemplateKey.MPESA_TIP_REVERSED]: {
    en: { title: "M-Pesa tip reversed", text: "{{amount}} of an M-Pesa tip (ref {{reference}}) went back to the customer's M-Pesa and was taken from your TTIP balance." },
    sw: { title: "Bakshishi ya M-Pesa imerudishwa", text: "{{amount}} ya bakshishi ya M-Pesa (kumb. {{reference}}) imerudishwa kwa M-Pesa ya mteja na kutolewa kwenye salio lako la TTIP." },
  },
  [TemplateKey.MPESA_TIP_REVERSAL_UNDONE]: {
    en: { title: "Reversal not made", text: "The reversal of {{amount}} of an M-Pesa tip (ref {{reference}}) was not made: the money is back in your TTIP balance." },
    sw: { title: "Urejeshaji haukufanyika", text: "Urejeshaji wa {{amount}} ya bakshishi ya M-Pesa (kumb. {{reference}}) haukufanyika: pesa imerudi kwenye salio lako la TTIP." },
  },
  [TemplateKey.POOL_MPESA_TIP_REVERSED]: {
    en: { title: "Pool M-Pesa tip reversed", text: "{{amount}} of an M-Pesa tip to {{venue}}'s pool (ref {{reference}}) went back to the customer's M-Pesa and was taken from the pool." },
    sw: { title: "Bakshishi ya M-Pesa ya mfuko imerudishwa", text: "{{amount}} ya bakshishi ya M-Pesa kwa mfuko wa {{venue}} (kumb. {{reference}}) imerudishwa kwa M-Pesa ya mteja na kutolewa kwenye mfuko." },
  },
  [TemplateKey.POOL_MPESA_TIP_REVERSAL_UNDONE]: {
    en: { title: "Pool reversal not made", text: "The reversal of {{amount}} of an M-Pesa tip to {{venue}}'s pool (ref {{reference}}) was not made: the money is back in the pool." },
    sw: { title: "Urejeshaji wa mfuko haukufanyika", text: "Urejeshaji wa {{amount}} ya bakshishi ya M-Pesa kwa mfuko wa {{venue}} (kumb. {{reference}}) haukufanyika: pesa imerudi kwenye mfuko." },
  },
};

const EMAIL_WRAP = { en: ["Hello,", "The TTIP team"], sw: ["Habari,", "Timu ya TTIP"] } as const;

export interface TemplateRow {
  key: TemplateKey;
  locale: string;
  channel: Channel;
  subject: string;
  body: string;
}

export const CHANNELS = [Channel.SMS, Channel.EMAIL, Channel.PUSH, Channel.IN_APP] as const;

/** Version 1 of every (kind, locale, channel). */
export function defaultTemplates(): TemplateRow[] {
  const rows: TemplateRow[] = [];
  for (const [k, byLocale] of Object.entries(DEFAULTS)) {
    for (const locale of LOCALES) {
      const { title, text } = byLocale[locale];
      for (const channel of CHANNELS) {
        const [hello, bye] = EMAIL_WRAP[locale];
        const body = channel === Channel.EMAIL ? `${hello}\n\n${text}\n\n${bye}` : text;
        rows.push({ key: Number(k) as TemplateKey, locale, channel, subject: channel === Channel.SMS ? "" : title, body });
      }
    }
  }
  return rows;
}

const PLACEHOLDER = /\{\{\s*([a-z_]{1,40})\s*\}\}/g;

/** The variable names a template text uses. */
export function placeholders(text: string): string[] {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1]))];
}

/** What is left of a placeholder mistyped ({{Amount}}, {amount}, {{amount}): sent as written, the reader sees the braces. */
const MISTYPED = /\{\{|\}\}|\{\s*[A-Za-z_]{1,40}\s*\}/g;

/** The mistyped placeholders in a text (what is left once the real ones are taken out); empty when none. */
export function mistypedPlaceholders(text: string): string[] {
  return [...new Set([...text.replace(PLACEHOLDER, "").matchAll(MISTYPED)].map((m) => m[0]))];
}

/** Placeholders in the texts that the kind does not define; empty when all are known. */
export function unknownVariables(key: TemplateKey, ...texts: string[]): string[] {
  const allowed = new Set(TEMPLATE_VARIABLES[key]);
  return texts.flatMap(placeholders).filter((v) => !allowed.has(v));
}

export class MissingVariablesError extends Error {
  constructor(readonly missing: string[]) {
    super(`missing template variables: ${missing.join(", ")}`);
  }
}

/** Fills {{variable}} placeholders; every placeholder must have a value. */
export function render(text: string, variables: Record<string, string>): string {
  const { pieces, names } = compiled(text);
  const missing = names.filter((v) => variables[v] === undefined);
  if (missing.length) throw new MissingVariablesError(missing);
  let filled = pieces[0];
  for (let i = 1; i < pieces.length; i += 2) filled += `${variables[pieces[i]]}${pieces[i + 1]}`;
  // Collapse the gap an empty optional value (e.g. no tip message) leaves behind.
  return filled.replace(/[ \t]+$/gm, "").replace(/ {2,}/g, " ");
}

/** A template text split once: text, variable name, text, … (odd places are names), and its distinct names in order. */
interface CompiledText {
  pieces: string[];
  names: string[];
}

/**
 * Every delivery renders its template's subject and body: split once per text, not searched
 * for placeholders twice per render (a tip's SMS: ~27 us of notification's CPU in tip-e2e's
 * profile). Bounded: the texts are the template rows' (kinds x locales x channels x versions).
 */
const compiledTexts = new BoundedMap<string, CompiledText>(1_000);

function compiled(text: string): CompiledText {
  let known = compiledTexts.get(text);
  if (known !== undefined) return known;
  const pieces: string[] = [];
  let from = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    pieces.push(text.slice(from, m.index), m[1]);
    from = m.index + m[0].length;
  }
  pieces.push(text.slice(from));
  known = { pieces, names: placeholders(text) };
  compiledTexts.set(text, known);
  return known;
}

/** The locale templates are looked up in: en and sw exist, anything else falls back to en. */
export function resolveLocale(requested: string | undefined): string {
  return (LOCALES as readonly string[]).includes(requested ?? "") ? requested! : FALLBACK_LOCALE;
}
